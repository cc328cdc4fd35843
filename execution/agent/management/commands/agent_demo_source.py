"""manage.py agent_demo_source SYSTEM_CODE [--path DIR]: the demo application's repository as the
system's source (for the walk-through on the testbed: docs/agent.md)."""

from __future__ import annotations

from pathlib import Path

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from cmdb import services
from cmdb.models import System, SystemSource
from execution.agent.demo import DEMO_SOURCE, create_demo_repository


class Command(BaseCommand):
    help = "데모 애플리케이션 저장소를 만들고 시스템의 소스 저장소로 등록합니다 (AI 작업 에이전트 데모)."

    def add_arguments(self, parser):
        parser.add_argument("system", help="system code (e.g. NIA-TESTBED)")
        parser.add_argument("--path", default="", help="where the repository goes (default: <data dir>/agent-demo)")

    def handle(self, *args, **options):
        system = System.objects.filter(code=options["system"]).first()
        if system is None:
            raise CommandError(f"system: {options['system']!r} 시스템이 CMDB에 없습니다")
        path = Path(options["path"] or Path(settings.DATA_DIR) / "agent-demo").resolve()
        if not (path / ".git").exists():
            if path.exists() and any(path.iterdir()):
                raise CommandError(f"--path: {path}이(가) 비어 있지 않은데 git 저장소가 아닙니다")
            if path.exists():
                path.rmdir()
            create_demo_repository(path)
        source = SystemSource.objects.filter(system=system).first()
        created = source is None
        source = source or SystemSource(system=system)
        source.repository = str(path)
        for name, value in DEMO_SOURCE.items():
            setattr(source, name, value)
        source.full_clean()
        services.save_with_audit("system", source, ["repository", *DEMO_SOURCE], created=created)
        self.stdout.write(f"{system.code}: {path} ({'등록' if created else '갱신'})")
