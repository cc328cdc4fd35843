"""manage.py reap_executions: one sweep of the reaper now (the schedule runs it every minute)."""

from __future__ import annotations

import json

from django.core.management.base import BaseCommand


class Command(BaseCommand):
    help = (
        "Recover tasks whose worker is gone: re-verify the servers they held, roll them back and end the "
        "task in a definite state; then queue tasks waiting for servers that are free."
    )

    def add_arguments(self, parser):
        parser.add_argument("--json", action="store_true", help="print the result of each recovery as JSON")

    def handle(self, *args, **options):
        from execution.reaper import sweep

        results = sweep()
        if options["json"]:
            self.stdout.write(json.dumps(results, ensure_ascii=False, default=str))
            return
        if not results:
            self.stdout.write("no orphaned execution")
        for item in results:
            self.stdout.write(f"{item['task']}: {item['outcome']} {item.get('reason', '')}".rstrip())
