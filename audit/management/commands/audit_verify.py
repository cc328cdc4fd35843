"""Verify the whole audit chain now (the same run as the console button and the schedule)."""

from __future__ import annotations

import json

from django.core.management.base import BaseCommand, CommandError

from audit import services


class Command(BaseCommand):
    help = "Verify the audit hash chain and its signed checkpoints; exit status 1 on a break."

    def add_arguments(self, parser):
        parser.add_argument("--json", action="store_true", help="print the report as JSON")

    def handle(self, *args, **options):
        report = services.run_verification("manage.py audit_verify", source="command")
        if options["json"]:
            self.stdout.write(json.dumps(report.as_dict(), ensure_ascii=False))
        else:
            self.stdout.write(f"{report.message()} ({report.entries} entries in {report.seconds:.2f} s)")
        if not report.ok:
            raise CommandError(report.message())
