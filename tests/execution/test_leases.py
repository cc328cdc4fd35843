"""Server leases: one change per server at a time, waiting in approval order, read-only exempt.

Database only (no SSH): the claims, the waiting line, what the task page is told, and the
heartbeat. The same rules across real workers and the sshd testbed: test_worker_kill.py.
"""

from __future__ import annotations

import datetime as dt

import pytest
from django.db import IntegrityError, transaction
from django.utils import timezone
from django_q.models import OrmQ

from audit.models import AuditEntry
from execution import leases
from execution.models import Execution, ExecutionLease, ExecutionWait, ServerLease
from governance.models import OpsTask, Status
from tests.execution.engine_helpers import approved_task
from tests.factories import ServerFactory, SystemFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def servers():
    system = SystemFactory()
    return [ServerFactory(system=system, server_id=f"srv-{n:02d}") for n in (1, 2, 3)]


def approved_at(task: OpsTask, seconds: int) -> OpsTask:
    OpsTask.objects.filter(pk=task.pk).update(approved_at=timezone.now() - dt.timedelta(seconds=100 - seconds))
    task.refresh_from_db()
    return task


def queued_names() -> list[str]:
    return sorted(q.name() for q in OrmQ.objects.all())


def test_all_servers_or_none_and_the_holder_is_named(servers):
    first = approved_task(servers[:2], "SERVICE_RESTART")
    second = approved_task(servers[1:], "SERVICE_RESTART")
    assert leases.acquire(first, servers[:2], "host-a:1") is None
    blocked = leases.acquire(second, servers[1:], "host-b:2")
    assert blocked is not None and (blocked.server, blocked.holder_task) == ("srv-02", first.task_id)
    assert blocked.text() == f"대기: srv-02 사용 중 ({first.task_id})"
    # Nothing of the second task was taken, not even the free srv-03.
    assert set(ServerLease.objects.values_list("server_ref", "lease__task_ref")) == {
        ("srv-01", first.task_id),
        ("srv-02", first.task_id),
    }
    assert not ExecutionLease.objects.filter(task=second).exists()


def test_the_database_refuses_a_second_holder(servers):
    first = approved_task(servers[:1], "SERVICE_RESTART")
    second = approved_task(servers[:1], "SERVICE_RESTART")
    assert leases.acquire(first, servers[:1], "host-a:1") is None
    other = ExecutionLease.objects.create(
        task=second, task_ref=second.task_id, holder="host-b:2", expires_at=timezone.now()
    )
    with pytest.raises(IntegrityError), transaction.atomic():
        ServerLease.objects.create(server=servers[0], server_ref="srv-01", lease=other)
    assert ServerLease.objects.get(server=servers[0]).lease.task_ref == first.task_id


def test_a_waiting_task_says_why_on_its_page_and_in_the_chain(servers, django_capture_on_commit_callbacks):
    holder = approved_task(servers[:1], "SERVICE_RESTART")
    waiter = approved_task(servers[:2], "SERVICE_RESTART")
    assert leases.acquire(holder, servers[:1], "host-a:1") is None
    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        assert leases.run_leased(waiter.pk, lambda pk: pytest.fail("must not run while srv-01 is busy")) == "WAITING"
    waiter.refresh_from_db()
    assert waiter.status == Status.APPROVED  # waiting is not executing: no worker is held
    assert not Execution.objects.filter(task=waiter).exists()
    text = f"대기: srv-01 사용 중 ({holder.task_id})"
    assert leases.waiting_reason(waiter) == text
    entry = AuditEntry.objects.get(action="execution.waiting", task=waiter.task_id)
    assert entry.payload["text"] == text and entry.target == "srv-01"
    assert callbacks, "the timeline line and the live event are sent after commit"
    # Asking again while nothing changed adds no second line.
    leases.run_leased(waiter.pk, lambda pk: pytest.fail("still busy"))
    assert AuditEntry.objects.filter(action="execution.waiting", task=waiter.task_id).count() == 1


def test_waiters_are_served_in_approval_order(servers, django_capture_on_commit_callbacks):
    running = approved_at(approved_task(servers[:1], "SERVICE_RESTART"), 0)
    later = approved_at(approved_task(servers[:1], "SERVICE_RESTART"), 30)
    earlier = approved_at(approved_task(servers[:2], "SERVICE_RESTART"), 10)
    assert leases.acquire(running, servers[:1], "host-a:1") is None
    # The later-approved task asks first; the earlier one asks second: order is approval time.
    leases.run_leased(later.pk, lambda pk: pytest.fail("busy"))
    leases.run_leased(earlier.pk, lambda pk: pytest.fail("busy"))
    assert list(ExecutionWait.objects.values_list("task_ref", flat=True)) == [earlier.task_id, later.task_id]
    OrmQ.objects.all().delete()
    with django_capture_on_commit_callbacks(execute=True):
        leases.release(running.pk)
    assert queued_names() == [f"run-{earlier.task_id}"]  # the later one stays behind the earlier one
    # Even asked directly, the later task may not overtake the earlier waiter.
    blocked = leases.acquire(later, servers[:1], "host-c:3")
    assert blocked is not None and blocked.waiting and blocked.holder_task == earlier.task_id
    assert leases.acquire(earlier, servers[:2], "host-b:2") is None
    assert not ExecutionWait.objects.filter(task=earlier).exists()
    OrmQ.objects.all().delete()
    with django_capture_on_commit_callbacks(execute=True):
        leases.release(earlier.pk)
    assert queued_names() == [f"run-{later.task_id}"]


def test_disjoint_servers_run_side_by_side(servers):
    one = approved_task(servers[:1], "SERVICE_RESTART")
    two = approved_task(servers[1:2], "SERVICE_RESTART")
    assert leases.acquire(one, servers[:1], "host-a:1") is None
    assert leases.acquire(two, servers[1:2], "host-a:1") is None


def test_read_only_inspections_take_no_server(servers, django_capture_on_commit_callbacks):
    deploy = approved_task(servers[:1], "SERVICE_RESTART")
    inspection = approved_task(servers[:1], "MEMORY_CHECK")
    assert leases.changed_servers(inspection) == []
    assert [s.server_id for s in leases.changed_servers(deploy)] == ["srv-01"]
    assert leases.acquire(deploy, leases.changed_servers(deploy), "host-a:1") is None
    ran = []
    with django_capture_on_commit_callbacks(execute=True):
        leases.run_leased(inspection.pk, lambda pk: ran.append(pk) or "SUCCEEDED")
    assert ran == [inspection.pk]
    # It held a claim while it ran (so the reaper watches it) and gave it back.
    assert not ExecutionLease.objects.filter(task=inspection).exists()


def test_the_claim_is_held_while_running_and_released_after(servers, django_capture_on_commit_callbacks):
    task = approved_task(servers[:2], "SERVICE_RESTART")
    seen = {}

    def run(pk):
        lease = ExecutionLease.objects.get(task_id=pk)
        seen["holder"] = lease.holder
        seen["servers"] = sorted(lease.servers.values_list("server_ref", flat=True))
        return "SUCCEEDED"

    with django_capture_on_commit_callbacks(execute=True):
        assert leases.run_leased(task.pk, run) == "SUCCEEDED"
    assert seen == {"holder": leases.holder_id(), "servers": ["srv-01", "srv-02"]}
    assert not ExecutionLease.objects.exists() and not ServerLease.objects.exists()


def test_a_task_not_approved_or_stopped_takes_nothing(servers):
    task = approved_task(servers[:1], "SERVICE_RESTART")
    OpsTask.objects.filter(pk=task.pk).update(status=Status.EXECUTING)
    assert leases.run_leased(task.pk, lambda pk: pytest.fail("not APPROVED")) is None
    stopped = approved_task(servers[1:2], "SERVICE_RESTART")
    OpsTask.objects.filter(pk=stopped.pk).update(stop_requested=True, stop_reason="테스트 중지")
    assert leases.run_leased(stopped.pk, lambda pk: "refused-by-service") == "refused-by-service"
    assert not ExecutionLease.objects.exists()


def test_heartbeat_renews_and_notices_a_takeover(servers, settings):
    settings.EXECUTION_LEASE_SECONDS = 30
    task = approved_task(servers[:1], "SERVICE_RESTART")
    assert leases.acquire(task, servers[:1], "host-a:1") is None
    ExecutionLease.objects.filter(task=task).update(expires_at=timezone.now() - dt.timedelta(seconds=5))
    beat = leases.Heartbeat(task.pk, "host-a:1")
    assert beat.renew()
    lease = ExecutionLease.objects.get(task=task)
    assert lease.expires_at > timezone.now() + dt.timedelta(seconds=25)
    ExecutionLease.objects.filter(task=task).update(holder="reaper:elsewhere")
    assert not beat.renew()


def test_the_task_page_shows_why_it_waits(servers, client, django_capture_on_commit_callbacks):
    holder = approved_task(servers[:1], "SERVICE_RESTART")
    waiter = approved_task(servers[:1], "SERVICE_RESTART")
    assert leases.acquire(holder, servers[:1], "host-a:1") is None
    with django_capture_on_commit_callbacks(execute=True):
        leases.run_leased(waiter.pk, lambda pk: pytest.fail("busy"))
    client.force_login(waiter.requester)
    page = client.get(f"/console/tasks/{waiter.task_id}/")
    assert page.status_code == 200
    assert f"대기: srv-01 사용 중 ({holder.task_id})" in page.content.decode()
