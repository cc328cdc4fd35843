"""The execution queue's order: a PM's priority goes before approval time, and a task whose
requested window has not opened waits (holding nothing, blocking no one) until it opens.

Database only: the waiting line, the queue messages, the task page and the audit chain.
"""

from __future__ import annotations

import datetime as dt

import pytest
from django.utils import timezone
from django_q.models import OrmQ

from audit.models import AuditEntry
from execution import leases
from execution.models import ExecutionLease, ExecutionWait, ServerLease
from governance.models import OpsTask, Status
from tests.execution.engine_helpers import approved_task
from tests.factories import ServerFactory, SystemFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def servers():
    system = SystemFactory()
    return [ServerFactory(system=system, server_id=f"srv-{n:02d}") for n in (1, 2)]


def shaped(task: OpsTask, *, approved_seconds_ago: int = 100, priority: int = 0, window=None) -> OpsTask:
    OpsTask.objects.filter(pk=task.pk).update(
        approved_at=timezone.now() - dt.timedelta(seconds=approved_seconds_ago), priority=priority, window_start=window
    )
    task.refresh_from_db()
    return task


def queued_names() -> list[str]:
    return sorted(q.name() for q in OrmQ.objects.all())


def busy(pk: int) -> None:
    pytest.fail("must not run now")


def test_a_higher_priority_goes_before_an_earlier_approval(servers, django_capture_on_commit_callbacks):
    running = shaped(approved_task(servers[:1], "SERVICE_RESTART"), approved_seconds_ago=300)
    earlier = shaped(approved_task(servers[:1], "SERVICE_RESTART"), approved_seconds_ago=200)
    urgent = shaped(approved_task(servers[:1], "SERVICE_RESTART"), approved_seconds_ago=10, priority=5)
    assert leases.acquire(running, servers[:1], "host-a:1") is None
    assert leases.run_leased(earlier.pk, busy) == "WAITING"
    assert leases.run_leased(urgent.pk, busy) == "WAITING"
    OrmQ.objects.all().delete()
    with django_capture_on_commit_callbacks(execute=True):
        leases.release(running.pk)
    assert queued_names() == [f"run-{urgent.task_id}"]  # approved later, but the PM put it first
    # Asked directly, the earlier-approved task may not overtake the higher priority waiter.
    blocked = leases.acquire(earlier, servers[:1], "host-b:2")
    assert blocked is not None and blocked.waiting and blocked.holder_task == urgent.task_id
    assert leases.acquire(urgent, servers[:1], "host-c:3") is None


def test_a_task_does_not_start_before_its_window_and_blocks_no_one(servers, django_capture_on_commit_callbacks):
    tonight = timezone.now() + dt.timedelta(hours=3)
    later = shaped(approved_task(servers[:1], "SERVICE_RESTART"), approved_seconds_ago=200, window=tonight)
    with django_capture_on_commit_callbacks(execute=True):
        assert leases.run_leased(later.pk, busy) == "SCHEDULED"
    assert not ExecutionLease.objects.filter(task=later).exists() and not ServerLease.objects.exists()
    start = timezone.localtime(tonight).strftime("%m-%d %H:%M")
    assert leases.waiting_reason(later) == f"예약: {start}에 시작 (요청한 작업 시간까지 대기)"
    entry = AuditEntry.objects.get(action="execution.scheduled", task=later.task_id)
    assert entry.payload["window_start"] == tonight.isoformat()
    # A task approved after it, with no window, takes the server at once.
    other = shaped(approved_task(servers[:1], "SERVICE_RESTART"), approved_seconds_ago=10)
    assert leases.acquire(other, servers[:1], "host-a:1") is None
    leases.release(other.pk)
    # The sweeps before the window queue nothing.
    OrmQ.objects.all().delete()
    with django_capture_on_commit_callbacks(execute=True):
        assert leases.dispatch_waiters(resend_after=60) == []
    assert queued_names() == [] and OpsTask.objects.get(pk=later.pk).status == Status.APPROVED
    # Asked again before the window (a duplicate queue message), it still does not run.
    assert leases.run_leased(later.pk, busy) == "SCHEDULED"
    assert AuditEntry.objects.filter(action="execution.scheduled", task=later.task_id).count() == 1
    # Once the window has opened, the reaper's sweep queues it.
    OpsTask.objects.filter(pk=later.pk).update(window_start=timezone.now() - dt.timedelta(seconds=1))
    with django_capture_on_commit_callbacks(execute=True):
        assert leases.dispatch_waiters(resend_after=60) == [later.task_id]
    assert queued_names() == [f"run-{later.task_id}"]
    ran = []
    assert leases.run_leased(later.pk, ran.append) is None and ran == [later.pk]
    assert not ExecutionWait.objects.filter(task=later).exists()


def test_the_task_page_and_the_plan_show_the_window(servers, client, django_capture_on_commit_callbacks):
    tonight = timezone.now() + dt.timedelta(hours=3)
    task = shaped(approved_task(servers[:1], "SERVICE_RESTART"), window=tonight)
    with django_capture_on_commit_callbacks(execute=True):
        leases.run_leased(task.pk, busy)
    client.force_login(task.requester)
    page = client.get(f"/console/tasks/{task.task_id}/").content.decode()
    when = timezone.localtime(tonight).strftime("%Y-%m-%d %H:%M")
    assert f'<dd id="task-window">{when}' in page and f'<dd class="plan-window">{when}</dd>' in page
    assert f"예약: {timezone.localtime(tonight).strftime('%m-%d %H:%M')}에 시작" in page
