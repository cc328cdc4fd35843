"""Two site gateways as real clusters: `GUARDIA_GATEWAY=A manage.py qcluster` and `...=B`, on the
django-q2 ORM broker sharing the transactional test database (a SQLite file), against the sshd
testbed. Institution A's servers are srv-01..05, institution B's srv-06..10.

- Routing: with only gateway A running, A's task runs (its execution says gateway A and a worker
  of A's process group) and only A's servers receive commands; B's task waits on B's queue
  until gateway B starts.
- Gateway A SIGKILLed mid-rollout: B's heartbeat thread raises one alarm, the console shows A
  silent, the central reaper leaves A's task alone (it cannot reach A's servers); once A is
  back, A's own sweep recovers the task to a definite state and the return is audited.
"""

from __future__ import annotations

import os
import time

import pytest
from django.conf import settings as django_settings
from django.utils import timezone
from django_q.models import OrmQ
from django_q.models import Task as QTask

from audit.models import AuditEntry
from audit.verify import verify_chain
from cmdb.models import Gateway, HealthCriteria, Institution, Server, System
from execution import gateways, reaper
from execution.models import Execution, ExecutionLease, StepResult
from governance.models import OpsTask, Status
from governance.transitions import enqueue_execution
from testbed.register import register_testbed
from tests.execution.engine_helpers import (
    SETTLED,
    approved_task,
    commands_received,
    deploy_parameters,
    fast_port_wait,
)
from tests.execution.test_worker_kill import assert_never_applied_twice, assert_servers_match_task
from tests.factories import UserFactory
from tests.live import kill_group, qcluster
from tests.waiting import wait_until

# The clusters are SIGKILLed on the way out once their work is done and stored: a SIGTERM to the
# group takes django-q2 20 s to honour.
pytestmark = [pytest.mark.testbed, pytest.mark.slow, pytest.mark.django_db(transaction=True)]

LEASE, SILENT = 4, 3


def gateway_env(name: str) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        {
            "GUARDIA_DATABASE_URL": f"sqlite:///{django_settings.DATABASES['default']['NAME']}",
            "GUARDIA_CHANNEL_LAYER": "memory",
            "GUARDIA_GATEWAY": name,
            "GUARDIA_Q_WORKERS": "1",
            "GUARDIA_EXECUTION_LEASE_SECONDS": str(LEASE),
            "GUARDIA_GATEWAY_HEARTBEAT_SECONDS": "1",
            "GUARDIA_GATEWAY_SILENT_SECONDS": str(SILENT),
            "GUARDIA_GATEWAY_SWEEP_SECONDS": "2",
            "PYTHONUNBUFFERED": "1",
        }
    )
    return env


@pytest.fixture
def sites(clean_testbed):
    """Gateways A and B; institution A (the testbed's) on A with srv-01..05, institution B on B
    with srv-06..10."""
    servers = sorted(register_testbed(clean_testbed.manifest), key=lambda s: s.server_id)
    gw_a, gw_b = Gateway.objects.create(name="A"), Gateway.objects.create(name="B")
    inst_a = servers[0].system.institution
    Institution.objects.filter(pk=inst_a.pk).update(gateway=gw_a)
    inst_b = Institution.objects.create(code="SITE-B", name="B 기관", gateway=gw_b)
    system_b = System.objects.create(code="SITE-B-WAS", name="B WAS", institution=inst_b)
    HealthCriteria.objects.create(system=system_b)
    Server.objects.filter(pk__in=[s.pk for s in servers[5:]]).update(system=system_b)
    a, b = servers[:5], list(Server.objects.filter(pk__in=[s.pk for s in servers[5:]]).order_by("server_id"))
    fast_port_wait(a, 5)
    fast_port_wait(b, 5)
    return a, b


def received(testbed, servers) -> dict[str, int]:
    return {s.server_id: len(commands_received(testbed, s.server_id).splitlines()) for s in servers}


def in_group(worker: str, cluster) -> bool:
    """Whether the worker (host:pid) that wrote a row is a process of this cluster's group."""
    try:
        return os.getpgid(int(worker.rsplit(":", 1)[1])) == cluster.pid
    except ProcessLookupError:
        return False


def ran_on(task: OpsTask) -> str:
    """The queue of the django-q2 task that ran it, once the cluster's monitor has stored it."""
    done = QTask.objects.filter(func="execution.tasks.run_task", name=f"run-{task.task_id}", success=True)
    return wait_until(lambda: done.values_list("cluster", flat=True).first(), 20, message="the stored result")


def settled(task: OpsTask):
    task.refresh_from_db()
    return task.status if task.status not in (Status.APPROVED, Status.EXECUTING) else None


def test_tasks_run_only_on_their_institutions_gateway(sites, clean_testbed, tmp_path):
    a, b = sites
    task_a = approved_task(a[:2], "SERVICE_RESTART")
    task_b = approved_task(b[:1], "SERVICE_RESTART")
    before = received(clean_testbed, a + b)
    with qcluster(gateway_env("A"), tmp_path / "gw-a.log", kill=True) as cluster_a:
        enqueue_execution(task_a)  # governance's own call: the queue is chosen by EXECUTION_QUEUE
        enqueue_execution(task_b)
        assert wait_until(lambda: settled(task_a), 60, message="A's task to finish") == Status.PENDING_PM_VALIDATION
        run_a = Execution.objects.get(task=task_a)
        assert run_a.gateway == "A" and in_group(run_a.worker, cluster_a)
        assert ran_on(task_a) == gateways.queue_name("A")
        # B's task was never taken by A: still approved, its message waiting on B's queue.
        task_b.refresh_from_db()
        assert task_b.status == Status.APPROVED and not Execution.objects.filter(task=task_b).exists()
        assert OrmQ.objects.filter(key=gateways.queue_name("B")).count() == 1
        during_a = received(clean_testbed, a + b)
    assert all(during_a[s.server_id] > before[s.server_id] for s in a[:2])  # A's servers were restarted
    assert all(during_a[s.server_id] == before[s.server_id] for s in b)  # no command reached B's servers

    with qcluster(gateway_env("B"), tmp_path / "gw-b.log", kill=True) as cluster_b:
        assert wait_until(lambda: settled(task_b), 60, message="B's task to finish") == Status.PENDING_PM_VALIDATION
        run_b = Execution.objects.get(task=task_b)
        assert run_b.gateway == "B" and in_group(run_b.worker, cluster_b)
        assert ran_on(task_b) == gateways.queue_name("B")
    after = received(clean_testbed, a + b)
    assert after[b[0].server_id] > during_a[b[0].server_id]
    assert all(after[s.server_id] == during_a[s.server_id] for s in a)  # B touched none of A's


def console_row(client, name: str) -> str:
    page = client.get("/execution/gateways/").content.decode()
    return page.split(f'data-gateway="{name}"')[1].split("</tr>")[0]


def test_gateway_killed_mid_rollout_shows_missing_and_recovers_its_task_once_back(
    sites, clean_testbed, tmp_path, client, settings
):
    settings.GATEWAY_SILENT_SECONDS = SILENT  # this process renders the console
    settings.EXECUTION_LEASE_SECONDS = LEASE
    a, _b = sites
    admin = UserFactory(username="gw-admin", role="admin")
    client.force_login(admin)
    targets = a[:2]
    task = approved_task(targets, "APP_DEPLOY", deploy_parameters("2.5.0", max_parallel=1))
    logs_before = {s.server_id: len(commands_received(clean_testbed, s.server_id)) for s in targets}
    log_a = tmp_path / "gw-a.log"
    with qcluster(gateway_env("B"), tmp_path / "gw-b.log", kill=True):
        with qcluster(gateway_env("A"), log_a, kill=True) as cluster_a:
            wait_until(lambda: Gateway.objects.filter(name="A", heartbeat_at__isnull=False).exists(), 30)
            assert "정상" in console_row(client, "A")
            enqueue_execution(task)
            wait_until(
                lambda: StepResult.objects.filter(
                    server_run__execution__task=task, server_run__server_ref=targets[0].server_id, name="startup"
                ).exists(),
                60,
                0.01,
                message="the first server's startup",
            )
            kill_group(cluster_a)  # the gateway host dies mid-rollout

        # Missing on the console; one alarm, raised by gateway B's watcher.
        wait_until(lambda: "응답 없음" in console_row(client, "A"), SILENT + 10, message="A shown silent")
        silent = AuditEntry.objects.filter(action="gateway.silent", target="A")
        wait_until(silent.exists, 15, message="the alarm")
        # The central workers' sweep leaves A's task alone, even once its lease ran out.
        wait_until(
            lambda: not ExecutionLease.objects.filter(task=task, expires_at__gte=timezone.now()).exists(),
            LEASE + 5,
            message="the lease to expire",
        )
        assert reaper.sweep() == []
        task.refresh_from_db()
        assert task.status == Status.EXECUTING

        # Gateway A is back: its own sweep recovers the task.
        with qcluster(gateway_env("A"), log_a, append=True, kill=True) as back:
            back_at = time.monotonic()
            status = wait_until(lambda: settled(task), LEASE + 40, message="A's task to reach a definite state")
            # Within the lease plus one sweep interval (2 s) of A's return, plus the rollback itself
            # and the cluster's start-up on a loaded machine.
            assert time.monotonic() - back_at <= LEASE + 2 + 30
            wait_until(lambda: "정상" in console_row(client, "A"), 10, message="A shown back")
            sweep_ran = QTask.objects.filter(func="execution.tasks.reap_executions", cluster=gateways.queue_name("A"))
            wait_until(sweep_ran.filter(result=1).exists, 20, message="A's own sweep's stored result")
            assert back.poll() is None
    assert status in SETTLED and status != Status.PENDING_PM_VALIDATION, status
    assert silent.count() == 1  # once per outage
    assert AuditEntry.objects.filter(action="gateway.back", target="A").count() == 1
    assert AuditEntry.objects.filter(action="execution.recovered", task=task.task_id).count() == 1
    # As for any lost worker: no step applied twice, every server serves what the task reports,
    # and the chain verifies.
    assert_never_applied_twice(task, targets, logs_before, clean_testbed)
    assert_servers_match_task(task, targets, "2.5.0")
    assert verify_chain().ok
