"""manage.py rebuild_statistics [--through YYYY-MM-DD]: recount the statistics rollup (audited)."""

from __future__ import annotations

import datetime as dt

from django.core.management.base import BaseCommand, CommandError

from governance import rollup


class Command(BaseCommand):
    help = (
        "Recount the statistics rollup: finished tasks filed before the first of the month given (default: this month)."
    )

    def add_arguments(self, parser) -> None:
        parser.add_argument("--through", help="a day (YYYY-MM-DD); the rollup covers the months before its month")

    def handle(self, *args, through: str | None = None, **options) -> None:
        try:
            day = dt.date.fromisoformat(through) if through else None
        except ValueError as exc:
            raise CommandError(f"--through: not a date (YYYY-MM-DD): {through!r}") from exc
        result = rollup.rebuild("manage.py rebuild_statistics", day)
        self.stdout.write(
            f"statistics rollup: {result['tasks']} tasks in {result['rows']} rows, through {result['through']}"
        )
