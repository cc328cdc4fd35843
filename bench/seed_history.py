"""Years of history built through the product's own code paths, at a chosen scale.

Every request is filed with governance.services.submit_task (policy, routing, approval
steps, the audit entries and notifications it writes) and most are decided with
services.decide_step by whoever the step is assigned to (four-eyes rule, next step,
audit). Two things are not the product's own path, and are said here: the tasks are then
spread over two years by rewriting their timestamps (the product stamps "now"), and the
approved ones are given an execution outcome by a status update (running them needs the
SSH testbed). Extra audit entries (execution lines) are written with audit.record().

Run: .venv/bin/python bench/seed_history.py --tasks 2000 [--audit-per-task 8]
(bench/years_of_data.py calls seed() itself; the issue's scale is --tasks 100000.)
"""

from __future__ import annotations

import argparse
import datetime as dt
import random
import time

if __name__ == "__main__":
    import benchenv  # noqa: F401  (Django set up on a throwaway data dir)

SUB_TYPES = ["MEMORY_CHECK", "SERVICE_RESTART", "LOG_MINING", "CRON_MANAGE"]
OUTCOMES = ["COMPLETED"] * 7 + ["PENDING_PM_VALIDATION", "FAILED_ROLLED_BACK", "EXECUTING"]
SPAN = dt.timedelta(days=730)


def organisation(institutions: int):
    """Institutions, each with a PM, a site manager and two systems (owner, deputy, supervisor)."""
    from tests.factories import InstitutionFactory, ServerFactory, SystemFactory, SystemOwnerFactory, UserFactory

    people = {role: UserFactory(username=f"{role}0", role=role) for role in ("pm", "security_officer", "auditor")}
    people["admin"] = UserFactory(username="admin0", role="admin", is_staff=True)
    places = []
    for i in range(institutions):
        inst = InstitutionFactory(code=f"INST{i:03d}", name=f"기관{i:03d}", tier=1 + i % 2, pm=people["pm"])
        field = UserFactory(username=f"field{i}", role="site_manager")
        inst.site_managers.add(field)
        for j in range(2):
            system = SystemFactory(code=f"SYS{i:03d}{j}", name=f"시스템{i:03d}-{j}", institution=inst)
            SystemOwnerFactory(
                system=system,
                owner=UserFactory(username=f"lead{i}_{j}", role="team_lead"),
                deputy=UserFactory(username=f"deputy{i}_{j}", role="team_lead"),
                supervisor=UserFactory(username=f"sup{i}_{j}", role="supervisor"),
            )
            servers = [ServerFactory(system=system, server_id=f"s{i:03d}{j}-{k}") for k in range(2)]
            places.append((system, field, servers))
    return people, places


def seed(tasks: int, audit_per_task: int = 8, seed_value: int = 1) -> dict:
    """Build the data set; returns the people and counts (for the bench to log in as)."""
    from django.conf import settings
    from django.db import transaction
    from django.utils import timezone

    import audit
    from governance import services
    from governance.errors import GovernanceError
    from governance.models import ApprovalStep, OpsTask, Status, StepStatus

    # Seeded accounts get a fast hasher: hashing dozens of passwords is not what is measured.
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    rng = random.Random(seed_value)
    started = time.perf_counter()
    people, places = organisation(max(2, tasks // 200))
    now = timezone.now()
    batch = transaction.atomic()  # a commit per 100 requests, not per row
    batch.__enter__()
    try:
        for n in range(tasks):
            if n and n % 100 == 0:
                batch.__exit__(None, None, None)
                batch = transaction.atomic()
                batch.__enter__()
            system, field, servers = places[rng.randrange(len(places))]
            task = services.submit_task(
                field,
                system=system,
                sub_type=rng.choice(SUB_TYPES),
                title=f"정기 점검 {n}",
                targets=servers[: 1 + n % 2],
            )
            for _ in range(3):  # decide the open steps, as their assignees would
                step = (
                    ApprovalStep.objects.filter(task=task, status=StepStatus.PENDING).exclude(assigned_to=None).first()
                )
                if step is None or rng.random() < 0.15:
                    break
                rejected = rng.random() < 0.05
                try:
                    services.decide_step(
                        step.assigned_to,
                        step.pk,
                        "REJECTED" if rejected else "APPROVED",
                        "반려: 일정 조정" if rejected else "",
                        plan_sha256=task.plan_sha256,
                    )
                except GovernanceError:
                    break
            created = now - SPAN * rng.random()
            fields = {"created_at": created}
            task.refresh_from_db()
            if task.status == Status.APPROVED:
                fields["approved_at"] = created + dt.timedelta(minutes=rng.expovariate(1 / 90))
                fields["status"] = rng.choice(OUTCOMES)
            OpsTask.objects.filter(pk=task.pk).update(**fields)
            for k in range(audit_per_task):
                audit.record(
                    "system",
                    "execution.step",
                    task=task.task_id,
                    target=servers[0].server_id,
                    command=f"check {k}",
                    result_code=0,
                    output=f"ok {k}",
                    payload={"institution": system.institution.code},
                )
    finally:
        batch.__exit__(None, None, None)
    return {"people": people, "places": places, "tasks": tasks, "seconds": time.perf_counter() - started}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--tasks", type=int, default=2000)
    parser.add_argument("--audit-per-task", type=int, default=8)
    args = parser.parse_args()
    from audit.models import AuditEntry
    from governance.models import ApprovalStep, Notification, OpsTask

    result = seed(args.tasks, args.audit_per_task)
    print(
        f"{OpsTask.objects.count()} tasks, {ApprovalStep.objects.count()} approval steps, "
        f"{Notification.objects.count()} notifications, {AuditEntry.objects.count()} audit entries "
        f"in {result['seconds']:.0f} s"
    )


if __name__ == "__main__":
    main()
