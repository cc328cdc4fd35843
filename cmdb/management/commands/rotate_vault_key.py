"""Re-encrypt every credential with a new vault key, in one transaction.

    manage.py rotate_vault_key --new-key-file /etc/guardia/vault.key.new
    GUARDIA_VAULT_NEW_KEY=<base64> manage.py rotate_vault_key

Afterwards every secret decrypts with the new key only: point GUARDIA_VAULT_KEY /
GUARDIA_VAULT_KEY_FILE at it (or pass --install to replace the configured key file) and
restart the web and worker processes.

With the second factor on (GUARDIA_OTP_ENABLED), the rotation also needs the person doing
it: --user NAME --otp CODE (their authenticator's current code or an unused recovery code);
they must hold cmdb.change_credential, and they are the audited actor.
"""

from __future__ import annotations

import base64
import os
from pathlib import Path

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from cmdb import otp, services, vault


class Command(BaseCommand):
    help = "Re-encrypt every stored secret with a new vault key (one transaction)."

    def add_arguments(self, parser):
        parser.add_argument("--new-key-file", type=Path, help="file holding the new key (base64 of 32 bytes)")
        parser.add_argument("--generate", action="store_true", help="write a fresh key to --new-key-file first")
        parser.add_argument(
            "--install", action="store_true", help="after the commit, replace the configured key file with the new key"
        )
        parser.add_argument("--user", help="the administrator rotating the key (asked when the second factor is on)")
        parser.add_argument("--otp", help="that person's current second-factor code")

    def handle(self, *args, **options):
        actor: object = "manage.py rotate_vault_key"
        if otp.enabled():
            try:
                actor = otp.verify_at_shell(
                    options["user"], options["otp"], "cmdb.vault_rotate", "cmdb.change_credential"
                )
            except otp.StepUpRefused as exc:
                raise CommandError(f"rotation refused, nothing changed: {exc}") from exc
        path: Path | None = options["new_key_file"]
        if options["generate"]:
            if path is None:
                raise CommandError("--generate needs --new-key-file")
            if path.exists():
                raise CommandError(f"{path} exists; refusing to overwrite a key file")
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w") as handle:
                handle.write(vault.generate_key() + "\n")
        try:
            if path is not None:
                new_key = vault.decode_key(path.read_text(), str(path))
            elif os.getenv("GUARDIA_VAULT_NEW_KEY"):
                new_key = vault.decode_key(os.environ["GUARDIA_VAULT_NEW_KEY"], "GUARDIA_VAULT_NEW_KEY")
            else:
                raise CommandError("give the new key: --new-key-file F or GUARDIA_VAULT_NEW_KEY")
            count = services.rotate_vault_key(new_key, actor=actor)
        except (vault.VaultError, OSError) as exc:
            raise CommandError(f"rotation aborted, nothing changed: {exc}") from exc
        self.stdout.write(f"re-encrypted {count} secret(s) with key {vault.key_id(new_key)}")

        if options["install"]:
            self.install(new_key)
        else:
            self.stdout.write("now configure the new key (GUARDIA_VAULT_KEY or GUARDIA_VAULT_KEY_FILE) and restart")

    def install(self, new_key: bytes) -> None:
        if settings.VAULT_KEY or not settings.VAULT_KEY_FILE:
            raise CommandError("--install replaces a key file, but the key comes from GUARDIA_VAULT_KEY: update it")
        target = Path(settings.VAULT_KEY_FILE)
        staging = target.with_name(target.name + ".rotating")
        fd = os.open(staging, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(base64.b64encode(new_key).decode() + "\n")
        os.replace(staging, target)  # atomic: readers see the old key or the new one, never half
        self.stdout.write(f"installed the new key in {target}")
