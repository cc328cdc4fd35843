"""Restore a backup written by `manage.py backup` on this host, then verify the chain."""

from __future__ import annotations

from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from audit.backup import BackupError, restore_backup


class Command(BaseCommand):
    help = "Check a backup's manifest, restore it, migrate, and verify the audit chain (exit 1 if it does not verify)."

    def add_arguments(self, parser):
        parser.add_argument("source", type=Path, help="the backup directory")
        parser.add_argument("--replace", action="store_true", help="overwrite a database that already holds a chain")

    def handle(self, *args, source: Path, replace: bool, **options):
        try:
            report = restore_backup(source, replace=replace, actor="manage.py restore")
        except BackupError as exc:
            raise CommandError(str(exc)) from exc
        self.stdout.write(f"restored from {source}: {report.message()} ({report.entries} entries)")
