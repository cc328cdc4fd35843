"""manage.py demo_artifact --version 1.1.0 -o app.war: the demo's sample WAR for a version."""

from __future__ import annotations

from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from governance.demo_artifact import build_war


class Command(BaseCommand):
    help = (
        "Write the demo's sample WAR (a zip with META-INF/MANIFEST.MF) whose Implementation-Version is "
        "--version; the testbed's WAS serves that version once it is deployed."
    )

    def add_arguments(self, parser):
        # Django's own --version (print Django's version) gives way to the artifact's version.
        parser.conflict_handler = parser._optionals.conflict_handler = "resolve"
        parser.add_argument(
            "--version", dest="artifact_version", required=True, help="the version the WAR carries, e.g. 1.1.0"
        )
        parser.add_argument("-o", "--output", default="app.war", help="file to write (default app.war)")

    def handle(self, *args, **options):
        try:
            data = build_war(options["artifact_version"])
        except ValueError as exc:
            raise CommandError(str(exc)) from exc
        path = Path(options["output"])
        path.write_bytes(data)
        self.stdout.write(f"{path}: {len(data)} bytes, version {options['artifact_version']}")
