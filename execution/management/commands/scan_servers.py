"""manage.py scan_servers [SYSTEM]: the runtime scan of every active server (of one system)."""

from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError

from cmdb.models import System
from execution import profiles


class Command(BaseCommand):
    help = (
        "Scan every active server (or those of one system code) with the fixed read-only scan and "
        "store the result per server; servers whose scan differs from their environment schema "
        "appear in the drift report (/execution/drift/)."
    )

    def add_arguments(self, parser):
        parser.add_argument("system", nargs="?", default="", help="a system code (default: every system)")

    def handle(self, *args, **options):
        code = options["system"]
        if code and not System.objects.filter(code=code).exists():
            raise CommandError(f"system: 알 수 없는 시스템 코드입니다: {code!r}")
        summary = profiles.scan_servers(code)
        self.stdout.write(
            f"scanned {summary['scanned']} server(s) of {summary['system']}: "
            f"{summary['failed']} could not be scanned, {summary['drifted']} differ from their schema"
        )
