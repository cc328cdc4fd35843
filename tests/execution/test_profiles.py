"""Site profiles on the real sshd testbed: the runtime scan, its comparison with the CMDB's
environment schema, the plan's notes, the stop before any change, and the drift report."""

from __future__ import annotations

import io

import pytest
from django.core.management import call_command
from django.urls import reverse

from audit.models import AuditEntry
from cmdb.models import EnvScan, EnvSchema
from cmdb.profiles import SCANNED_FIELDS
from execution import profiles
from execution.models import Execution, ServerRun, StepResult
from execution.services import run_task
from governance import plans
from tests.factories import UserFactory

from .engine_helpers import approved_task, deploy_parameters, fast_port_wait, version_of

pytestmark = [pytest.mark.testbed, pytest.mark.django_db(transaction=True)]


def schema_from_scan(server, **overrides) -> EnvSchema:
    facts = EnvScan.objects.get(server=server).facts
    return EnvSchema.objects.create(server=server, **{**{f: facts[f] for f in SCANNED_FIELDS}, **overrides})


def test_scan_is_stored_and_matches_a_schema_built_from_it(testbed_cmdb):
    servers = testbed_cmdb[:3]
    out = io.StringIO()
    call_command("scan_servers", "TESTBED-WAS", stdout=out)
    assert f"scanned {len(testbed_cmdb)} server(s) of TESTBED-WAS: 0 could not be scanned" in out.getvalue()
    for server in servers:
        scan = EnvScan.objects.get(server=server)
        assert scan.error == "" and scan.scanned_at is not None
        facts = scan.facts
        assert facts["os_type"] == "linux" and facts["kernel"]
        assert facts["init_system"] in {"systemd", "sysv", "was"}
        # Found at the expected paths: the WAS home (server root), its own start/stop scripts.
        assert facts["was_home"] == server.app_path.rsplit("/", 1)[0]
        assert facts["start_script"].endswith("/scripts/startup.sh")
        assert facts["stop_script"].endswith("/scripts/shutdown.sh")
        assert int(facts["free_disk_mb"]) > 0 and facts["sudo"] in {"yes", "no"}
        assert profiles.compare(schema_from_scan(server), facts) == []
    assert AuditEntry.objects.filter(action="execution.env_scan", target="TESTBED-WAS").exists()
    # Matching schemas: no notes in the plan, the scan is its first step on each server.
    plan = plans.render_plan("SERVICE_RESTART", {}, servers[0].system, servers)
    assert not [w for w in plan["warnings"] if w.startswith("환경 차이")]
    assert all(s["steps"][0]["name"] == "env-scan" for s in plan["step_sets"])


def test_disagreeing_schema_shows_in_the_plan_and_the_drift_report(testbed_cmdb, client):
    server, other = testbed_cmdb[0], testbed_cmdb[1]
    profiles.scan_servers("TESTBED-WAS")
    schema_from_scan(server, middleware="jeus", jdk_version="1.8.0_202")
    schema_from_scan(other)
    plan = plans.render_plan("SERVICE_RESTART", {}, server.system, [server, other])
    notes = [w for w in plan["warnings"] if w.startswith("환경 차이")]
    assert len(notes) == 1 and server.server_id in notes[0] and "실행 시 중지" in notes[0]
    assert "미들웨어: CMDB jeus" in notes[0] and "JDK 버전: CMDB 1.8.0_202, 스캔 없음" in notes[0]

    client.force_login(UserFactory(username="cmdb-admin", role="admin"))
    page = client.get(reverse("execution:drift")).content.decode()
    assert server.server_id in page and "jeus" in page and other.server_id not in page


def test_disallowed_drift_stops_that_server_before_any_change_while_others_continue(testbed_cmdb, testbed):
    servers = testbed_cmdb[:3]
    fast_port_wait(servers)
    profiles.scan_servers("TESTBED-WAS")
    drifted = servers[1]
    schema_from_scan(drifted, was_home="/opt/jeus", middleware="jeus")
    for server in (servers[0], servers[2]):
        schema_from_scan(server)
    task = approved_task(servers, parameters=deploy_parameters("2.0.0", failures_allowed=1, max_parallel=3))
    assert "환경 차이" in " ".join(task.plan["warnings"])

    run_task(task.pk)

    execution = Execution.objects.get(task=task)
    run = ServerRun.objects.get(execution=execution, server_ref=drifted.server_id)
    # Refused before any change; a tolerated failure is then "rolled back" (nothing to undo).
    assert run.state in {"REFUSED", "ROLLED_BACK"}, run.state
    assert "환경 스키마와 달라 변경 전에 중지" in run.message and "WAS 홈: CMDB /opt/jeus" in run.message
    # The scan is the only forward step the drifted server ran; its version is untouched.
    forward = StepResult.objects.filter(server_run=run, phase="forward").values_list("name", flat=True)
    assert list(forward) == ["env-scan"]
    assert version_of(drifted) == "1.0.0"
    for server in (servers[0], servers[2]):
        ok = ServerRun.objects.get(execution=execution, server_ref=server.server_id)
        assert ok.state == "SUCCEEDED", ok.message
        names = list(StepResult.objects.filter(server_run=ok).order_by("seq").values_list("name", flat=True))
        assert names[0] == "env-scan" and len(names) > 3
        assert version_of(server) == "2.0.0"


def test_accepting_the_scan_is_audited_and_refused_to_other_roles(testbed_cmdb, client):
    server = testbed_cmdb[0]
    profiles.scan_servers("TESTBED-WAS")
    schema = schema_from_scan(server, middleware="jeus", kernel="2.6.32")
    url = reverse("execution:drift-accept", args=[schema.pk])
    for role in ("site_manager", "team_lead", "supervisor", "security_officer"):
        client.force_login(UserFactory(role=role))
        assert client.post(url).status_code in (403, 404), role
        schema.refresh_from_db()
        assert schema.middleware == "jeus" and schema.kernel == "2.6.32"
    assert not AuditEntry.objects.filter(action="cmdb.env_scan_accepted").exists()

    admin = UserFactory(username="cmdb-admin", role="admin")
    client.force_login(admin)
    response = client.post(url)
    assert response.status_code == 302
    schema.refresh_from_db()
    facts = EnvScan.objects.get(server=server).facts
    assert schema.middleware == facts["middleware"] and schema.kernel == facts["kernel"]
    entry = AuditEntry.objects.get(action="cmdb.env_scan_accepted", target=server.server_id)
    assert entry.actor == admin.username
    assert set(entry.payload["changed"]) == {"middleware", "kernel"}
    assert f'data-server="{server.server_id}"' not in client.get(reverse("execution:drift")).content.decode()


def test_a_read_only_run_on_a_drifted_server_is_scanned_but_not_stopped(testbed_cmdb):
    server = testbed_cmdb[0]
    profiles.scan_servers("TESTBED-WAS")
    schema_from_scan(server, middleware="jeus")
    task = approved_task([server], sub_type="MEMORY_CHECK")

    run_task(task.pk)

    run = ServerRun.objects.get(execution__task=task, server_ref=server.server_id)
    assert run.state == "SUCCEEDED", run.message
    names = list(StepResult.objects.filter(server_run=run).order_by("seq").values_list("name", flat=True))
    assert names[0] == "env-scan" and len(names) > 1
