"""What a worker that died mid-run leaves behind, written as the worker writes it: its claim
(now expired), the task it started, an execution with its server runs (the reaper tests)."""

from __future__ import annotations

import datetime as dt

from django.utils import timezone

from execution import leases, reaper
from execution.models import Execution, ExecutionLease, RunState, ServerRun
from governance import control
from governance.models import OpsTask
from tests.execution.engine_helpers import approved_task, commands_received


def started_with_claim(task: OpsTask, servers, *, holder: str = "dead-host:4242", age: float = 120) -> ExecutionLease:
    """What a worker leaves when it dies: the claim it took (now expired) and a task it started."""
    assert leases.acquire(task, servers, holder) is None
    assert control.execution_started(task.pk) is not None
    past = timezone.now() - dt.timedelta(seconds=age)
    ExecutionLease.objects.filter(task=task).update(
        acquired_at=past, renewed_at=past, expires_at=past + dt.timedelta(seconds=60)
    )
    return ExecutionLease.objects.get(task=task)


def running_execution(task: OpsTask, servers, in_flight) -> Execution:
    execution = Execution.objects.create(
        task=task,
        task_ref=task.task_id,
        playbook=task.playbook,
        playbook_version=task.playbook_version,
        started_at=timezone.now() - dt.timedelta(seconds=100),
    )
    for srv in servers:
        ServerRun.objects.create(
            execution=execution,
            server=srv,
            server_ref=srv.server_id,
            playbook_version=task.playbook_version,
            state=RunState.RUNNING if srv in in_flight else RunState.PENDING,
        )
    return execution


def left_running(task: OpsTask, servers, in_flight) -> Execution:
    """A claimed, started task whose worker died with ``in_flight`` servers taken."""
    started_with_claim(task, servers)
    return running_execution(task, servers, in_flight)


def swept_in_flight(testbed, srv, sub_type: str, parameters: dict) -> tuple[OpsTask, ServerRun, str]:
    """A one-server task whose worker died with ``srv`` taken, after one reaper sweep: the task
    (read again), its server run, and the commands the server received during the sweep."""
    task = approved_task([srv], sub_type, parameters)
    execution = left_running(task, [srv], in_flight=[srv])
    before = len(commands_received(testbed, srv.server_id))
    reaper.sweep()
    task.refresh_from_db()
    return task, ServerRun.objects.get(execution=execution), commands_received(testbed, srv.server_id)[before:]
