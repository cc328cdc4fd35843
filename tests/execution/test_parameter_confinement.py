"""Request parameters cannot leave their scope.

Paths are confined under each target server's CMDB roots after normalisation, health checks
come from the CMDB (a request may only tighten thresholds), the drain flag stays below the
app_path, and the health client fetches http(s) from the server's own address only. Each
attack is made through the public interface (REST with a site manager's token) and refused
with a 400 naming the field, nothing filed; the file-read and file-deletion attacks are
also written straight into the database after filing and run against the real sshd testbed:
execution refuses and the victim file is untouched.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest
from django.conf import settings
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from audit.models import AuditEntry
from cmdb.models import HealthCriteria, Server, SystemOwner
from execution import healthcheck, playbooks
from execution.engine import Engine
from execution.errors import ParameterError
from execution.models import Execution, ServerRun, StepResult
from execution.plan import render_plan
from execution.rolling import RolloutStrategy
from execution.services import ArtifactStore, run_task, validate_parameters
from governance.models import Notification, OpsTask
from tests.factories import ServerFactory, UserFactory, governance_world

from .engine_helpers import approved_task, commands_received, deploy_parameters, fast_port_wait, version_of

URL = "/api/v1/tasks/"
VAULT_KEY = f"file://{settings.VAULT_KEY_FILE or '/var/keys/vault.key'}"


# --- filing-time rules, no server ------------------------------------------------------------
@pytest.mark.parametrize(
    ("sub_type", "parameters", "field"),
    [
        ("LOG_CLEANUP", {"directory": "//etc"}, "directory"),
        ("LOG_CLEANUP", {"directory": "/opt/was/logs/../../../etc"}, "directory"),
        ("LOG_CLEANUP", {"directory": "/"}, "directory"),
        ("LOG_MINING", {"log_path": "/opt/was/logs/x\n/etc/shadow"}, "log_path"),
        ("LOG_MINING", {"log_path": "/opt/was/logs/x\x00"}, "log_path"),
        (
            "SSL_REPLACE",
            {
                "cert_sha256": "a" * 64,
                "key_sha256": "b" * 64,
                "cert_path": "conf/startup.sh",
                "key_path": "conf/site.key",
                "https_port": 8443,
            },
            "cert_path",
        ),
        ("MEMORY_CHECK", {"health": {"url": VAULT_KEY}}, "health.url"),
        ("MEMORY_CHECK", {"health": {"host": "169.254.169.254"}}, "health.host"),
        ("MEMORY_CHECK", {"health": {"max_latency_ms": "slow"}}, "health.max_latency_ms"),
        ("MEMORY_CHECK", {"rollout": {"drain_flag": "/tmp/victim"}}, "rollout.drain_flag"),
        ("MEMORY_CHECK", {"rollout": {"drain_flag": "../../etc/x.flag"}}, "rollout.drain_flag"),
        ("MEMORY_CHECK", {"rollout": {"surprise": 1}}, "rollout.surprise"),
    ],
)
def test_validator_refuses_naming_the_field(sub_type, parameters, field):
    with pytest.raises(ParameterError) as info:
        validate_parameters(sub_type, parameters)
    assert field in info.value.errors, info.value.errors
    assert all(any("\uac00" <= ch <= "\ud7a3" for ch in m) for m in info.value.errors.values())  # in Korean


def test_relative_and_repeated_slash_paths_are_judged_after_normalisation(db):
    server = ServerFactory()  # roots under /opt/was
    book = playbooks.build("LOG_MINING", {"log_path": "/opt/was/logs//gc.log"})
    assert book.params["log_path"] == "/opt/was/logs/gc.log"
    ok = render_plan("LOG_MINING", {"log_path": "archive/old.log"}, server.system, [server])
    assert "/opt/was/logs/archive/old.log" in ok["step_sets"][0]["steps"][0]["command"]
    for outside in ("/etc//shadow", "/opt/was/logsX/a.log", "/opt/was/logs", "/opt/was/app/WEB-INF/web.xml"):
        with pytest.raises(ParameterError) as info:
            render_plan("LOG_MINING", {"log_path": outside}, server.system, [server])
        assert server.server_id in info.value.errors["log_path"]


def test_confinement_is_per_server(db):
    inside = ServerFactory()
    elsewhere = ServerFactory(system=inside.system, log_path="/data/logs/catalina.out")
    parameters = {"log_path": "/opt/was/logs/gc.log"}
    render_plan("LOG_MINING", parameters, inside.system, [inside])
    with pytest.raises(ParameterError) as info:
        render_plan("LOG_MINING", parameters, inside.system, [inside, elsewhere])
    assert elsewhere.server_id in info.value.errors["log_path"]


def test_health_may_only_be_tightened(db):
    server = ServerFactory(health_url="http://10.0.0.9:8080/health", ip="10.0.0.9")
    HealthCriteria.objects.create(system=server.system, max_latency_ms=2000, port_wait_seconds=30)
    plan = render_plan(
        "SERVICE_RESTART", {"health": {"max_latency_ms": 800, "port_wait_seconds": 10}}, server.system, [server]
    )
    checks = {c["kind"]: c for c in plan["step_sets"][0]["health"]}
    assert checks["http"]["max_latency_ms"] == 800 and checks["port"]["wait_seconds"] == 10
    with pytest.raises(ParameterError) as info:
        render_plan("SERVICE_RESTART", {"health": {"max_latency_ms": 60000}}, server.system, [server])
    assert "2000" in info.value.errors["health.max_latency_ms"]
    # The engine applies the same rule to whatever it is given: looser values and URLs are ignored.
    health = healthcheck.Health.for_server(
        server, server.system.health, {"max_latency_ms": 60000, "url": VAULT_KEY, "host": "127.0.0.1"}
    )
    assert (health.max_latency_ms, health.url, health.host) == (2000, "http://10.0.0.9:8080/health", "10.0.0.9")


def test_drain_flag_stays_below_the_app_path(db):
    server = ServerFactory()
    plan = render_plan(
        "APP_DEPLOY", {"artifact_sha256": "a" * 64, "rollout": {"drain_flag": "maint/lb.flag"}}, server.system, [server]
    )
    assert plan["step_sets"][0]["steps"][0]["command"] == "touch /opt/was/app/maint/lb.flag"
    for flag in ("/tmp/victim.flag", "/opt/was/bin/x.flag"):
        RolloutStrategy.from_parameters({"drain_flag": flag})  # plain syntax passes...
        with pytest.raises(ParameterError) as info:  # ...the server's roots do not
            render_plan("MEMORY_CHECK", {"rollout": {"drain_flag": flag}}, server.system, [server])
        assert "rollout.drain_flag" in info.value.errors


# --- the HTTP client -------------------------------------------------------------------------
def test_health_client_fetches_only_http_from_the_servers_own_host(db, tmp_path):
    secret = tmp_path / "vault.key"
    secret.write_text("TOP-SECRET-KEY")
    server = ServerFactory(ip="10.0.0.7", hostname="was-7.local")
    for url in (
        f"file://{secret}",
        "ftp://10.0.0.7/x",
        "http://127.0.0.1:8000/",
        "http://169.254.169.254/",
        "http://user:pw@10.0.0.7/",
        "gopher://10.0.0.7/",
    ):
        with pytest.raises(ConnectionError):
            healthcheck.http_get(url, timeout=1, server=server)


def test_health_client_follows_no_redirect_and_bounds_the_body(db):
    import http.server
    import threading

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):  # the stdlib's name
            if self.path == "/redirect":
                self.send_response(302)
                self.send_header("Location", "http://169.254.169.254/latest/meta-data")
                self.end_headers()
                return
            self.send_response(200)
            self.end_headers()
            self.wfile.write(b"x" * (1 << 20))

        def log_message(self, *args):
            pass

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    try:
        server = ServerFactory(ip="127.0.0.1")
        port = httpd.server_address[1]
        status, body, _ms = healthcheck.http_get(f"http://127.0.0.1:{port}/redirect", timeout=5, server=server)
        assert status == 302 and body == ""
        status, body, _ms = healthcheck.http_get(f"http://127.0.0.1:{port}/big", timeout=5, server=server)
        assert status == 200 and len(body) == healthcheck.MAX_BODY
    finally:
        httpd.shutdown()
        httpd.server_close()


# --- attacks through REST, as a site manager with a token ---------------------------------------
@pytest.fixture
def world(db):
    return governance_world()


@pytest.fixture
def api(world):
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {Token.objects.get_or_create(user=world.requester)[0].key}")
    return client


ATTACKS = [
    ("MEMORY_CHECK", {"health": {"url": VAULT_KEY}}, "parameters.health.url"),
    ("MEMORY_CHECK", {"health": {"url": "http://127.0.0.1:8000/admin/"}}, "parameters.health.url"),
    ("SERVICE_RESTART", {"health": {"url": "http://127.0.0.1:6379/"}}, "parameters.health.url"),
    ("LOG_MINING", {"log_path": "/etc/shadow"}, "parameters.log_path"),
    ("LOG_MINING", {"log_path": "/etc//shadow"}, "parameters.log_path"),
    ("LOGROTATE", {"log_path": "/etc/passwd"}, "parameters.log_path"),
    ("LOGROTATE", {"log_path": "/opt/was/app/app.war"}, "parameters.log_path"),
    ("LOG_CLEANUP", {"directory": "//etc", "dry_run": False}, "parameters.directory"),
    ("LOG_CLEANUP", {"directory": "/etc", "dry_run": False}, "parameters.directory"),
    ("MEMORY_CHECK", {"rollout": {"drain_flag": "/tmp/victim"}}, "parameters.rollout.drain_flag"),
    ("MEMORY_CHECK", {"rollout": {"drain_flag": "/tmp/victim.flag"}}, "parameters.rollout.drain_flag"),
    ("SERVICE_RESTART", {"health": {"max_latency_ms": 999999}}, "parameters.health.max_latency_ms"),
]


@pytest.mark.parametrize(("sub_type", "parameters", "field"), ATTACKS)
def test_rest_filing_refuses_the_attack_naming_the_field(
    world, api, django_capture_on_commit_callbacks, sub_type, parameters, field
):
    before = (
        OpsTask.objects.count(),
        AuditEntry.objects.filter(action="task.submitted").count(),
        Notification.objects.count(),
    )
    with django_capture_on_commit_callbacks(execute=True):
        response = api.post(
            URL,
            {"system": "BUDGET", "sub_type": sub_type, "title": "점검", "targets": ["was-1"], "parameters": parameters},
            format="json",
        )
    assert response.status_code == 400, response.content
    body = response.json()
    assert field in body, body
    assert "vault" not in str(body).lower() or field == "parameters.health.url"
    after = (
        OpsTask.objects.count(),
        AuditEntry.objects.filter(action="task.submitted").count(),
        Notification.objects.count(),
    )
    assert after == before  # nothing filed, nobody asked to approve


def test_rest_filing_accepts_a_tighter_threshold_and_shows_it_in_the_plan(
    world, api, django_capture_on_commit_callbacks
):
    Server.objects.filter(system=world.system).update(health_url="http://10.0.0.1:8080/health", ip="10.0.0.1")
    with django_capture_on_commit_callbacks(execute=False):
        response = api.post(
            URL,
            {
                "system": "BUDGET",
                "sub_type": "SERVICE_RESTART",
                "title": "재시작",
                "targets": ["was-1"],
                "parameters": {"health": {"max_latency_ms": 700}},
            },
            format="json",
        )
    assert response.status_code == 201, response.content
    task = OpsTask.objects.get(task_id=response.json()["task_id"])
    http = next(c for c in task.plan["step_sets"][0]["health"] if c["kind"] == "http")
    assert http["max_latency_ms"] == 700 and http["url"] == "http://{ip}:8080/health"


# --- written into the database after filing, run against the real testbed ---------------------
testbed_only = [pytest.mark.testbed, pytest.mark.django_db(transaction=True)]


def _tamper(task, **parameters) -> None:
    OpsTask.objects.filter(pk=task.pk).update(parameters={**task.parameters, **parameters})


def _untouched(testbed, servers, before: dict) -> None:
    for server in servers:
        assert commands_received(testbed, server.server_id) == before[server.server_id], server.server_id
    assert not Execution.objects.exists() and not StepResult.objects.exists()


@pytest.fixture
def victim(testbed):
    """Files outside every CMDB root of the testbed servers, old enough for any cleanup rule:
    a secret, and one named like a drain flag."""
    path = Path(testbed.base) / "victim" / "secret.txt"
    path.parent.mkdir(exist_ok=True)
    old = time.time() - 90 * 86400
    for each in (path, path.parent / "victim.flag"):
        each.write_text("VICTIM-SECRET-CONTENT\n")
        os.utime(each, (old, old))
    yield path
    for each in (path, path.parent / "victim.flag"):
        each.unlink(missing_ok=True)


@pytest.mark.parametrize("attack", ["cleanup", "cleanup-doubled", "rotate", "drain"])
@pytest.mark.usefixtures("clean_testbed")
@pytest.mark.testbed
@pytest.mark.django_db(transaction=True)
def test_file_deletion_written_into_the_database_is_refused_at_execution(testbed, testbed_cmdb, victim, attack):
    server = testbed_cmdb[0]
    sub_type, filed, tampered = {
        "cleanup": ("LOG_CLEANUP", {"dry_run": False, "name_pattern": "*.txt"}, {"directory": str(victim.parent)}),
        "cleanup-doubled": (
            "LOG_CLEANUP",
            {"dry_run": False, "name_pattern": "*.txt"},
            {"directory": "/" + str(victim.parent)},
        ),
        "rotate": ("LOGROTATE", {}, {"log_path": str(victim)}),
        "drain": ("MEMORY_CHECK", {}, {"rollout": {"drain_flag": str(victim.parent / "victim.flag")}}),
    }[attack]
    task = approved_task([server], sub_type=sub_type, parameters=filed)
    assert task.plan_sha256  # filed and approved with a confined plan
    before = {server.server_id: commands_received(testbed, server.server_id)}
    _tamper(task, **tampered)

    assert run_task(task.pk) == "FAILED_ROLLED_BACK"

    task.refresh_from_db()
    assert "아무것도 변경하지 않았습니다" in task.failure_reason
    assert victim.read_text() == (victim.parent / "victim.flag").read_text() == "VICTIM-SECRET-CONTENT\n"
    _untouched(testbed, [server], before)


@pytest.mark.usefixtures("clean_testbed")
@pytest.mark.testbed
@pytest.mark.django_db(transaction=True)
def test_auto_approved_request_tampered_in_the_database_deletes_nothing(
    testbed, testbed_cmdb, victim, django_capture_on_commit_callbacks
):
    """The reported path: a low-risk request on a tier-3 site is approved by policy at once. Filed
    through REST as a site manager (valid), its drain flag then rewritten in the database to a
    file outside the app, the worker's run refuses and the file is still there."""
    server = testbed_cmdb[0]
    institution = server.system.institution
    institution.tier = 3
    institution.save()
    SystemOwner.objects.update_or_create(
        system=server.system,
        defaults={
            "owner": UserFactory(role="team_lead"),
            "deputy": UserFactory(role="team_lead"),
            "supervisor": UserFactory(role="supervisor"),
        },
    )
    field_user = UserFactory(role="site_manager")
    institution.site_managers.add(field_user)
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {Token.objects.get_or_create(user=field_user)[0].key}")
    with django_capture_on_commit_callbacks(execute=False):  # the worker is called by hand below
        response = client.post(
            URL,
            {
                "system": server.system.code,
                "sub_type": "MEMORY_CHECK",
                "title": "메모리 점검",
                "targets": [server.server_id],
                "parameters": {"rollout": {"drain_flag": "maintenance.flag"}},
            },
            format="json",
        )
    assert response.status_code == 201, response.content
    task = OpsTask.objects.get(task_id=response.json()["task_id"])
    assert task.status == "APPROVED" and task.plan_sha256  # approved by policy, plan pinned
    before = {server.server_id: commands_received(testbed, server.server_id)}
    flag = victim.parent / "victim.flag"
    _tamper(task, rollout={"drain_flag": str(flag)})

    assert run_task(task.pk) == "FAILED_ROLLED_BACK"

    task.refresh_from_db()
    assert "rollout.drain_flag" in task.failure_reason and "아무것도 변경하지 않았습니다" in task.failure_reason
    assert flag.read_text() == "VICTIM-SECRET-CONTENT\n"
    _untouched(testbed, [server], before)


@pytest.mark.parametrize("attack", ["log_path", "health-url"])
@pytest.mark.usefixtures("clean_testbed")
@pytest.mark.testbed
@pytest.mark.django_db(transaction=True)
def test_file_read_written_into_the_database_is_refused_at_execution(testbed, testbed_cmdb, victim, attack):
    server = testbed_cmdb[0]
    sub_type = "LOG_MINING" if attack == "log_path" else "MEMORY_CHECK"
    task = approved_task([server], sub_type=sub_type, parameters={})
    before = {server.server_id: commands_received(testbed, server.server_id)}
    _tamper(task, **({"log_path": str(victim)} if attack == "log_path" else {"health": {"url": f"file://{victim}"}}))

    assert run_task(task.pk) == "FAILED_ROLLED_BACK"

    task.refresh_from_db()
    assert "아무것도 변경하지 않았습니다" in task.failure_reason
    _untouched(testbed, [server], before)
    assert "VICTIM-SECRET" not in str(task.result_package) + task.failure_reason


@pytest.mark.usefixtures("clean_testbed")
@pytest.mark.testbed
@pytest.mark.django_db(transaction=True)
def test_the_engine_itself_never_reads_outside_the_roots(testbed, testbed_cmdb, victim):
    """Even handed a playbook and health overrides directly (no plan check in front), the engine
    sends no command naming the victim and fetches no file: URL: the health check it makes is
    the CMDB's, on the server's own address."""
    server = testbed_cmdb[0]
    fast_port_wait([server], 5)
    before = commands_received(testbed, server.server_id)
    for book, overrides in (
        (playbooks.build("LOG_MINING", {"log_path": str(victim)}), {}),
        (playbooks.build("SERVICE_RESTART", {}), {"url": f"file://{victim}", "host": "10.0.0.1"}),
    ):
        engine = Engine(
            playbook=book,
            servers=[server],
            strategy=RolloutStrategy(),
            artifacts=ArtifactStore(),
            health_overrides=overrides,
            criteria_by_system={server.system_id: server.system.health},
        )
        result = engine.run()
        runs = ServerRun.objects.filter(execution=result.execution)
        stored = " ".join(f"{r.health} {r.message}" for r in runs) + " ".join(
            f"{s.command} {s.output_excerpt}" for s in StepResult.objects.filter(server_run__in=runs)
        )
        assert "VICTIM-SECRET" not in stored and "VICTIM-SECRET" not in str(result.package)
        assert str(victim) not in commands_received(testbed, server.server_id)[len(before) :]
        if book.NAME == "SERVICE_RESTART":
            assert result.outcome == "SUCCEEDED", result.reason
            assert "version=1.0.0" in runs.get().health["http"]["body"]  # the CMDB's health URL answered
        else:
            assert result.outcome == "FAILED_ROLLED_BACK" and "매개변수 거부: log_path" in result.reason
    assert victim.read_text() == "VICTIM-SECRET-CONTENT\n"


# --- the plan hash ------------------------------------------------------------------------------
@pytest.mark.usefixtures("clean_testbed")
@pytest.mark.testbed
@pytest.mark.django_db(transaction=True)
def test_parameters_changed_after_approval_make_execution_refuse_and_alert(testbed, testbed_cmdb):
    servers = testbed_cmdb[:2]
    fast_port_wait(servers, 5)
    system = servers[0].system
    owner, pm = UserFactory(role="team_lead"), UserFactory(role="pm")
    SystemOwner.objects.update_or_create(system=system, defaults={"owner": owner, "deputy": owner, "supervisor": owner})
    system.institution.pm = pm
    system.institution.save()
    task = approved_task(servers, parameters=deploy_parameters("2.0.0"))
    approved = task.plan_sha256
    before = {s.server_id: commands_received(testbed, s.server_id) for s in servers}
    # Someone with database access swaps the artifact for another (stored, valid) one.
    _tamper(task, **{k: v for k, v in deploy_parameters("6.6.6").items() if k in ("artifact_sha256", "version")})

    assert run_task(task.pk) == "FAILED_ROLLED_BACK"

    task.refresh_from_db()
    assert (
        "실행 계획이 승인된 것과 다릅니다" in task.failure_reason
        and "아무것도 변경하지 않았습니다" in task.failure_reason
    )
    _untouched(testbed, servers, before)
    assert all(version_of(s) == "1.0.0" for s in servers)
    entry = AuditEntry.objects.get(action="execution.plan_mismatch", task=task.task_id)
    assert entry.payload["approved_sha256"] == approved != entry.payload["current_sha256"]
    alerted = set(Notification.objects.filter(task=task, kind="alert").values_list("user__username", flat=True))
    assert {owner.username, pm.username} <= alerted


@pytest.mark.django_db
def test_a_cmdb_change_after_approval_refuses_before_any_server(world):
    """No testbed needed: the refusal comes before the first connection (none is possible here)."""
    task = approved_task(world.servers, sub_type="SERVICE_RESTART", parameters={})
    Server.objects.filter(pk=world.servers[0].pk).update(script_path="/tmp/evil-scripts")

    assert run_task(task.pk) == "FAILED_ROLLED_BACK"

    task.refresh_from_db()
    assert "실행 계획이 승인된 것과 다릅니다" in task.failure_reason
    assert not Execution.objects.exists()
    assert AuditEntry.objects.filter(action="execution.plan_mismatch", task=task.task_id).exists()


@pytest.mark.django_db
def test_an_unpinned_or_empty_plan_hash_refuses(world):
    task = approved_task(world.servers, sub_type="SERVICE_RESTART", parameters={})
    OpsTask.objects.filter(pk=task.pk).update(plan_sha256="")
    assert run_task(task.pk) == "FAILED_ROLLED_BACK"
    task.refresh_from_db()
    assert "실행 계획이 승인된 것과 다릅니다" in task.failure_reason and not Execution.objects.exists()
