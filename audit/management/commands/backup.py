"""Back up the database, the key files, the audit mirror and the uploads into one directory."""

from __future__ import annotations

from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from audit.backup import BackupError, create_backup


class Command(BaseCommand):
    help = "Write a backup (database, keys, audit mirror, uploads, manifest with SHA-256) into a new directory."

    def add_arguments(self, parser):
        parser.add_argument("target", type=Path, help="a directory that does not exist yet (or is empty)")

    def handle(self, *args, target: Path, **options):
        try:
            manifest = create_backup(target, actor="manage.py backup")
        except BackupError as exc:
            raise CommandError(str(exc)) from exc
        self.stdout.write(
            f"backup written to {target}: {len(manifest.files)} files, chain head seq {manifest.head_seq}, "
            f"signing key {manifest.key_id}. It holds the key files: keep it as secret as the keys."
        )
        if manifest.vault_key_in_environment:
            self.stdout.write("the vault key comes from GUARDIA_VAULT_KEY: keep that value with the backup.")
