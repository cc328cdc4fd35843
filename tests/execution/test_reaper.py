"""The reaper's decisions, one situation a dead worker can leave behind at a time.

The rows a worker leaves are written as the worker writes them (a claim, an execution, a
server run) and the servers are the real sshd testbed; the reaper runs one sweep. Real
workers killed by SIGKILL: test_worker_kill.py.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest
from django.core.management import call_command
from django.utils import timezone
from django_q.models import Schedule

from audit.models import AuditEntry
from execution import leases, reaper
from execution.models import ExecutionLease, Outcome, RunState, ServerLease, ServerRun
from execution.services import execute_task
from governance import control
from governance.models import Notification, OpsTask, Status
from tests.execution.dead_worker import left_running, running_execution, started_with_claim, swept_in_flight
from tests.execution.engine_helpers import approved_task, deploy_parameters, version_of

pytestmark = pytest.mark.django_db


def test_a_live_claim_is_left_alone(testbed_cmdb):
    task = approved_task(testbed_cmdb[:1], "SERVICE_RESTART")
    assert leases.acquire(task, testbed_cmdb[:1], "alive:1") is None
    assert control.execution_started(task.pk) is not None
    assert reaper.sweep() == []
    task.refresh_from_db()
    assert task.status == Status.EXECUTING
    assert ServerLease.objects.filter(lease__task=task).count() == 1


def test_worker_lost_before_any_server_fails_the_task_and_alerts_owner_and_pm(testbed_cmdb, owner_and_pm):
    owner, pm = owner_and_pm
    task = approved_task(testbed_cmdb[:2], "APP_DEPLOY", deploy_parameters("2.1.0"))
    started_with_claim(task, testbed_cmdb[:2])
    results = reaper.sweep()
    task.refresh_from_db()
    assert [r["task"] for r in results] == [task.task_id]
    assert task.status == Status.FAILED_ROLLED_BACK
    assert "아무것도 변경하지 않았습니다" in results[0]["reason"]
    assert not ExecutionLease.objects.exists() and not ServerLease.objects.exists()
    assert Notification.objects.filter(user=owner, task=task, kind="alert").exists()
    assert Notification.objects.filter(user=pm, task=task).exists()
    lost = AuditEntry.objects.get(action="execution.worker_lost", task=task.task_id)
    assert lost.payload["holder"] == "dead-host:4242" and lost.payload["text"].startswith("워커 유실")
    assert AuditEntry.objects.filter(
        action="execution.recovered", task=task.task_id, payload__outcome=Outcome.FAILED_ROLLED_BACK
    ).exists()


def test_in_flight_server_is_re_verified_not_repeated(testbed_cmdb, clean_testbed, owner_and_pm):
    """Died right after taking the server, before its first step: the probe finds the old
    version running and nothing staged, so nothing is restarted."""
    srv = testbed_cmdb[0]
    task, run, received = swept_in_flight(clean_testbed, srv, "APP_DEPLOY", deploy_parameters("2.2.0"))
    assert task.status == Status.FAILED_ROLLED_BACK
    assert run.state == RunState.ROLLED_BACK and "nothing to undo" in run.message
    assert "sha256sum" in received and "shutdown.sh" not in received and "startup.sh" not in received
    assert version_of(srv) == "1.0.0"
    execution = run.execution
    assert execution.outcome == Outcome.FAILED_ROLLED_BACK and execution.finished_at is not None


def test_unreachable_server_ends_state_uncertain(testbed_cmdb, clean_testbed, owner_and_pm):
    srv = testbed_cmdb[1]
    task = approved_task([srv], "SERVICE_RESTART")
    execution = left_running(task, [srv], in_flight=[srv])
    clean_testbed.fault(srv.server_id, "sshd_down")
    try:
        reaper.sweep()
    finally:
        clean_testbed.fault(srv.server_id, "sshd_down", on=False)
    task.refresh_from_db()
    assert task.status == Status.STATE_UNCERTAIN
    assert ServerRun.objects.get(execution=execution).state == RunState.UNCERTAIN
    assert not ExecutionLease.objects.exists()


def test_finished_run_whose_worker_died_before_reporting_is_reported_after_verification(testbed_cmdb, owner_and_pm):
    targets = testbed_cmdb[:2]
    task = approved_task(targets, "APP_DEPLOY", deploy_parameters("2.3.0"))
    started_with_claim(task, targets)
    ExecutionLease.objects.filter(task=task).update(acquired_at=timezone.now() - dt.timedelta(seconds=5))
    result = execute_task(OpsTask.objects.select_related("system__institution").get(pk=task.pk))
    assert result.outcome == Outcome.SUCCEEDED  # ...and then the worker died before telling governance
    ExecutionLease.objects.filter(task=task).update(expires_at=timezone.now() - dt.timedelta(seconds=1))
    reaper.sweep()
    task.refresh_from_db()
    assert task.status == Status.PENDING_PM_VALIDATION
    assert {s["server"]: s["version_after"] for s in task.result_package["servers"]} == {
        s.server_id: "2.3.0" for s in targets
    }
    assert all(version_of(s) == "2.3.0" for s in targets)


def test_a_claim_is_recovered_by_one_sweep_only(testbed_cmdb):
    task = approved_task(testbed_cmdb[:1], "SERVICE_RESTART")
    lease = started_with_claim(task, testbed_cmdb[:1])
    assert reaper.claim(lease, "reaper:a")
    assert not reaper.claim(lease, "reaper:b")  # the row changed under the second sweep
    assert ExecutionLease.objects.get(pk=lease.pk).holder == "reaper:a"


def test_an_executing_task_without_any_claim_is_recovered_after_the_lease(testbed_cmdb, settings):
    """A task left EXECUTING by a worker that died before claims existed (the stuck task)."""
    settings.EXECUTION_LEASE_SECONDS = 5
    task = approved_task(testbed_cmdb[:1], "SERVICE_RESTART")
    assert control.execution_started(task.pk) is not None
    assert reaper.sweep() == []  # too fresh: a worker may still be starting
    OpsTask.objects.filter(pk=task.pk).update(updated_at=timezone.now() - dt.timedelta(seconds=6))
    results = reaper.sweep()
    task.refresh_from_db()
    assert [r["task"] for r in results] == [task.task_id] and task.status == Status.FAILED_ROLLED_BACK


def test_schedule_and_command(db, capsys):
    reaper.ensure_schedule()
    schedule = Schedule.objects.get(name=reaper.SCHEDULE_NAME)
    assert (schedule.func, schedule.schedule_type, schedule.minutes) == (
        "execution.tasks.reap_executions",
        Schedule.MINUTES,
        1,
    )
    call_command("reap_executions")
    assert "no orphaned execution" in capsys.readouterr().out


def test_a_stuck_task_without_a_claim_has_its_servers_re_verified(testbed_cmdb, clean_testbed, settings):
    """The stuck task of old: EXECUTING, no claim, a server left RUNNING; a stop was even asked
    for later. The reaper adopts the task and its free servers, re-verifies, and aborts it."""
    settings.EXECUTION_LEASE_SECONDS = 5
    srv = testbed_cmdb[2]
    task = approved_task([srv], "SERVICE_RESTART")
    OpsTask.objects.filter(pk=task.pk).update(approved_at=timezone.now() - dt.timedelta(seconds=200))
    assert control.execution_started(task.pk) is not None
    execution = running_execution(task, [srv], in_flight=[srv])
    clean_testbed.run_script(clean_testbed.server(srv.server_id), "shutdown.sh")  # it died mid-restart
    OpsTask.objects.filter(pk=task.pk).update(
        stop_requested=True, stop_reason="정지", updated_at=timezone.now() - dt.timedelta(seconds=6)
    )
    results = reaper.sweep()
    task.refresh_from_db()
    assert [r["task"] for r in results] == [task.task_id]
    assert task.status == Status.ABORTED
    assert ServerRun.objects.get(execution=execution).state == RunState.ROLLED_BACK
    assert version_of(srv) == "1.0.0"  # started again and healthy
    assert not ExecutionLease.objects.exists() and not ServerLease.objects.exists()


def test_a_server_started_before_its_row_said_so_is_re_verified_and_restored(testbed_cmdb, clean_testbed, owner_and_pm):
    """The worker records a server's start a drain after it begins: it may die with a server of
    the group under way already changed while that server's row still says PENDING. The sweep
    re-verifies the not-yet-started servers of that group too (and only of that group)."""
    from execution.models import ServerRun
    from tests.execution.engine_helpers import commands_received, war

    first, changed, untouched, later = testbed_cmdb[:4]
    parameters = deploy_parameters("2.6.0")
    task = approved_task([first, changed, untouched, later], "APP_DEPLOY", parameters)
    execution = left_running(task, [first, changed, untouched, later], in_flight=[first])
    ServerRun.objects.filter(execution=execution, server_ref=later.server_id).update(group_index=1)
    # What the lost worker did on ``changed`` before its start was committed: the backup, then the
    # new artifact moved into place (the running service still the old one).
    live = Path(changed.app_path) / "app.war"
    original = live.read_bytes()
    saved = Path(changed.backup_path) / task.task_id / "app.war"
    saved.parent.mkdir(parents=True, exist_ok=True)
    saved.write_bytes(original)
    live.write_bytes(Path(war("2.6.0")["path"]).read_bytes())
    before = {s.server_id: len(commands_received(clean_testbed, s.server_id)) for s in (untouched, later)}

    reaper.sweep()

    task.refresh_from_db()
    runs = {r.server_ref: r for r in ServerRun.objects.filter(execution=execution)}
    assert live.read_bytes() == original  # restored from its backup
    assert runs[changed.server_id].state == RunState.ROLLED_BACK
    assert runs[untouched.server_id].state == RunState.ABORTED and "시작하지 않음" in runs[untouched.server_id].message
    assert runs[later.server_id].state == RunState.ABORTED
    assert "sha256sum" in commands_received(clean_testbed, untouched.server_id)[before[untouched.server_id] :]
    assert (
        commands_received(clean_testbed, later.server_id)[before[later.server_id] :] == ""
    )  # a later group: not contacted
    assert task.status == Status.FAILED_ROLLED_BACK
    assert [version_of(s) for s in (first, changed, untouched, later)] == ["1.0.0"] * 4
