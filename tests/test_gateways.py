"""Site gateways without processes: where a task is queued, the refusal of a task spanning two
gateways, the heartbeat and the one alarm per outage, the reaper's scope and the console page.
The real clusters (two gateways on the sshd testbed, one killed mid-rollout) are in
tests/test_gateways_live.py."""

from __future__ import annotations

import datetime as dt

import pytest
from django.utils import timezone
from django_q.models import OrmQ
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from audit.models import AuditEntry
from cmdb.models import Gateway, Server
from execution import gateways, reaper
from execution.models import Execution, ExecutionLease
from governance.models import Notification, OpsTask, Status
from governance.transitions import enqueue_execution
from tests.factories import ServerFactory, UserFactory, governance_world

pytestmark = pytest.mark.django_db


@pytest.fixture
def world():
    w = governance_world()
    w.gw_a, w.gw_b = Gateway.objects.create(name="A"), Gateway.objects.create(name="B")
    w.inst.gateway = w.gw_a
    w.inst.save(update_fields=["gateway"])
    return w


def api_as(user) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {Token.objects.get_or_create(user=user)[0].key}")
    return client


def restart_body(world, targets) -> dict:
    return {"sub_type": "SERVICE_RESTART", "title": "재시작", "system": world.system.code, "targets": targets}


def test_a_task_is_queued_on_its_institutions_gateway_or_its_servers_segment(
    world, settings, django_capture_on_commit_callbacks
):
    task = api_as(world.requester).post("/api/v1/tasks/", restart_body(world, ["was-1", "was-2"]), format="json")
    assert task.status_code == 201, task.content
    filed = OpsTask.objects.get(task_id=task.json()["task_id"])
    assert gateways.task_gateway(filed) == "A"
    with django_capture_on_commit_callbacks(execute=True):
        enqueue_execution(filed)  # queued after commit, on A's queue only
    assert list(OrmQ.objects.values_list("key", flat=True)) == [f"{settings.Q_CLUSTER['name']}-gw-A"]

    # A server on another network segment follows its own gateway; none at all is the central queue.
    world.servers[0].gateway = world.gw_b
    world.servers[0].save(update_fields=["gateway"])
    assert gateways.gateways_of([world.servers[0]]) == {"B"}
    world.inst.gateway = None
    world.inst.save(update_fields=["gateway"])
    assert gateways.gateways_of([world.servers[1]]) == {""}
    filed.targets.set(world.servers[1:])
    assert gateways.queue_for_task(filed) is None  # django-q2's default: the central cluster


def test_a_task_spanning_two_gateways_is_refused_at_filing_naming_targets(world):
    world.servers[1].gateway = world.gw_b
    world.servers[1].save(update_fields=["gateway"])
    requester = api_as(world.requester)
    before = AuditEntry.objects.count()
    response = requester.post("/api/v1/tasks/", restart_body(world, ["was-1", "was-2"]), format="json")
    assert response.status_code == 400
    assert response.json() == {
        "targets": ["대상 서버가 여러 게이트웨이에 걸쳐 있습니다 (A, B): 게이트웨이마다 따로 요청하세요"]
    }
    assert not OpsTask.objects.exists() and AuditEntry.objects.count() == before  # nothing filed
    # One task per gateway goes through.
    for target in ("was-1", "was-2"):
        ok = requester.post("/api/v1/tasks/", restart_body(world, [target]), format="json")
        assert ok.status_code == 201, ok.content


def test_central_and_gateway_servers_do_not_mix_either(world):
    central = ServerFactory(system=world.system, server_id="was-9")
    world.inst.gateway = None
    world.inst.save(update_fields=["gateway"])
    world.servers[0].gateway = world.gw_a
    world.servers[0].save(update_fields=["gateway"])
    response = api_as(world.requester).post(
        "/api/v1/tasks/", restart_body(world, ["was-1", central.server_id]), format="json"
    )
    assert response.status_code == 400
    assert "(중앙, A)" in response.json()["targets"][0]


def test_heartbeat_alarm_is_raised_once_per_outage_and_the_return_is_audited(world, settings):
    settings.GATEWAY_SILENT_SECONDS = 30
    admins = [UserFactory(username="gw-admin", role="admin")]
    t0 = timezone.now()
    assert gateways.beat("A", now=t0) and gateways.beat("B", now=t0)
    assert not gateways.beat("NOPE", now=t0)  # not in the CMDB: nothing written
    assert gateways.raise_silent_alarms(now=t0 + dt.timedelta(seconds=10)) == []

    later = t0 + dt.timedelta(seconds=40)
    gateways.beat("B", now=later)
    assert gateways.raise_silent_alarms(now=later) == ["A"]
    assert gateways.raise_silent_alarms(now=later + dt.timedelta(seconds=30)) == []  # same outage
    silent = AuditEntry.objects.filter(action="gateway.silent")
    assert list(silent.values_list("target", flat=True)) == ["A"]
    assert (
        Notification.objects.filter(user=admins[0], kind="alert", message__contains="게이트웨이 A 응답 없음").count()
        == 1
    )

    gateways.beat("A", now=later + dt.timedelta(seconds=31))
    assert AuditEntry.objects.filter(action="gateway.back", target="A").count() == 1
    assert Gateway.objects.get(name="A").silent_since is None
    # A second outage is a second alarm.
    assert gateways.raise_silent_alarms(now=later + dt.timedelta(seconds=100)) == ["A", "B"]
    assert silent.count() == 3


def test_one_sweep_per_interval_is_queued_on_the_gateways_own_queue(world, settings):
    settings.GATEWAY_SWEEP_SECONDS = 60
    t0 = timezone.now()
    assert gateways.queue_sweep_if_due("A", now=t0)
    assert not gateways.queue_sweep_if_due("A", now=t0 + dt.timedelta(seconds=5))  # another worker's beat
    assert gateways.queue_sweep_if_due("A", now=t0 + dt.timedelta(seconds=61))
    queued = OrmQ.objects.order_by("pk")
    assert list(queued.values_list("key", flat=True)) == [f"{settings.Q_CLUSTER['name']}-gw-A"] * 4
    assert [m.task["func"] for m in queued] == [
        "execution.tasks.reap_executions",
        "execution.tasks.run_inspections",
    ] * 2


def orphaned(world) -> OpsTask:
    """A task EXECUTING on gateway A whose worker died before reaching a server (no SSH needed)."""
    from governance import services

    task = services.submit_task(
        world.requester, system=world.system, sub_type="SERVICE_RESTART", title="재시작", targets=world.servers[:1]
    )
    OpsTask.objects.filter(pk=task.pk).update(status=Status.EXECUTING)
    long_ago = timezone.now() - dt.timedelta(minutes=5)
    ExecutionLease.objects.create(
        task=task, task_ref=task.task_id, holder="gw-a-host:1", acquired_at=long_ago, renewed_at=long_ago,
        expires_at=long_ago + dt.timedelta(seconds=60),
    )  # fmt: skip
    return task


def test_the_reaper_recovers_only_the_tasks_of_its_own_gateway(world, settings):
    task = orphaned(world)
    settings.GATEWAY = ""  # the central workers
    assert reaper.sweep() == []
    task.refresh_from_db()
    assert task.status == Status.EXECUTING and ExecutionLease.objects.filter(task=task, holder="gw-a-host:1").exists()
    settings.GATEWAY = "B"
    assert reaper.sweep() == []
    settings.GATEWAY = "A"  # gateway A, back
    results = reaper.sweep()
    assert [r["task"] for r in results] == [task.task_id]
    task.refresh_from_db()
    assert task.status == Status.FAILED_ROLLED_BACK


def test_an_execution_records_the_gateway_and_worker_that_ran_it(world, settings):
    settings.GATEWAY = "A"
    execution = Execution.objects.create(playbook="SERVICE_RESTART", playbook_version="1")
    assert execution.gateway == "A" and execution.worker.endswith(f":{__import__('os').getpid()}")


def test_the_console_shows_each_gateways_heartbeat_queue_and_running_tasks(world, client, settings):
    settings.GATEWAY_SILENT_SECONDS = 30
    gateways.beat("A", now=timezone.now() - dt.timedelta(seconds=5))
    gateways.beat("B", now=timezone.now() - dt.timedelta(seconds=90))
    task = orphaned(world)
    Execution.objects.create(task=task, task_ref=task.task_id, playbook="SERVICE_RESTART", playbook_version="1",
                             gateway="A")  # fmt: skip
    gateways.queue_sweep_if_due("B")  # the sweep and the inspections waiting on B's queue
    client.force_login(world.admin)
    page = client.get("/execution/gateways/").content.decode()
    row_a = page.split('data-gateway="A"')[1].split("</tr>")[0]
    row_b = page.split('data-gateway="B"')[1].split("</tr>")[0]
    assert "정상" in row_a and task.task_id in row_a and "초 전" in row_a
    assert "응답 없음" in row_b and '<td class="n gateway-depth">2</td>' in row_b
    # Running tasks are listed only for who may see them; the page itself needs cmdb.view_gateway.
    client.force_login(world.owner)
    assert client.get("/execution/gateways/").status_code == 403


def test_the_server_csv_import_assigns_a_gateway_by_name_and_names_an_unknown_one(world):
    from cmdb.csv_import import import_servers

    header = "server_id,system,hostname,ip,gateway\n"
    bad = import_servers(world.admin, header + "was-7,BUDGET,was-7.local,10.0.0.7,NOPE\n")
    assert [(e.row, e.field, e.message) for e in bad.errors] == [(2, "gateway", "unknown gateway 'NOPE'")]
    assert not Server.objects.filter(server_id="was-7").exists()
    good = import_servers(
        world.admin, header + "was-7,BUDGET,was-7.local,10.0.0.7,B\nwas-8,BUDGET,was-8.local,10.0.0.8,\n"
    )
    assert good.ok and good.created == 2
    assert gateways.gateways_of(Server.objects.filter(server_id__in=["was-7", "was-8"])) == {"A", "B"}


def test_inspections_run_on_the_gateway_of_their_institution(world, settings):
    from execution.inspections import run_due
    from execution.models import InspectionSchedule

    due = timezone.now() - dt.timedelta(minutes=1)
    schedule = InspectionSchedule.objects.create(
        name="A 메모리", system=world.system, kind="MEMORY_CHECK", thresholds={"max_used_percent": 90}, next_run_at=due
    )
    for elsewhere in ("", "B"):  # the central workers and gateway B neither run nor claim A's inspection
        settings.GATEWAY = elsewhere
        assert run_due() == 0
        schedule.refresh_from_db()
        assert schedule.next_run_at == due and schedule.last_run_at is None
    settings.GATEWAY = "A"
    assert list(InspectionSchedule.objects.filter(gateways.inspections_here())) == [schedule]


def test_a_malformed_gateway_name_stops_the_process_naming_the_variable(tmp_path):
    import os
    import subprocess
    import sys

    from tests.live import ROOT

    env = {**os.environ, "GUARDIA_GATEWAY": "A; rm -rf /", "GUARDIA_DATA_DIR": str(tmp_path)}
    done = subprocess.run(
        [sys.executable, "manage.py", "check"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120
    )
    assert done.returncode != 0 and "GUARDIA_GATEWAY" in done.stderr
