"""``manage.py messenger_bot``: the GUARDiA bot process on the Matrix homeserver.

It answers commands and drains the outbox (Matrix and webhook rows) until SIGTERM/SIGINT
(without GUARDIA_MATRIX_HOMESERVER it delivers the webhook rows only);
a homeserver that is down is retried with backoff, so scripts/demo.sh supervises it the
way it does the qcluster (one process, restarted by the operator's supervisor in
production). ``--demo-accounts DIR`` registers the bot and the demo users on the embedded
homeserver whose state is in DIR and maps each demo user to their Matrix id.
"""

from __future__ import annotations

import asyncio
import signal
from pathlib import Path

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError

from cmdb.management.commands.seed_demo import USERS, demo_password
from intake.messenger.accounts import save_identity
from intake.messenger.bot import MatrixBot, deliver_webhooks_forever
from intake.messenger.homeserver import Homeserver
from intake.models import ChatChannel, MessengerIdentity


class Command(BaseCommand):
    help = "Run the GUARDiA messenger bot (Matrix) and the outbox."

    def add_arguments(self, parser):
        parser.add_argument("--demo-accounts", type=Path, metavar="DIR", help="register demo accounts and exit")

    def handle(self, *args, **options):
        if options["demo_accounts"]:
            self.demo_accounts(options["demo_accounts"])
            return
        stop = asyncio.Event()

        async def main() -> None:
            loop = asyncio.get_running_loop()
            for sig in (signal.SIGTERM, signal.SIGINT):
                loop.add_signal_handler(sig, stop.set)
            if not settings.MATRIX_HOMESERVER:
                self.stdout.write("no Matrix homeserver configured: delivering webhook notifications only")
                await deliver_webhooks_forever(stop, settings.MESSENGER_POLL_SECONDS)
                return
            bot = MatrixBot.from_settings()
            try:
                await bot.run(stop)
            finally:
                await bot.close()

        try:
            asyncio.run(main())
        except RuntimeError as exc:
            raise CommandError(str(exc)) from exc

    def demo_accounts(self, directory: Path) -> None:
        """The bot's account (GUARDIA_MATRIX_BOT_USER / _PASSWORD, read from the environment
        rather than the command line) and one per demo user, mapped to them."""
        server = Homeserver(directory)
        server.configure()
        if not server.answers():
            raise CommandError(f"the homeserver in {directory} does not answer on {server.url}")
        if settings.MATRIX_BOT_USER and settings.MATRIX_BOT_PASSWORD:
            localpart = settings.MATRIX_BOT_USER.split(":", 1)[0].lstrip("@")
            self.stdout.write(server.register(localpart, settings.MATRIX_BOT_PASSWORD))
        users = get_user_model().objects.filter(username__in=[name for name, _role, _n in USERS])
        for user in users:
            matrix_id = server.register(user.username.lower(), demo_password())
            identity = MessengerIdentity.objects.filter(user=user).first() or MessengerIdentity(user=user)
            identity.channel, identity.matrix_id, identity.enabled = ChatChannel.MATRIX, matrix_id, True
            save_identity("seed_demo", identity)
        self.stdout.write(f"{users.count()} demo users on {server.url}")
