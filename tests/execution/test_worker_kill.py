"""Real workers killed mid-rollout, and real workers competing for the same servers.

Processes: the sshd testbed, `manage.py qcluster` (django-q2 ORM broker) sharing the
pytest-django transactional test database (a SQLite file), and the reaper's sweep run from
the test process exactly as `manage.py reap_executions` runs it. The servers' own command
logs (every command sshd received) prove there was no interleaving and no double application.
"""

from __future__ import annotations

import datetime as dt
import os
import random
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest
from django.conf import settings
from django.utils import timezone
from django_q.tasks import async_task
from rest_framework.test import APIClient

from audit.models import AuditEntry
from audit.verify import verify_chain
from cmdb.models import Institution
from execution import reaper
from execution.models import Execution, ExecutionLease, RunState, ServerLease, StepResult
from governance.models import OpsTask, Status
from testbed.register import register_testbed
from tests.execution.engine_helpers import (
    SETTLED,
    approved_task,
    commands_received,
    deploy_parameters,
    fast_port_wait,
    version_of,
)
from tests.factories import UserFactory
from tests.live import kill_group, qcluster

pytestmark = [pytest.mark.testbed, pytest.mark.django_db(transaction=True)]

ROOT = Path(__file__).resolve().parents[2]
# In the order they are recorded: the upload's row when its transfer is collected, after the
# pre-check and the backup it ran beside.
STEP_KINDS = "pre-check backup upload upload-verify shutdown swap startup port post-check http".split()
TRIALS = int(os.getenv("GUARDIA_KILL_TRIALS", "20"))


def worker_env(lease_seconds: int, workers: int = 2) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        {
            "GUARDIA_DATABASE_URL": f"sqlite:///{settings.DATABASES['default']['NAME']}",
            "GUARDIA_CHANNEL_LAYER": "memory",
            "GUARDIA_EXECUTION_LEASE_SECONDS": str(lease_seconds),
            "GUARDIA_Q_WORKERS": str(workers),
            "PYTHONUNBUFFERED": "1",
        }
    )
    return env


def wait_for(predicate, timeout: float, interval: float = 0.05, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


def step_recorded(task: OpsTask, server_id: str, name: str) -> bool:
    return StepResult.objects.filter(
        server_run__execution__task=task, server_run__server_ref=server_id, phase="forward", name=name
    ).exists()


def applied(log: str, pattern: str) -> int:
    return len(re.findall(pattern, log))


def assert_never_applied_twice(task: OpsTask, servers, logs_before: dict[str, int], testbed) -> None:
    """Per server, in the commands sshd received during this trial: the backup, the swap and the
    restore ran at most once each, and the WAS was started at most once per phase."""
    for srv in servers:
        log = commands_received(testbed, srv.server_id)[logs_before[srv.server_id] :]
        mine = "\n".join(line for line in log.splitlines() if f"/{srv.server_id}/" in line)
        backup = rf"cp -p \S*{srv.server_id}/app/app.war \S*/backup/{task.task_id}/app.war"
        restore = rf"cp -p \S*/backup/{task.task_id}/app.war \S*{srv.server_id}/app/app.war"
        assert applied(mine, backup) <= 1, mine
        assert applied(mine, r"mv -f \S*/deploy/app\.war\.\w+ \S*/app/app\.war") <= 1, mine
        assert applied(mine, restore) <= 1, mine
        assert applied(mine, r"scripts/startup\.sh") <= 2, mine  # forward, and the rollback's once


def assert_servers_match_task(task: OpsTask, servers, new_version: str) -> None:
    """Each server serves what the task's record says it has: the new version only where the run
    succeeded and the task reports success, the old one everywhere else."""
    runs = {r.server_ref: r for r in Execution.objects.filter(task=task).latest("started_at").server_runs.all()}
    for srv in servers:
        run = runs.get(srv.server_id)
        expected = new_version if task.status == Status.PENDING_PM_VALIDATION else "1.0.0"
        if run is not None and task.status == Status.PENDING_PM_VALIDATION:
            assert run.state == RunState.SUCCEEDED
        assert version_of(srv) == expected, (
            srv.server_id,
            run.state if run else None,
            task.status,
            task.reason if hasattr(task, "reason") else "",
        )


@pytest.fixture
def fleet(clean_testbed):
    servers = sorted(register_testbed(clean_testbed.manifest), key=lambda s: s.server_id)
    fast_port_wait(servers, 5)
    return servers


def kill_trial(trial: int, targets, testbed, env: dict, lease: int, log_path: Path, rng: random.Random):
    """One deploy, its worker SIGKILLed inside the step after ``kind`` on ``victim``, one sweep."""
    testbed.reset()
    new_version = f"2.0.{trial}"
    kind = STEP_KINDS[trial % len(STEP_KINDS)]
    victim = targets[trial % 2]  # the first server, or the second after the first succeeded
    task = approved_task(targets, "APP_DEPLOY", deploy_parameters(new_version, max_parallel=1))
    logs_before = {s.server_id: len(commands_received(testbed, s.server_id)) for s in targets}
    with qcluster(env, log_path, append=True, kill=True) as cluster:
        async_task("execution.tasks.run_task", task.pk, task_name=f"run-{task.task_id}")
        wait_for(lambda: step_recorded(task, victim.server_id, kind), 60, 0.01, f"{kind} on {victim.server_id}")
        time.sleep(rng.uniform(0, 0.25))  # somewhere inside the next step
        kill_group(cluster)
    killed_at = time.monotonic()
    task.refresh_from_db()
    last = StepResult.objects.filter(server_run__execution__task=task).order_by("-pk").first()
    if task.status == Status.EXECUTING:
        wait_for(
            lambda: not ExecutionLease.objects.filter(task=task, expires_at__gte=timezone.now()).exists(),
            lease + 2,
            what="the lease to expire",
        )
        results = reaper.sweep()  # one sweep
        assert [r["task"] for r in results] == [task.task_id]
    task.refresh_from_db()
    assert task.status in SETTLED, (trial, kind, task.status)
    assert time.monotonic() - killed_at <= lease + 60
    assert not ExecutionLease.objects.filter(task=task).exists()
    assert not ServerLease.objects.exists()
    assert_never_applied_twice(task, targets, logs_before, testbed)
    assert_servers_match_task(task, targets, new_version)
    return kind, f"{last.server_run.server_ref} {last.name}" if last else "", task.status


@pytest.mark.timeout(1200)  # twenty real deploys, kills and recoveries
def test_worker_sigkilled_at_every_step_kind_is_recovered_within_lease_plus_one_sweep(
    fleet, clean_testbed, tmp_path, settings
):
    lease = settings.EXECUTION_LEASE_SECONDS = 3
    env = worker_env(lease)
    rng = random.Random(19)
    outcomes = [
        kill_trial(n, fleet[:3], clean_testbed, env, lease, tmp_path / "qcluster.log", rng) for n in range(TRIALS)
    ]
    kinds_hit = {kind for kind, _last, status in outcomes if status != Status.PENDING_PM_VALIDATION}
    assert kinds_hit == set(STEP_KINDS[:TRIALS]), outcomes
    recovered = AuditEntry.objects.filter(action="execution.recovered")
    assert recovered.count() == sum(1 for _k, _l, s in outcomes if s != Status.PENDING_PM_VALIDATION)
    assert verify_chain().ok


def test_kill_switch_on_a_task_whose_worker_is_gone_ends_it_within_one_sweep(fleet, clean_testbed, tmp_path, settings):
    lease = settings.EXECUTION_LEASE_SECONDS = 30  # long: the stop must not wait for the lease to run out
    env = worker_env(lease)
    targets = fleet[:2]
    task = approved_task(targets, "APP_DEPLOY", deploy_parameters("3.0.0", max_parallel=1))
    pm = UserFactory(username="kill-pm", role="pm")
    Institution.objects.filter(pk=task.system.institution_id).update(pm=pm)
    with qcluster(env, tmp_path / "qcluster.log", kill=True) as cluster:
        async_task("execution.tasks.run_task", task.pk, task_name=f"run-{task.task_id}")
        # Killed while the first server's restart is under way: its steps are committed a drain
        # after they end, and the restart's three steps go as one chain, so the verified upload is
        # the last row that shows the first server still before its end.
        wait_for(lambda: step_recorded(task, targets[0].server_id, "upload-verify"), 60, 0.01, "upload-verify")
        kill_group(cluster)
    api = APIClient()
    api.force_authenticate(pm)
    response = api.post(f"/api/v1/tasks/{task.task_id}/stop/", {"reason": "작업자 유실 — 정지"}, format="json")
    assert response.status_code == 200, response.content
    task.refresh_from_db()
    assert task.status == Status.EXECUTING and task.stop_requested
    beat = lease / 6
    wait_for(
        lambda: ExecutionLease.objects.filter(
            task=task, renewed_at__lt=timezone.now() - dt.timedelta(seconds=2.5 * beat)
        ).exists(),
        3 * beat + 2,
        what="two missed heartbeats",
    )
    assert ExecutionLease.objects.get(task=task).expires_at > timezone.now()  # the lease itself has not run out
    results = reaper.sweep()
    task.refresh_from_db()
    assert [r["task"] for r in results] == [task.task_id]
    assert task.status == Status.ABORTED
    for srv in targets:
        assert version_of(srv) == "1.0.0"  # the first was restored; the second never touched
    runs = {r.server_ref: r.state for r in Execution.objects.get(task=task).server_runs.all()}
    assert runs == {targets[0].server_id: RunState.ROLLED_BACK, targets[1].server_id: RunState.ABORTED}
    lost = AuditEntry.objects.get(action="execution.worker_lost", task=task.task_id)
    assert lost.payload["stop_requested"] is True
    assert AuditEntry.objects.filter(
        action="execution.recovered", task=task.task_id, payload__outcome="ABORTED"
    ).exists()
    assert verify_chain().ok


def test_ten_changes_for_the_same_servers_run_one_at_a_time_in_approval_order(fleet, clean_testbed, tmp_path):
    targets = fleet[:2]
    env = worker_env(30, workers=4)
    tasks = [
        approved_task(targets, "SERVICE_RESTART", {"rollout": {"canary_share": 0, "max_parallel": 2}})
        for _ in range(10)
    ]
    now = timezone.now()
    for n, task in enumerate(tasks):  # approved within a quarter of a second of each other
        OpsTask.objects.filter(pk=task.pk).update(approved_at=now + dt.timedelta(milliseconds=25 * n))
    logs_before = {s.server_id: len(commands_received(clean_testbed, s.server_id)) for s in targets}
    with qcluster(env, tmp_path / "qcluster.log", kill=True):
        for task in tasks:
            async_task("execution.tasks.run_task", task.pk, task_name=f"run-{task.task_id}")
        wait_for(
            lambda: OpsTask.objects.filter(pk__in=[t.pk for t in tasks], status__in=SETTLED).count() == 10,
            240,
            0.2,
            "all ten tasks to end",
        )
        # The last worker gives its claim back just after governance heard the end: wait for it
        # before the cluster is killed on the way out.
        wait_for(lambda: not ServerLease.objects.exists(), 30, 0.1, "the last claim to be given back")
    statuses = dict(OpsTask.objects.filter(pk__in=[t.pk for t in tasks]).values_list("task_id", "status"))
    assert set(statuses.values()) == {Status.PENDING_PM_VALIDATION}, statuses
    for srv in targets:
        log = commands_received(clean_testbed, srv.server_id)[logs_before[srv.server_id] :]
        scripts = re.findall(rf"{srv.server_id}/scripts/(shutdown|startup)\.sh", log)
        # No interleaving: every shutdown is followed by its own startup before the next shutdown.
        assert scripts == ["shutdown", "startup"] * 10, scripts
    # The journal agrees: on each server, no two tasks' steps overlap in time.
    for srv in targets:
        spans = []
        for execution in Execution.objects.filter(task__in=tasks):
            steps = StepResult.objects.filter(server_run__execution=execution, server_run__server_ref=srv.server_id)
            first, last = steps.order_by("started_at").first(), steps.order_by("-started_at").first()
            spans.append((first.started_at, last.started_at + dt.timedelta(milliseconds=last.duration_ms)))
        spans.sort()
        for (_s1, end), (start, _e2) in zip(spans, spans[1:], strict=False):
            assert end <= start
    waits = AuditEntry.objects.filter(action="execution.waiting")
    assert waits.exists()
    for entry in waits:
        assert re.fullmatch(r"대기: srv-0[12] (사용 중|선행 작업 대기 중) \(OPS-TEST-\d+\)", entry.payload["text"])
    waited = {e.task for e in waits}
    starts = {e.task.task_id: e.started_at for e in Execution.objects.filter(task__in=tasks).select_related("task")}
    order = [t.task_id for t in tasks if t.task_id in waited]
    assert order == sorted(order, key=lambda ref: starts[ref]), "waiters start in approval order"
    assert not ServerLease.objects.exists()
    assert verify_chain().ok


def test_a_worker_whose_claim_was_taken_over_stops_at_once(tmp_path):
    """A worker that stalled past its lease (the reaper took the task over) must not touch a
    server again: its heartbeat finds the claim gone and ends the process."""
    from execution.leases import LOST_CLAIM_EXIT
    from tests.factories import ServerFactory

    task = approved_task([ServerFactory(server_id="srv-fence")], "SERVICE_RESTART")
    code = (
        "import os, time, django; django.setup(); from execution import leases; "
        f"print(leases.run_leased({task.pk}, lambda pk: time.sleep(30) or 'RAN TO THE END'))"
    )
    env = worker_env(3) | {"DJANGO_SETTINGS_MODULE": "guardia.settings"}
    proc = subprocess.Popen(
        [sys.executable, "-c", code],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        wait_for(lambda: ExecutionLease.objects.filter(task=task).exists(), 30, what="the worker's claim")
        ExecutionLease.objects.filter(task=task).update(holder="reaper:elsewhere")
        taken = time.monotonic()
        returncode = proc.wait(10)
        output = proc.stdout.read().decode()
    finally:
        kill_group(proc)
    assert returncode == LOST_CLAIM_EXIT, output
    assert time.monotonic() - taken < 3  # within a heartbeat or two (0.5 s each)
    assert "RAN TO THE END" not in output
    assert ExecutionLease.objects.get(task=task).holder == "reaper:elsewhere"  # the new holder's claim is intact


@pytest.mark.timeout(600)
def test_restarted_cluster_recovers_the_task_by_its_own_schedule(fleet, clean_testbed, tmp_path, settings):
    """The operator's story: the cluster is killed mid-rollout and started again; without anyone
    running a command, the reaper's schedule ends the task within the lease plus one sweep."""
    lease = settings.EXECUTION_LEASE_SECONDS = 3
    env = worker_env(lease)
    targets = fleet[:2]
    task = approved_task(targets, "APP_DEPLOY", deploy_parameters("4.0.0", max_parallel=1))
    reaper.ensure_schedule()
    with qcluster(env, tmp_path / "qcluster.log", kill=True) as cluster:
        async_task("execution.tasks.run_task", task.pk, task_name=f"run-{task.task_id}")
        wait_for(lambda: step_recorded(task, targets[0].server_id, "startup"), 60, 0.01, "startup on the first")
        kill_group(cluster)
    killed = time.monotonic()
    task.refresh_from_db()
    assert task.status == Status.EXECUTING
    with qcluster(env, tmp_path / "qcluster-restarted.log", kill=True):
        wait_for(
            lambda: AuditEntry.objects.filter(action="execution.recovered", task=task.task_id).exists(),
            lease + 90,
            0.5,
            "the scheduled sweep to end the task",
        )
    took = time.monotonic() - killed
    task.refresh_from_db()
    assert task.status == Status.FAILED_ROLLED_BACK
    assert took <= lease + 60 + 30  # the lease, one sweep interval, and the rollback itself
    assert [version_of(s) for s in targets] == ["1.0.0", "1.0.0"]
    assert AuditEntry.objects.filter(action="execution.recovered", task=task.task_id).count() == 1
