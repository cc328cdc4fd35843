"""Page times with years of data: p50/p95 per page per role, with the load average.

Builds the data set with bench/seed_history.py (the product's own code paths), then reads
every console, API and audit page a person pages through, as each role, in-process with
Django's test client (no network, one request at a time), first page and a deep page.

Run: .venv/bin/python bench/years_of_data.py --tasks 2000 [--repeat 20]
Figures go to docs/benchmarks.md with the load average printed here; run it on a quiet
machine (a neighbour's benchmark measures the neighbour).
"""

from __future__ import annotations

import argparse
import os
import time

# Pages are read by accounts the seed created a moment ago: the first-login password change,
# one-time passwords and the one-session rule would answer every request with a redirect.
for _name in (
    "GUARDIA_SESSION_SINGLE",
    "GUARDIA_PASSWORD_FIRST_LOGIN_CHANGE",
    "GUARDIA_LOGIN_NOTICE",
    "GUARDIA_OTP_ENABLED",
):
    os.environ.setdefault(_name, "false")

import benchenv
from seed_history import seed

PARSER = argparse.ArgumentParser()
PARSER.add_argument("--tasks", type=int, default=2000)
PARSER.add_argument("--audit-per-task", type=int, default=8)
PARSER.add_argument("--repeat", type=int, default=20)
ARGS = PARSER.parse_args()


def pages(role: str, deep_tasks: int, deep_audit: int, task_id: str, action: str) -> list[str]:
    """The pages a role uses (the audit console is the auditor's; approvals the deciders')."""
    urls = [
        "/console/",
        "/console/tiles/",
        "/console/statistics/",
        "/console/inbox/",
        "/console/search/?q=점검",
        f"/console/search/?q=점검&page={deep_tasks}",
        "/api/v1/tasks/",
        f"/api/v1/tasks/?page={deep_tasks}",
        f"/api/v1/task/history/{task_id}",
    ]
    if role in ("pm", "team_lead"):
        urls.append("/console/approvals/")
    if role == "auditor":
        urls += ["/audit/", f"/audit/?action={action}&page={deep_audit}"]
    if role == "admin":
        urls = ["/admin/audit/auditentry/", f"/admin/audit/auditentry/?q={task_id}"]
    return urls


def main() -> None:
    from django.conf import settings
    from django.test import Client
    from rest_framework.authtoken.models import Token

    from audit.models import AuditEntry
    from governance.models import ApprovalStep, OpsTask

    settings.ALLOWED_HOSTS = [*settings.ALLOWED_HOSTS, "testserver"]
    settings.DEBUG = False
    built = seed(ARGS.tasks, ARGS.audit_per_task)
    people, places = built["people"], built["places"]
    system, field, _ = places[0]
    lead = system.ownership.owner
    roles = {
        "pm": people["pm"],
        "team_lead": lead,
        "site_manager": field,
        "auditor": people["auditor"],
        "admin": people["admin"],
    }
    sample = OpsTask.objects.filter(system=system).order_by("pk").first()
    action = "execution.step"
    deep_audit = max(1, AuditEntry.objects.filter(action=action).count() // 50 // 2)
    print(benchenv.machine_line())
    print(
        f"database: {settings.DATABASES['default']['ENGINE'].rsplit('.', 1)[-1]}; "
        f"{OpsTask.objects.count()} tasks, {ApprovalStep.objects.count()} steps, "
        f"{AuditEntry.objects.count()} audit entries (seeded in {built['seconds']:.0f} s)"
    )
    print(f"{'role':<13} {'page':<48} {'p50 ms':>7} {'p95 ms':>7} status")
    for role, user in roles.items():
        client = Client()
        client.force_login(user)
        token = Token.objects.get_or_create(user=user)[0].key
        visible = OpsTask.objects.visible_to(user).count()
        deep_tasks = max(1, visible // 50 // 2)  # half-way through the user's own list
        for url in pages(role, deep_tasks, deep_audit, sample.task_id, action):
            headers = {"HTTP_AUTHORIZATION": f"Token {token}"} if url.startswith("/api/") else {}
            times, status = [], 0
            for _ in range(ARGS.repeat + 1):
                start = time.perf_counter()
                response = client.get(url, **headers)
                status = response.status_code if response.status_code != 302 else response["Location"][:20]
                times.append((time.perf_counter() - start) * 1000)
            times = times[1:]  # the first read warms caches and imports
            print(
                f"{role:<13} {url[:48]:<48} {benchenv.percentile(times, 0.5):7.1f} "
                f"{benchenv.percentile(times, 0.95):7.1f} {status}"
            )
    print(benchenv.machine_line())


if __name__ == "__main__":
    main()
