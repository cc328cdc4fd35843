"""TS-01: the owner stays silent past the SLA -> the deputy gets the step; the deputy stays
silent -> the supervisor, URGENT. A frozen clock drives the real sweep function."""

from __future__ import annotations

import datetime as dt

import pytest
import time_machine
from django.utils import timezone

from audit.models import AuditEntry
from governance import services
from governance.errors import Forbidden
from governance.escalation import escalate_overdue_steps
from governance.models import Notification, Routing, Status, StepStatus

START = dt.datetime(2026, 5, 23, 10, 0, tzinfo=dt.UTC)


def open_step(task):
    return task.steps.get(status=StepStatus.PENDING, activated_at__isnull=False)


def test_ts01_owner_to_deputy_to_supervisor(world, submit):
    with time_machine.travel(START, tick=False) as clock:
        task = submit("SERVICE_RESTART")
        step = open_step(task)
        assert step.assigned_to == world.owner
        assert step.sla_deadline == START + dt.timedelta(minutes=10)

        clock.move_to(START + dt.timedelta(minutes=5, seconds=1))
        assert escalate_overdue_steps()["reminded"] == 1
        assert Notification.objects.filter(user=world.owner, kind="reminder").count() == 1
        assert escalate_overdue_steps()["reminded"] == 0  # one reminder, not one per sweep

        clock.move_to(START + dt.timedelta(minutes=10, seconds=1))
        assert escalate_overdue_steps()["escalated"] == 1
        step.refresh_from_db()
        task.refresh_from_db()
        assert step.assigned_to == world.deputy and step.routing == Routing.ESCALATED
        assert step.original_owner == world.owner and task.urgent
        assert Notification.objects.filter(user=world.deputy, task=task, kind="approval").exists()
        escalation = AuditEntry.objects.filter(task=task.task_id, action="approval.escalated").get()
        assert escalation.payload["escalated_from"] == "owner"
        assert escalation.payload["assigned_to"] == "deputy"
        assert escalation.payload["original_owner"] == "owner"

        # The owner lost authority with the escalation.
        with pytest.raises(Forbidden):
            services.decide_step(world.owner, step.pk, "APPROVED")

        clock.move_to(START + dt.timedelta(minutes=20, seconds=2))
        assert escalate_overdue_steps()["escalated"] == 1
        step.refresh_from_db()
        assert step.assigned_to == world.supervisor and step.escalation_level == 2
        note = Notification.objects.filter(user=world.supervisor, task=task).latest("created_at")
        assert note.message.startswith("[긴급]")

        services.decide_step(world.supervisor, step.pk, "APPROVED", "escalated approval")
        step.refresh_from_db()
        assert step.actual_approver == world.supervisor and step.original_owner == world.owner
        decided = AuditEntry.objects.get(task=task.task_id, action="approval.decided")
        assert decided.payload["original_owner"] == "owner" and decided.payload["actual_approver"] == "supervisor"


def test_silent_supervisor_keeps_paging_or_expires_never_approves(world, submit):
    with time_machine.travel(START, tick=False) as clock:
        task = submit("SERVICE_RESTART")
        for minutes in (11, 22, 33):  # owner -> deputy -> supervisor -> paged again
            clock.move_to(START + dt.timedelta(minutes=minutes))
            escalate_overdue_steps()
        task.refresh_from_db()
        assert task.status == Status.PENDING_APPROVAL
        assert AuditEntry.objects.filter(task=task.task_id, action="approval.repaged").count() == 1

        world.system.expire_unanswered = True
        world.system.save()
        clock.move_to(START + dt.timedelta(minutes=44))
        assert escalate_overdue_steps()["expired"] == 1
        task.refresh_from_db()
        assert task.status == Status.REJECTED
        assert task.approved_at is None
        assert Notification.objects.filter(user=world.requester, kind="rejected").exists()


def test_sweep_leaves_steps_within_sla_alone(world, submit):
    task = submit("SERVICE_RESTART")
    counts = escalate_overdue_steps(timezone.now() + dt.timedelta(minutes=1))
    assert counts == {"reminded": 0, "escalated": 0, "repaged": 0, "expired": 0, "skipped": 0}
    assert open_step(task).assigned_to == world.owner
