"""Print the checkpoint-signing public key (PEM) for auditors; --create makes the key pair."""

from __future__ import annotations

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from audit import signing


class Command(BaseCommand):
    help = "Print the audit checkpoint public key (PEM) and its key id."

    def add_arguments(self, parser):
        parser.add_argument("--create", action="store_true", help="create the key pair if it is missing")

    def handle(self, *args, **options):
        path = settings.AUDIT_SIGNING_KEY_FILE
        if not path.exists() and not options["create"]:
            raise CommandError(f"{path} does not exist (run with --create)")
        key = signing._load_private(str(path), production=False) if options["create"] else signing.signing_key()
        public = key.public_key()
        self.stdout.write(signing.public_pem(public).decode().strip())
        self.stderr.write(f"key id {signing.key_id(public)} ({path})")
