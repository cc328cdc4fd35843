"""Seed a demo CMDB: Korean ministries with aliases, systems, servers, owners, one user per role.

Idempotent: rows are matched by their codes/usernames and brought back to the demo
values, so running it twice leaves the same data (and one token per user).
"""

from __future__ import annotations

import datetime as dt
import json
import os
import secrets
from pathlib import Path

from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.core.management.base import BaseCommand
from django.db import transaction
from django.utils.module_loading import import_string
from rest_framework.authtoken.models import Token

import audit
from cmdb.models import Credential, HealthCriteria, Institution, Server, System, SystemOwner
from cmdb.roles import STAFF_ROLES, ensure_roles

DEFAULT_PASSWORD = "guardia-demo-2026!"
TESTBED_REGISTER = "testbed.register.register_testbed"
TESTBED_SYSTEM = "NIA-TESTBED"  # its servers come from the running testbed (--testbed)

# The demo's accounts (one per role), institutions and systems: data, kept in seed_demo.json.
DEMO = json.loads(Path(__file__).with_name("seed_demo.json").read_text(encoding="utf-8"))
# (username, role, Korean first name)
USERS = [(row["username"], row["role"], row["first_name"]) for row in DEMO["users"]]
INSTITUTIONS = DEMO["institutions"]
SYSTEMS = DEMO["systems"]

# The seed's story deploys to 예산시스템 WAS1: with six or more testbed servers the last three
# stand in for its WAS1-3 (its window is open all day so the story runs at any hour).
BUDGET_SYSTEM = "MOEF-BUDGET"
BUDGET_ON_TESTBED = 3


def demo_password() -> str:
    return os.getenv("GUARDIA_DEMO_PASSWORD", DEFAULT_PASSWORD)


class Command(BaseCommand):
    help = "Create (or refresh) the demo CMDB and one demo user per role."

    def add_arguments(self, parser):
        parser.add_argument("--testbed", action="store_true", help="also register the running testbed's servers")
        parser.add_argument("--print-logins", action="store_true", help="print 'username  role' lines and exit")
        parser.add_argument("--with-tokens", action="store_true", help="with --print-logins: add each API token")
        parser.add_argument("--print-password", action="store_true", help="print the demo password and exit")

    def handle(self, *args, **options):
        if options["print_password"]:
            self.stdout.write(demo_password())
            return
        if options["print_logins"]:
            self.print_logins(options["with_tokens"])
            return
        ensure_roles()
        with transaction.atomic():
            users = self.seed_users()
            self.seed_cmdb(users)
            audit.record(None, "cmdb.seed_demo", payload={"institutions": len(INSTITUTIONS), "systems": len(SYSTEMS)})
        self.stdout.write(
            f"demo CMDB: {Institution.objects.count()} institutions, {System.objects.count()} systems, "
            f"{Server.objects.count()} servers, {len(users)} users"
        )
        if options["testbed"]:
            self.register_testbed()

    def print_logins(self, with_tokens: bool) -> None:
        tokens = dict(
            Token.objects.filter(user__username__in=[u for u, _r, _n in USERS]).values_list("user__username", "key")
        )
        for username, role, _name in USERS:
            line = f"{username:<12}  {role}"
            if with_tokens:
                line = f"{username:<12}  {role:<17}  {tokens.get(username, '-')}"
            self.stdout.write(line)

    def seed_users(self) -> dict:
        User = get_user_model()
        password = demo_password()
        users = {}
        for username, role, first_name in USERS:
            user, _ = User.objects.get_or_create(username=username)
            user.first_name = first_name
            user.email = f"{username}@guardia.local"
            user.is_staff = role in STAFF_ROLES
            user.is_superuser = False  # the admin role is not a superuser: see cmdb.accounts
            user.is_active = True
            user.set_password(password)
            user.save()
            user.groups.add(Group.objects.get(name=role))
            Token.objects.get_or_create(user=user)
            users[username] = user
        return users

    def seed_cmdb(self, users: dict) -> None:
        institutions = {}
        for row in INSTITUTIONS:
            inst, _ = Institution.objects.get_or_create(code=row["code"], defaults={"name": row["name"]})
            inst.name, inst.tier, inst.contact, inst.pm = row["name"], row["tier"], row["contact"], users["pm"]
            inst.set_aliases(row["aliases"])
            inst.full_clean()
            inst.save()
            institutions[row["code"]] = inst
        for code in ("MOEF", "MOIS", "NIA"):  # NIA runs the testbed the walk-through deploys to
            institutions[code].site_managers.add(users["sitemgr"])

        credential, _ = Credential.objects.get_or_create(
            name="demo-deploy", defaults={"username": "deploy", "kind": Credential.Kind.PASSWORD}
        )
        if not credential.has_secret:  # keep an existing secret: re-seeding must not rotate it
            credential.set_secret(secrets.token_urlsafe(18))
            credential.save()

        for row in SYSTEMS:
            code, inst_code, (start, end) = row["code"], row["institution"], row["window"]
            system, _ = System.objects.update_or_create(
                code=code,
                defaults={
                    "name": row["name"],
                    "institution": institutions[inst_code],
                    "sensitive": row["sensitive"],
                    "window_start": dt.time(start, 0),
                    "window_end": dt.time(end, 0),
                },
            )
            SystemOwner.objects.update_or_create(
                system=system,
                defaults={
                    "owner": users[row["owner"]],
                    "deputy": users[row["deputy"]],
                    "supervisor": users[row["supervisor"]],
                    "owner_is_active": True,
                    "sla_minutes": 10,
                },
            )
            HealthCriteria.objects.update_or_create(
                system=system,
                defaults={"service_port": 8080, "process_name": "java", "log_path": "/app/logs/catalina.out"},
            )
            if code == TESTBED_SYSTEM:
                continue  # its servers come from the running testbed (--testbed)
            subnet = 10 + [s["code"] for s in SYSTEMS].index(code)
            for number in range(1, row["servers"] + 1):
                server_id = f"{code.lower()}-was{number}"
                Server.objects.update_or_create(
                    server_id=server_id,
                    defaults={
                        "system": system,
                        "hostname": f"{server_id}.{inst_code.lower()}.go.kr",
                        "ip": f"10.{subnet}.0.{10 + number}",
                        "os_type": Server.OsType.AIX if code == "MOE-NEIS" else Server.OsType.LINUX,
                        "ssh_user": "deploy",
                        "credential": credential,
                        "app_path": "/app/was",
                        "deploy_path": "/app/deploy",
                        "backup_path": "/app/backup",
                        "script_path": "/app/bin",
                        "log_path": "/app/logs/catalina.out",
                        "service_port": 8080,
                        "health_url": f"http://10.{subnet}.0.{10 + number}:8080/health",
                        "rolling_group": 1 if number <= max(1, row["servers"] // 2) else 2,
                        "canary": number == 1,
                    },
                )
        # The testbed system gets two placeholder servers so a fresh seed still counts 20;
        # --testbed registers the real loopback servers beside them.
        testbed = System.objects.get(code=TESTBED_SYSTEM)
        for number in (1, 2):
            Server.objects.update_or_create(
                server_id=f"nia-testbed-placeholder{number}",
                defaults={
                    "system": testbed,
                    "hostname": f"placeholder{number}.nia.go.kr",
                    "ip": f"10.99.0.{number}",
                    "active": False,
                    "rolling_group": number,
                },
            )

    def register_testbed(self) -> None:
        manifest_path = settings.TESTBED_DIR / "manifest.json"
        if not manifest_path.exists():
            self.stdout.write(f"testbed: no manifest at {manifest_path} (is the testbed running?); skipped")
            return
        try:
            manifest = json.loads(manifest_path.read_text())
        except (OSError, ValueError) as exc:
            self.stderr.write(f"testbed: cannot read {manifest_path}: {exc}; skipped")
            return
        register = import_string(TESTBED_REGISTER)
        servers = list(manifest["servers"])
        budget = servers[-BUDGET_ON_TESTBED:] if len(servers) >= 2 * BUDGET_ON_TESTBED else []
        if budget:
            servers = servers[: -len(budget)]
        result = register({**manifest, "servers": servers}, system=System.objects.get(code=TESTBED_SYSTEM))
        count = len(result) if hasattr(result, "__len__") else result
        self.stdout.write(f"testbed: registered {count} server(s) from {manifest_path}")
        if budget:
            # The budget system's WAS1-3 run on the last testbed servers, so the walk-through's
            # "기재부 예산시스템 WAS1번 배포" deploys for real; an earlier seed may have put those
            # servers under the testbed system, where they stay inactive.
            renamed = [{**srv, "server_id": f"{BUDGET_SYSTEM.lower()}-was{n}"} for n, srv in enumerate(budget, 1)]
            register({**manifest, "servers": renamed}, system=System.objects.get(code=BUDGET_SYSTEM))
            Server.objects.filter(server_id__in=[srv["server_id"] for srv in budget]).update(active=False)
            self.stdout.write(f"testbed: {', '.join(s['server_id'] for s in budget)} serve {BUDGET_SYSTEM} WAS1-3")
