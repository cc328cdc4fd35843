"""The rolling engine against the real testbed (real sshd, real WAS stand-ins, nothing mocked):
a clean two-group rollout, TS-02, the kill switch and a failing rollback."""

from __future__ import annotations

import time

import pytest
from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer

from audit.models import AuditEntry
from execution.models import Execution, ServerRun, StepResult
from execution.services import run_task
from governance import events
from governance.models import Status

from .engine_helpers import (
    approved_task,
    backup_of,
    commands_received,
    deploy_parameters,
    fast_port_wait,
    live_events,
    press_stop_when,
    startup_hanging,
    version_of,
)

pytestmark = [pytest.mark.testbed, pytest.mark.django_db(transaction=True)]


def by_group(servers):
    return [s for s in servers if s.rolling_group == 1], [s for s in servers if s.rolling_group == 2]


def test_rolling_deploy_to_two_groups(testbed_cmdb):
    servers = testbed_cmdb
    assert len(servers) == 10 and {s.rolling_group for s in servers} == {1, 2}
    task = approved_task(servers, parameters=deploy_parameters("2.0.0"))
    layer = get_channel_layer()
    channel = async_to_sync(layer.new_channel)()
    async_to_sync(layer.group_add)(events.task_group(task.task_id), channel)

    assert run_task(task.pk) == "SUCCEEDED"

    task.refresh_from_db()
    assert task.status == Status.PENDING_PM_VALIDATION
    for server in servers:
        assert version_of(server) == "2.0.0", server.server_id
        assert backup_of(server, task) == "version=1.0.0", server.server_id
    execution = Execution.objects.get(task=task)
    assert execution.playbook == "APP_DEPLOY" and execution.playbook_version
    assert [len(g) for g in execution.plan] == [5, 5]
    assert set(ServerRun.objects.filter(execution=execution).values_list("state", flat=True)) == {"SUCCEEDED"}
    # Every remote step stored (redacted command, exit code, SHA-256, duration) and audited.
    steps = StepResult.objects.filter(server_run__execution=execution).exclude(command="")
    assert steps.count() >= 10 * 7
    assert not steps.exclude(state="OK").exists()
    assert all(len(s.output_sha256) == 64 for s in steps)
    names = set(steps.values_list("name", flat=True))
    assert {"pre-check", "upload", "backup", "shutdown", "swap", "startup", "post-check"} <= names
    checks = StepResult.objects.filter(server_run__execution=execution, command="")
    assert set(checks.values_list("name", flat=True)) == {"port", "http"}  # probed from the worker
    audited = AuditEntry.objects.filter(action="execution.step", task=task.task_id)
    assert audited.count() == steps.count()
    assert audited.first().payload["institution"] == servers[0].system.institution.code
    # The result package for the PM and live progress over Channels.
    assert len(task.result_package["servers"]) == 10
    assert {"group", "server", "step"} <= {event["kind"] for event in live_events(layer, channel)}


def test_ts02_health_fails_in_group_two_restores_the_whole_group(testbed, testbed_cmdb):
    servers = testbed_cmdb
    first, second = by_group(servers)
    fast_port_wait(servers, 5)
    bad = second[1]  # srv-07
    testbed.fault(bad.server_id, "health_fail")  # the new version never opens its port
    task = approved_task(servers, parameters=deploy_parameters("2.0.0"))

    assert run_task(task.pk) == "FAILED_ROLLED_BACK"

    task.refresh_from_db()
    assert task.status == Status.FAILED_ROLLED_BACK
    assert task.failure_reason == f"포트 {bad.service_port}이(가) 5초 안에 응답하지 않습니다 ({bad.server_id})"
    assert [version_of(s) for s in first] == ["2.0.0"] * 5
    assert [version_of(s) for s in second] == ["1.0.0"] * 5  # succeeded ones restored too
    runs = {r.server_ref: r for r in ServerRun.objects.filter(execution__task=task)}
    assert {runs[s.server_id].state for s in second} == {"ROLLED_BACK"}
    restored_ok = [s for s in second if s != bad]
    assert (
        StepResult.objects.filter(
            server_run__server_ref__in=[s.server_id for s in restored_ok],
            server_run__execution__task=task,
            name="swap",
            state="OK",
        ).count()
        >= 1
    )
    assert "Failed to initialize connector" in runs[bad.server_id].log_tail  # catalina.out dumped


def test_kill_switch_mid_rollout_kills_the_running_step_and_restores_the_group(testbed, testbed_cmdb):
    servers = testbed_cmdb
    first, second = by_group(servers)
    fast_port_wait(servers, 5)
    hung = second[2]  # srv-08: startup.sh of the new version hangs until killed
    testbed.fault(hung.server_id, "hang")
    task = approved_task(servers, parameters=deploy_parameters("2.0.0", script_timeout=60))
    stopped_at: list[float] = []
    thread = press_stop_when(task, startup_hanging(testbed, hung), delay=0.3, stopped_at=stopped_at)
    started = time.monotonic()
    outcome = run_task(task.pk)
    thread.join()
    assert outcome == "ABORTED" and stopped_at
    assert time.monotonic() - started < 30  # the hang was killed, not waited out (60 s timeout)
    task.refresh_from_db()
    assert task.status == Status.ABORTED
    assert [version_of(s) for s in first] == ["2.0.0"] * 5
    assert [version_of(s) for s in second] == ["1.0.0"] * 5
    # No forward step started after the stop was seen (one poll interval of grace).
    late = StepResult.objects.filter(
        server_run__execution__task=task, phase="forward", started_at__gt=_aware(stopped_at[0] + 0.5)
    )
    assert not late.exists(), list(late.values_list("server_run__server_ref", "name"))
    killed = StepResult.objects.get(
        server_run__execution__task=task, server_run__server_ref=hung.server_id, name="startup", phase="forward"
    )
    assert killed.state == "KILLED"
    assert AuditEntry.objects.filter(action="execution.kill_switch", task=task.task_id).exists()


def test_failing_rollback_is_manual_intervention_and_stops_the_world(testbed, testbed_cmdb):
    servers = testbed_cmdb
    fast_port_wait(servers, 5)
    bad = next(s for s in servers if s.server_id.endswith("07"))
    testbed.fault(bad.server_id, "health_fail")  # 2.0.0 fails ...
    testbed.fault(bad.server_id, "rollback_fail")  # ... and 1.0.0 will not start again either
    untouched = [s for s in servers if s.server_id.endswith(("09", "10"))]
    before = {s.server_id: commands_received(testbed, s.server_id) for s in untouched}
    # batches of 3: [01 02 03] [04 05] [06 07 08] [09 10]
    task = approved_task(servers, parameters=deploy_parameters("2.0.0", batch_size=3))

    outcome = run_task(task.pk)
    task.refresh_from_db()
    assert outcome == "MANUAL_INTERVENTION_REQUIRED", task.failure_reason

    task.refresh_from_db()
    assert task.status == Status.MANUAL_INTERVENTION_REQUIRED
    assert task.failure_reason.startswith(f"{bad.server_id} 롤백 실패")
    assert ServerRun.objects.get(execution__task=task, server_ref=bad.server_id).state == "ROLLBACK_FAILED"
    for server in untouched:
        assert commands_received(testbed, server.server_id) == before[server.server_id]
        assert version_of(server) == "1.0.0"
        assert ServerRun.objects.get(execution__task=task, server_ref=server.server_id).state == "PENDING"


def _aware(timestamp: float):
    import datetime as dt

    return dt.datetime.fromtimestamp(timestamp, tz=dt.UTC)
