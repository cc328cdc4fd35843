"""manage.py export_agent_feedback [--output FILE] [--since YYYY-MM-DD] [--task OPS-...]"""

from __future__ import annotations

import datetime as dt
import sys

from django.core.management.base import BaseCommand, CommandError
from django.utils import timezone

from execution.agent.feedback import export


class Command(BaseCommand):
    help = "AI 작업 에이전트의 회차별 요청·컨텍스트·diff·PM 판정·지시를 JSON Lines로 내보냅니다."

    def add_arguments(self, parser):
        parser.add_argument("--output", "-o", default="-", help="file to write (default: standard output)")
        parser.add_argument("--since", default="", help="only rounds started on or after this date (YYYY-MM-DD)")
        parser.add_argument("--task", default="", help="only this task (OPS-...)")

    def handle(self, *args, **options):
        since = None
        if options["since"]:
            try:
                day = dt.date.fromisoformat(options["since"])
            except ValueError as exc:
                raise CommandError(f"--since: YYYY-MM-DD 형식이어야 합니다 ({exc})") from exc
            since = timezone.make_aware(dt.datetime.combine(day, dt.time()))
        if options["output"] == "-":
            count = export(self.stdout, since, options["task"])
        else:
            with open(options["output"], "w", encoding="utf-8") as handle:
                count = export(handle, since, options["task"])
        sys.stderr.write(f"{count} rounds exported\n")
