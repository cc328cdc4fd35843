"""Write an auditor export to a file (the console and API offer the same)."""

from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError
from django.utils.dateparse import parse_datetime

from audit import exports


class Command(BaseCommand):
    help = "Export audit entries as csv, jsonl or pdf, filtered by period, institution and task."

    def add_arguments(self, parser):
        parser.add_argument("file")
        parser.add_argument("--format", choices=exports.FORMATS, default="jsonl")
        parser.add_argument("--since", help="ISO date/time (inclusive)")
        parser.add_argument("--until", help="ISO date/time (exclusive)")
        parser.add_argument("--institution", default="")
        parser.add_argument("--task", default="")

    def handle(self, *args, **options):
        flt = exports.ExportFilter(institution=options["institution"], task=options["task"])
        for name in ("since", "until"):
            if options[name]:
                value = parse_datetime(options[name])
                if value is None:
                    raise CommandError(f"--{name}: not an ISO date/time: {options[name]!r}")
                setattr(flt, name, value)
        with open(options["file"], "wb") as fh:
            result = exports.write(options["format"], flt, fh)
        self.stdout.write(f"{result.count} entries (seq {result.first_seq}..{result.last_seq}) -> {options['file']}")
