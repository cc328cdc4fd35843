"""Shared shape of the offline verification commands: a file, the auditor's public key, no database."""

from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError

from audit import signing


class OfflineCheckCommand(BaseCommand):
    requires_system_checks: list = []
    requires_migrations_checks = False
    file_help = "the file to verify"

    def add_arguments(self, parser):
        parser.add_argument("file", help=self.file_help)
        parser.add_argument("--public-key", required=True, help="PEM file (or base64 of the 32 raw bytes)")

    def check_file(self, path: str, key):
        """Return a result with .ok and .message()."""
        raise NotImplementedError

    def success_line(self, check) -> str:
        return check.message()

    def handle(self, *args, **options):
        try:
            key = signing.load_public_key(options["public_key"])
        except (OSError, ValueError) as exc:
            raise CommandError(f"cannot read the public key: {exc}") from exc
        check = self.check_file(options["file"], key)
        if not check.ok:
            raise CommandError(check.message())
        self.stdout.write(self.success_line(check))
