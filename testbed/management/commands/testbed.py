"""manage.py testbed up|down|status|fault|reset: the loopback sshd testbed (docs/testbed.md)."""

from __future__ import annotations

import json

from django.core.management.base import BaseCommand, CommandError

from testbed import FAULTS, Testbed, TestbedError


class Command(BaseCommand):
    help = "Start, stop, inspect or break the real-sshd testbed on loopback."

    def add_arguments(self, parser):
        parser.add_argument("action", choices=["up", "down", "status", "fault", "reset"])
        parser.add_argument("target", nargs="*", help="fault: SERVER_ID FAULT_NAME")
        parser.add_argument("--servers", type=int, default=10, help="number of servers (up)")
        parser.add_argument(
            "--sshd", type=int, default=None, help="sshd processes (scale mode when fewer than --servers)"
        )
        parser.add_argument(
            "--layouts", default="", help="up: comma-separated environments of the first servers (testbed.layouts)"
        )
        parser.add_argument("--dir", default=None, help="testbed directory (default settings.TESTBED_DIR)")
        parser.add_argument("--off", action="store_true", help="fault: switch it off")
        parser.add_argument("--json", action="store_true", help="status: print JSON")

    def handle(self, *args, **opts):
        try:
            tb = Testbed(opts["dir"])
            getattr(self, f"do_{opts['action']}")(tb, opts)
        except TestbedError as exc:
            raise CommandError(str(exc)) from exc

    def do_up(self, tb: Testbed, opts) -> None:
        layouts = [name.strip() for name in opts["layouts"].split(",") if name.strip()]
        manifest = tb.up(opts["servers"], opts["sshd"], layouts=layouts)
        self.stdout.write(
            f"testbed up: {len(manifest['servers'])} servers, {len(manifest['sshd'])} sshd "
            f"({manifest['mode']} mode); manifest {tb.manifest_path}"
        )

    def do_down(self, tb: Testbed, opts) -> None:
        tb.down()
        self.stdout.write(f"testbed at {tb.base} stopped")

    def do_reset(self, tb: Testbed, opts) -> None:
        tb.reset()
        self.stdout.write("testbed reset: faults off, every server on 1.0.0")

    def do_fault(self, tb: Testbed, opts) -> None:
        if len(opts["target"]) != 2:
            raise CommandError(f"usage: testbed fault SERVER_ID FAULT [--off]; faults: {', '.join(sorted(FAULTS))}")
        server_id, name = opts["target"]
        tb.fault(server_id, name, on=not opts["off"])
        self.stdout.write(f"{name} {'off' if opts['off'] else 'on'} for {server_id}")

    def do_status(self, tb: Testbed, opts) -> None:
        if not tb.manifest_path.exists():
            self.stdout.write(f"no testbed at {tb.base}")
            return
        status = tb.status()
        if opts["json"]:
            self.stdout.write(json.dumps(status, indent=1))
            return
        self.stdout.write(f"{status['base_dir']} ({status['mode']} mode)")
        for row in status["servers"]:
            self.stdout.write(
                f"{row['server_id']:10} ssh {row['ssh']:18} sshd {row['sshd']:4} was {row['was']:4} "
                f"pid {row['was_pid'] or '-':>7} http {row['http_port']} {row['health'] or '-'} "
                f"v{row['version'] or '-'} {','.join(row['faults'])}"
            )
