"""Page times with years of data: p50/p95 per page per role, with the load average.

Builds the data set with bench/seed_history.py (or reads one seeded earlier: point
GUARDIA_DATA_DIR, or GUARDIA_DATABASE_URL, at it and pass --reuse), then reads every
console, API, audit and admin page a person pages through, as each role, in-process with
Django's test client (no network, one request at a time): the first page and a deep page
half-way through the role's own list (by keyset position, as the "다음" links carry it).

--export then serves the data with Daphne and measures, over HTTP: the growth of the web
process's resident memory while it streams a JSON Lines export of every entry, and the
time to the first byte of a one-month export (after the nightly whole-chain verification
has run, as the schedule does at 00:00, and again without one).

Run: .venv/bin/python bench/years_of_data.py --tasks 100000 --audit 1000000 [--repeat 20] [--export | --export-only]
Figures go to docs/benchmarks.md with the load average printed here; run it on a quiet
machine (a neighbour's benchmark measures the neighbour).
"""

from __future__ import annotations

import argparse
import base64
import datetime as dt
import http.client
import os
import sys
import time
from pathlib import Path
from urllib.parse import urlencode

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from tests.account_rules import relax_account_rules

# Pages are read by accounts the seed created a moment ago: the first-login password change,
# one-time passwords and the one-session rule would answer every request with a redirect.
relax_account_rules()

import benchenv
from seed_history import seed

PARSER = argparse.ArgumentParser()
PARSER.add_argument("--tasks", type=int, default=2000)
PARSER.add_argument("--audit", type=int, default=None, help="audit entries (default 10 per request)")
PARSER.add_argument("--repeat", type=int, default=20)
PARSER.add_argument("--reuse", action="store_true", help="read the data set already in the database")
PARSER.add_argument("--export", action="store_true", help="also measure exports through Daphne")
PARSER.add_argument("--export-only", action="store_true", help="measure the exports, not the pages")
ARGS = PARSER.parse_args()


def seeded_people() -> tuple[dict, object, object]:
    """The accounts seed_history made (by their names), for a data set seeded earlier."""
    from django.contrib.auth import get_user_model

    from cmdb.models import System

    users = get_user_model().objects
    people = {role: users.get(username=f"{role}0") for role in ("pm", "security_officer", "auditor", "admin")}
    system = System.objects.select_related("ownership__owner").get(code="SYS0000")
    return people, system, users.get(username="field0")


def task_position(tasks) -> str:
    """The keyset position (audit/paging.py) of the task half-way through a list, newest first."""
    from audit.paging import EPOCH, MICROSECOND

    count = tasks.count()
    middle = tasks.order_by("-created_at", "-pk").values_list("created_at", "pk")[count // 2]
    return f"{(middle[0] - EPOCH) // MICROSECOND}.{middle[1]}"


def api_cursor(tasks) -> str:
    """DRF's cursor for the same place in /api/v1/tasks/ (its position is the created_at text)."""
    count = tasks.count()
    created = tasks.order_by("-created_at", "-pk").values_list("created_at", flat=True)[count // 2]
    return base64.b64encode(urlencode({"p": str(created)}).encode()).decode()


def pages(role: str, user, task_id: str, action: str) -> list[str]:
    """The pages a role uses (the audit console is the auditor's; approvals the deciders')."""
    from audit.models import AuditEntry
    from governance.models import Notification, OpsTask

    if role == "admin":
        return [
            "/admin/audit/auditentry/",
            f"/admin/audit/auditentry/?q={task_id}",
            "/admin/audit/auditentry/?q=행위자:pm0",
            "/admin/audit/auditentry/?action=execution.step",
            "/admin/audit/auditcheckpoint/",
            "/admin/cmdb/server/",
            "/admin/cmdb/system/",
        ]
    mine = OpsTask.objects.visible_to(user)
    found = mine.filter(title__icontains="점검")
    urls = [
        "/console/",
        "/console/tiles/",
        "/console/statistics/",
        "/console/statistics/?range=90d",
        "/console/inbox/",
        "/console/search/?q=점검",
        f"/console/search/?q=점검&before={task_position(found)}",
        "/api/v1/tasks/",
        f"/api/v1/tasks/?cursor={api_cursor(mine)}",
        f"/api/v1/task/history/{task_id}",
    ]
    notes = Notification.objects.filter(user=user)
    if notes.count() > 100:
        urls.append(f"/console/inbox/?before={task_position(notes)}")
    if role in ("pm", "team_lead"):
        urls.append("/console/approvals/")
    if role == "auditor":
        by_action = AuditEntry.objects.filter(action=action).order_by("-seq").values_list("seq", flat=True)
        middle = by_action[by_action.count() // 2]
        everything = AuditEntry.objects.order_by("-seq").values_list("seq", flat=True)
        urls += [
            "/audit/",
            f"/audit/?before={everything[everything.count() // 2]}",
            f"/audit/?action={action}&before={middle}",
        ]
    return urls


def read_pages(roles: dict, task_id: str) -> None:
    from django.test import Client
    from rest_framework.authtoken.models import Token

    print(f"{'role':<13} {'page':<58} {'p50 ms':>7} {'p95 ms':>7} status")
    for role, user in roles.items():
        client = Client()
        client.force_login(user)
        token = Token.objects.get_or_create(user=user)[0].key
        for url in pages(role, user, task_id, "execution.step"):
            headers = {"HTTP_AUTHORIZATION": f"Token {token}"} if url.startswith("/api/") else {}
            times, status = [], 0
            for _ in range(ARGS.repeat + 1):
                start = time.perf_counter()
                response = client.get(url, **headers)
                status = response.status_code if response.status_code != 302 else response["Location"][:20]
                times.append((time.perf_counter() - start) * 1000)
            times = times[1:]  # the first read warms caches and imports
            shown = url if len(url) <= 58 else url[:55] + "..."
            print(
                f"{role:<13} {shown:<58} {benchenv.percentile(times, 0.5):7.1f} "
                f"{benchenv.percentile(times, 0.95):7.1f} {status}",
                flush=True,
            )


def _rss_kb(pid: int, key: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1])
    return 0


def _daphne_pid(port: str) -> int:
    """The Daphne child listening on this port (the bench started it)."""
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            try:
                cmd = (proc / "cmdline").read_bytes().split(b"\0")
            except OSError:
                continue
            if b"daphne" in b" ".join(cmd) and port.encode() in cmd:
                return int(proc.name)
    raise RuntimeError("daphne process not found")


def _get(address: str, path: str, token: str, keep_reading: bool = True) -> tuple[int, float, int, float]:
    """(status, seconds to the first body byte, bytes, seconds in all)."""
    host, port = address.split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=600)
    start = time.perf_counter()
    conn.request("GET", path, headers={"Authorization": f"Token {token}"})
    response = conn.getresponse()
    first = response.read(1)
    ttfb = time.perf_counter() - start
    size = len(first)
    while keep_reading and (chunk := response.read(1 << 20)):
        size += len(chunk)
    conn.close()
    return response.status, ttfb, size, time.perf_counter() - start


def measure_exports(auditor) -> None:
    from django.conf import settings
    from django.db.models import Max, Min
    from rest_framework.authtoken.models import Token

    from audit import services
    from audit.models import AuditEntry
    from tests.live import daphne, sqlite_child_env

    token = Token.objects.get_or_create(user=auditor)[0].key
    env = sqlite_child_env(GUARDIA_LOG_LEVEL="WARNING")
    if os.environ.get("GUARDIA_DATABASE_URL"):
        env["GUARDIA_DATABASE_URL"] = os.environ["GUARDIA_DATABASE_URL"]
    span = AuditEntry.objects.aggregate(first=Min("created_at"), last=Max("created_at"))
    middle = span["first"] + (span["last"] - span["first"]) / 2
    month = (middle.date().replace(day=1), (middle.date().replace(day=1) + dt.timedelta(days=32)).replace(day=1))
    one_month = "/api/v1/audit/export?" + urlencode(
        {"format": "jsonl", "since": month[0].isoformat(), "until": (month[1] - dt.timedelta(days=1)).isoformat()}
    )
    with daphne(env, benchenv.DATA_DIR / "daphne-export.log") as address:
        pid = _daphne_pid(address.split(":")[1])
        print(f"export through Daphne (pid {pid}), database {settings.DATABASES['default']['ENGINE'].rsplit('.')[-1]}")
        _get(address, "/api/v1/tasks/?limit=1", token)  # imports and connections warmed
        runs = AuditEntry.objects.filter(action="audit.verify").count()
        status, ttfb, size, total = _get(address, one_month, token)
        print(f"  one-month export ({month[0]}), {runs} verification runs recorded before: status {status}, "
              f"first byte {ttfb:.2f} s, {size / 1e6:.1f} MB in {total:.1f} s · {benchenv.machine_line()}")  # fmt: skip
        started = time.perf_counter()
        report = services.run_verification("bench", source="schedule")
        print(
            f"  whole-chain verification (the nightly run): {report.message()} in {time.perf_counter() - started:.1f} s"
        )
        for _ in range(2):
            status, ttfb, size, total = _get(address, one_month, token)
            print(f"  one-month export after it: status {status}, first byte {ttfb:.2f} s, "
                  f"{size / 1e6:.1f} MB in {total:.1f} s · {benchenv.machine_line()}")  # fmt: skip
        before = _rss_kb(pid, "VmRSS")
        status, ttfb, size, total = _get(address, "/api/v1/audit/export?format=jsonl", token)
        peak = _rss_kb(pid, "VmHWM")
        print(f"  whole export ({AuditEntry.objects.count()} entries): status {status}, first byte {ttfb:.2f} s, "
              f"{size / 1e6:.0f} MB in {total:.0f} s; Daphne RSS {before / 1024:.0f} MB before, peak "
              f"{peak / 1024:.0f} MB (+{(peak - before) / 1024:.0f} MB) · {benchenv.machine_line()}")  # fmt: skip


def main() -> None:
    from django.conf import settings

    from audit.models import AuditEntry
    from governance.models import ApprovalStep, Notification, OpsTask

    settings.ALLOWED_HOSTS = [*settings.ALLOWED_HOSTS, "testserver"]
    settings.DEBUG = False
    if ARGS.reuse and OpsTask.objects.exists():
        seconds = None
    else:
        seconds = seed(ARGS.tasks, ARGS.audit)["seconds"]
    from governance import rollup
    from governance.models import StatisticsRollupState

    if not StatisticsRollupState.objects.filter(through__isnull=False).exists():
        started = time.perf_counter()  # a data set seeded before the statistics rollup existed
        built = rollup.rebuild("bench years_of_data")
        print(f"statistics rollup rebuilt: {built} in {time.perf_counter() - started:.1f} s")
    people, system, field = seeded_people()
    roles = {
        "pm": people["pm"],
        "team_lead": system.ownership.owner,
        "site_manager": field,
        "auditor": people["auditor"],
        "admin": people["admin"],
    }
    # The accounts read pages as people who have set their own password (an account made
    # before the password policy existed is otherwise sent to the change form first).
    from cmdb.models import AccountSecurity

    AccountSecurity.objects.filter(user__in=roles.values()).update(must_change_password=False)
    sample = OpsTask.objects.filter(system=system).order_by("pk").first()
    print(benchenv.machine_line())
    print(
        f"database: {settings.DATABASES['default']['ENGINE'].rsplit('.', 1)[-1]}; "
        f"{OpsTask.objects.count()} tasks, {ApprovalStep.objects.count()} steps, "
        f"{Notification.objects.count()} notifications, {AuditEntry.objects.count()} audit entries"
        + (f" (seeded in {seconds:.0f} s)" if seconds else " (seeded earlier)")
    )
    if not ARGS.export_only:
        read_pages(roles, sample.task_id)
        print(benchenv.machine_line())
    if ARGS.export or ARGS.export_only:
        measure_exports(people["auditor"])


if __name__ == "__main__":
    main()
