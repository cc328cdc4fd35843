"""Escalation sweep over 10,000 pending steps of which 1,000 are overdue (target < 2 s).

Run: .venv/bin/python bench/governance_sweep.py [--pending 10000 --overdue 1000]
"""

from __future__ import annotations

import argparse
import datetime as dt
import time

import benchenv  # sets up Django
from django.contrib.auth.models import Group, User
from django.db import connection, transaction
from django.utils import timezone

from cmdb.models import Institution, System, SystemOwner
from governance.escalation import escalate_overdue_steps
from governance.models import ApprovalStep, OpsTask, Status


def populate(pending: int, overdue: int) -> None:
    lead = Group.objects.get(name="team_lead")
    users = {name: User.objects.create_user(name, password="x") for name in ("owner", "deputy", "sup", "req")}
    for name in ("owner", "deputy"):
        users[name].groups.add(lead)
    users["sup"].groups.add(Group.objects.get(name="supervisor"))
    users["req"].groups.add(Group.objects.get(name="site_manager"))
    inst = Institution.objects.create(code="BENCH", name="벤치기관", tier=2)
    system = System.objects.create(code="BENCHSYS", name="벤치시스템", institution=inst)
    SystemOwner.objects.create(system=system, owner=users["owner"], deputy=users["deputy"], supervisor=users["sup"])
    now = timezone.now()
    with transaction.atomic():
        tasks = OpsTask.objects.bulk_create(
            OpsTask(
                task_id=f"OPS-BENCH-{i:05d}",
                category="INFRA_CONTROL",
                sub_type="SERVICE_RESTART",
                title=f"bench {i}",
                system=system,
                requester=users["req"],
                risk="MEDIUM",
                status=Status.PENDING_APPROVAL,
            )
            for i in range(pending)
        )
        ApprovalStep.objects.bulk_create(
            ApprovalStep(
                task=task,
                step_order=1,
                role="owner",
                assigned_to=users["owner"],
                original_owner=users["owner"],
                activated_at=now - dt.timedelta(minutes=20),
                reminded_at=now - dt.timedelta(minutes=15),
                sla_deadline=now - dt.timedelta(minutes=1) if i < overdue else now + dt.timedelta(hours=1),
            )
            for i, task in enumerate(tasks)
        )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--pending", type=int, default=10_000)
    parser.add_argument("--overdue", type=int, default=1_000)
    args = parser.parse_args()
    populate(args.pending, args.overdue)
    start = time.perf_counter()
    counts = escalate_overdue_steps()
    elapsed = time.perf_counter() - start
    print(benchenv.machine_line())
    print(f"database: {connection.vendor}")
    print(f"pending steps: {args.pending}, overdue: {args.overdue}")
    print(f"sweep result: {counts}")
    print(f"sweep wall time: {elapsed:.2f} s  ({args.overdue / elapsed:.0f} escalations/s; target < 2 s)")
    assert counts["escalated"] == args.overdue


if __name__ == "__main__":
    main()
