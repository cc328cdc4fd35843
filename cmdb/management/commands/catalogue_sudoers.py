"""Print the sudoers file for GUARDiA's SSH account on a system's servers.

    manage.py catalogue_sudoers BUDGET --user guardia > guardia.sudoers
    visudo -cf guardia.sudoers && install -m 0440 guardia.sudoers /etc/sudoers.d/guardia

Generated from the system's command catalogue (the default set plus its own rules): only
rules with a run-as user appear, each as the program's path and its argument list pattern.
"""

from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError

from cmdb.models import CommandRule, System
from cmdb.sudoers import SudoersError, sudoers_for


class Command(BaseCommand):
    help = "Print the sudoers file for the SSH account, generated from a system's command catalogue."

    def add_arguments(self, parser):
        parser.add_argument("system", nargs="?", default="", help="system code (default: the default set only)")
        parser.add_argument("--user", default="guardia", help="the SSH account GUARDiA logs in as")

    def handle(self, *args, **options):
        code = options["system"]
        system = None
        if code:
            system = System.objects.filter(code=code).first()
            if system is None:
                raise CommandError(f"unknown system {code!r}")
        rules = (
            CommandRule.objects.for_system(system)
            if system is not None
            else CommandRule.objects.filter(system__isnull=True, enabled=True)
        ).select_related("system")
        try:
            self.stdout.write(sudoers_for(rules, options["user"], label=code), ending="")
        except SudoersError as exc:
            raise CommandError(str(exc)) from exc
