"""The execution plan: every playbook renders what it will run, without running it.

Real CMDB rows (SQLite), real stored artifacts; nothing connects anywhere. The testbed test
at the end compares the plan with the commands a real sshd server received.
"""

from __future__ import annotations

import hashlib
import re
import shlex
import time
from pathlib import Path

import pytest

from cmdb.models import HealthCriteria, Server
from execution import plan as plan_module
from execution import playbooks
from execution.errors import ParameterError
from execution.healthcheck import LOG_OFFSET_PLACEHOLDER
from execution.models import StepResult
from execution.plan import render_plan
from execution.services import store_artifact
from governance import plans
from tests.factories import ServerFactory, SystemFactory
from tests.task_parameters import valid_parameters

from .engine_helpers import approved_task, commands_received, deploy_parameters, fast_port_wait

REF = "OPS-20260523-001"


def cmdb_server(system, n: int, **fields) -> Server:
    base = f"/srv/was{n}" if fields.pop("own_root", False) else "/app"
    defaults = {
        "app_path": f"{base}/was",
        "deploy_path": f"{base}/deploy",
        "backup_path": f"{base}/backup",
        "script_path": f"{base}/bin",
        "log_path": f"{base}/logs/catalina.out",
        "service_port": 8080,
        "ip": f"10.1.0.{n}",
        "health_url": f"http://10.1.0.{n}:8080/health",
        "rolling_group": 1 if n % 2 else 2,
    }
    defaults.update(fields)
    return ServerFactory(system=system, server_id=f"was-{n:02d}", **defaults)


@pytest.fixture
def system(db):
    system = SystemFactory(code="BUDGET")
    HealthCriteria.objects.create(
        system=system,
        service_port=8080,
        log_path="/app/logs/catalina.out",
        max_latency_ms=2000,
        port_wait_seconds=30,
        min_free_disk_mb=512,
    )
    return system


@pytest.fixture
def servers(system):
    return [cmdb_server(system, n) for n in range(1, 5)]


@pytest.fixture
def artifact(settings, tmp_path):
    settings.MEDIA_ROOT = str(tmp_path)
    return store_artifact(b"version=2.0.0\n" + b"#" * 2000, "app-2.0.0.war")


def q(value) -> str:
    return shlex.quote(str(value))


# --- every playbook ------------------------------------------------------------------------
PLAYBOOK_PARAMETERS = {
    "APP_DEPLOY": lambda a: {"artifact_sha256": a["sha256"], "version": "2.0.0"},
    "STATIC_SYNC": lambda a: {"artifact_sha256": a["sha256"], "target_path": "static"},
    "SERVICE_RESTART": lambda a: {},
    "SSL_REPLACE": lambda a: {
        "cert_sha256": a["sha256"],
        "key_sha256": a["sha256"],
        "cert_path": "conf/site.crt",
        "key_path": "conf/site.key",
        "https_port": 8443,
    },
    "DATA_CLEANUP": lambda a: {"script": "purge-sessions", "args": ["TB_SESSION", "30"]},
    "LOG_MINING": lambda a: {},
    "LOG_CLEANUP": lambda a: {"dry_run": False},
    "LOGROTATE": lambda a: {},
    "MEMORY_CHECK": lambda a: {},
    "DISK_CHECK": lambda a: {},
    "ERROR_COUNT": lambda a: {},
    "CODE_FIX": lambda a: {"description": "로그인 화면의 안내 문구를 바꿔 주세요"},
}


@pytest.mark.parametrize("name", sorted(playbooks.PLAYBOOKS))
def test_every_playbook_renders_its_plan(name, servers, artifact, tmp_path):
    if name == "CODE_FIX":  # the agent's plan comes from the system's source repository in the CMDB
        from cmdb.models import SystemSource
        from execution.agent import demo

        SystemSource.objects.create(system=servers[0].system, repository=str(tmp_path / "repo"), **demo.DEMO_SOURCE)
    parameters = PLAYBOOK_PARAMETERS.get(name, lambda a: valid_parameters(name))(artifact)
    plan = render_plan(name, parameters, servers[0].system, servers, task_ref=REF)

    cls = playbooks.get(name)
    assert set(plan) == {"playbook", "playbook_version", "read_only", "rollout", "uploads", "step_sets", "warnings"}
    assert plan["playbook"] == name and plan["playbook_version"] == cls.VERSION
    assert plan["read_only"] == cls.READ_ONLY
    # Servers with the same paths share one step set; their addresses are listed beside it.
    assert [s["servers"] for s in plan["step_sets"]] == [[s.server_id for s in servers]]
    step_set = plan["step_sets"][0]
    assert step_set["hosts"]["was-01"] == {"ip": "10.1.0.1", "hostname": "was-01.local"}
    assert step_set["steps"], name
    for step in step_set["steps"]:
        assert {"command", "upload", "check"} & set(step), step
        if "command" in step:
            assert step["command"].strip() and "\n" not in step["command"]
    assert sorted(s for g in plan["rollout"]["groups"] for s in g["servers"]) == [s.server_id for s in servers]
    assert plans.plan_sha256(plan) == plans.plan_sha256(
        render_plan(name, parameters, servers[0].system, list(reversed(servers)), task_ref=REF)
    )


def test_app_deploy_plan_lists_the_exact_commands_upload_health_and_rollback(servers, artifact):
    sha = artifact["sha256"]
    record = {k: artifact[k] for k in ("sha256", "name", "size")}  # as filing stores it
    plan = render_plan(
        "APP_DEPLOY",
        {"artifact": record, "version": "2.0.0", "rollout": {"canary_share": 0}},
        servers[0].system,
        servers,
        task_ref=REF,
    )

    staging, live, saved = f"/app/deploy/app.war.{sha[:12]}", "/app/was/app.war", f"/app/backup/{REF}/app.war"
    upload = {"name": "app-2.0.0.war", "size": 2014, "sha256": sha, "remote": staging}
    assert plan["uploads"] == [upload]
    step_set = plan["step_sets"][0]
    steps = {s["name"]: s for s in step_set["steps"]}
    assert [s["name"] for s in step_set["steps"]] == [
        "upload",
        "pre-check",
        "pre-disk",
        "pre-version",
        "backup",
        "upload-verify",
        "shutdown",
        "swap",
        "startup",
        "port",
        "http",
        "post-check",
        "gate-health",
    ]
    assert steps["upload"]["upload"] == upload
    # What runs at the same time, in the words the approver reads: the upload streams while the
    # pre-check and the backup run; its SHA-256 check and the move come after all three.
    assert steps["upload"]["concurrent"] == (
        "다음 단계와 동시에 전송 (별도 SFTP 채널): pre-check, backup. SHA-256 확인과 이동은 업로드와 "
        "이 단계들이 모두 성공한 뒤 upload-verify 단계에서"
    )
    assert steps["pre-check"]["concurrent"] == steps["backup"]["concurrent"] == "업로드와 동시에 실행"
    assert "concurrent" not in steps["shutdown"] and "concurrent" not in steps["upload-verify"]
    # The HTTP probe from the worker while the post-check command runs on the server.
    assert steps["http"]["concurrent"] == "다음 단계와 동시에 점검 (작업 서버에서): post-check"
    assert steps["post-check"]["concurrent"] == "http 점검과 동시에 실행"
    # The restart's three steps go to the server as one chain, and the approver reads so.
    assert steps["shutdown"]["chain"] == (
        "다음 단계와 함께 한 번에 서버로 보냄: swap, startup. 서버는 앞 단계가 성공해야 다음 단계를 "
        "시작하며, 실패·시간 초과·중지 시 남은 단계는 시작하지 않음"
    )
    assert steps["swap"]["chain"] == "shutdown 단계가 성공하면 서버에서 바로 이어서 실행"
    assert steps["startup"]["chain"] == "swap 단계가 성공하면 서버에서 바로 이어서 실행"
    assert not any("chain" in steps[name] for name in ("upload-verify", "port", "post-check"))
    assert steps["upload-verify"]["command"] == (
        f'h=$(sha256sum -- {staging}.guardia-part) || exit $?; printf "%s\\n" "$h"; '
        f'[ "${{h%% *}}" = {sha} ] && mv -f -- {staging}.guardia-part {staging}'
    )
    assert steps["backup"]["command"] == f"mkdir -p /app/backup/{REF} && cp -p {live} {saved}"
    assert steps["shutdown"]["command"] == "/app/bin/shutdown.sh"
    assert steps["swap"]["command"] == (
        f"mv -f {staging} {live} && (wc -c < /app/logs/catalina.out 2>/dev/null || echo 0)"
    )
    assert steps["startup"]["command"] == "/app/bin/startup.sh" and steps["startup"]["timeout"] == 120
    assert steps["port"]["check"] == {"kind": "port", "host": "{ip}", "port": 8080, "wait_seconds": 30}
    assert steps["http"]["check"] == {
        "kind": "http",
        "url": "http://{ip}:8080/health",
        "expect_status": 200,
        "max_latency_ms": 2000,
        "expect_version": "2.0.0",
    }
    assert {c["kind"] for c in step_set["health"]} == {"disk", "http", "port", "process", "log"}
    assert {
        "kind": "log",
        "path": "/app/logs/catalina.out",
        "error_pattern": "ERROR|Exception",
        "since": "restart",
        "step": "post-check",
    } in step_set["health"]
    # The rollback of a server that went all the way (the worst case): restore the backup, restart.
    rollback = [s["name"] for s in step_set["rollback"]]
    assert rollback == [
        "log-tail",
        "rb-pid-before",
        "rb-shutdown",
        "rb-restore",
        "rb-startup",
        "rb-port",
        "rb-post-check",
        "rb-http",
    ]
    assert step_set["rollback"][0]["only"] == "failed_server"
    assert step_set["rollback"][3]["command"].startswith(f"cp -p {saved} {live} && ")
    # The rollout: two CMDB rolling groups, no canary, the engine's defaults otherwise.
    rollout = plan["rollout"]
    assert rollout["rolling"] and rollout["safety_gate"] and rollout["max_parallel"] == 16
    assert [(g["label"], g["servers"]) for g in rollout["groups"]] == [
        ("group 1, batch 0", ["was-01", "was-03"]),
        ("group 2, batch 1", ["was-02", "was-04"]),
    ]


def commands(plan) -> dict[str, str]:
    return {s["name"]: s["command"] for s in plan["step_sets"][0]["steps"] if "command" in s}


def test_log_file_and_static_playbooks_list_their_exact_commands(servers, artifact):
    system, sha = servers[0].system, artifact["sha256"]
    cleanup = render_plan("LOG_CLEANUP", {"dry_run": False, "older_than_days": 14}, system, servers, task_ref=REF)
    find = "find /app/logs -maxdepth 1 -type f -name '*.log.*' -mtime +14"
    assert commands(cleanup) == {"list": f"{find} -print", "delete": f"{find} -print -delete"}
    assert list(commands(render_plan("LOG_CLEANUP", {}, system, servers, task_ref=REF))) == ["list"]  # dry run

    rotate = render_plan("LOGROTATE", {"keep": 3}, system, servers, task_ref=REF)
    log, rotated = "/app/logs/catalina.out", f"/app/logs/catalina.out.{REF}"
    assert commands(rotate) == {
        "guard-file": f"test -f {log} && test ! -h {log}",
        "rotate": f"cp -p {log} {rotated} && truncate -s 0 {log} && gzip -f {rotated}",
        "prune": f'ls -1t {log}.*.gz 2>/dev/null | tail -n +4 | while read -r old; do rm -f -- "$old"; done',
    }

    static = render_plan(
        "STATIC_SYNC", {"artifact_sha256": sha, "target_path": "static"}, system, servers, task_ref=REF
    )
    new, old = f"/app/was/static.guardia-new-{REF}", f"/app/was/static.guardia-old-{REF}"
    assert static["uploads"] == [
        {"name": f"static-{REF}.tar.gz", "size": 2014, "sha256": sha, "remote": f"/app/deploy/static-{REF}.tar.gz"}
    ]
    assert commands(static)["swap"] == f"mv /app/was/static {old} && mv {new} /app/was/static"
    rollback = static["step_sets"][0]["rollback"][-1]["command"]
    assert rollback == f"mv /app/was/static {new}.failed && mv {old} /app/was/static"

    ssl = render_plan("SSL_REPLACE", PLAYBOOK_PARAMETERS["SSL_REPLACE"](artifact), system, servers, task_ref=REF)
    assert [u["remote"] for u in ssl["uploads"]] == ["/app/was/conf/site.crt", "/app/was/conf/site.key"]
    assert commands(ssl)["chmod-key"].startswith("chmod 600 /app/was/conf/site.key && ")
    served = next(s["check"] for s in ssl["step_sets"][0]["steps"] if s["name"] == "served-cert")
    assert served == {"kind": "tls", "host": "{ip}", "port": 8443, "server_name": "", "certificate_sha256": sha}


def test_canary_batches_and_parallelism_are_in_the_plan(system, artifact):
    servers = [cmdb_server(system, n, rolling_group=1, canary=(n == 3)) for n in range(1, 8)]
    plan = render_plan(
        "SERVICE_RESTART",
        {"rollout": {"canary_share": 0.1, "batch_size": 3, "max_parallel": 2}},
        system,
        servers,
        task_ref=REF,
    )
    rollout = plan["rollout"]
    assert (rollout["canary_share"], rollout["batch_size"], rollout["max_parallel"]) == (0.1, 3, 2)
    assert [(g["tier"], g["servers"]) for g in rollout["groups"]] == [
        ("canary", ["was-03"]),
        ("batch", ["was-01", "was-02", "was-04"]),
        ("batch", ["was-05", "was-06", "was-07"]),
    ]


def test_read_only_playbooks_run_everywhere_at_once_with_no_rollback(servers):
    plan = render_plan(
        "LOG_MINING", {"pattern": "OutOfMemory", "max_lines": 500}, servers[0].system, servers, task_ref=REF
    )
    assert plan["read_only"] and not plan["rollout"]["rolling"]
    assert [g["tier"] for g in plan["rollout"]["groups"]] == ["all"]
    step_set = plan["step_sets"][0]
    assert step_set["rollback"] == [] and plan["uploads"] == []
    grep = next(s for s in step_set["steps"] if s["name"] == "grep-log")
    assert grep["command"] == ("tail -n 500 /app/logs/catalina.out | grep -E -- OutOfMemory | tail -n 5000")
    assert step_set["steps"][0] == {
        "name": "guard-file",
        "timeout": 15,
        "command": "test -f /app/logs/catalina.out && test ! -h /app/logs/catalina.out",
    }


def test_hostile_text_is_one_quoted_word_in_the_plan(servers):
    plan = render_plan(
        "LOG_MINING", {"log_path": "x; reboot", "pattern": "ERROR'$(id)"}, servers[0].system, servers, task_ref=REF
    )
    grep = next(s for s in plan["step_sets"][0]["steps"] if s["name"] == "grep-log")["command"]
    assert shlex.split(grep.split("|")[0]) == ["tail", "-n", "20000", "/app/logs/x; reboot"]
    assert "'ERROR'\"'\"'$(id)'" in grep


def test_secrets_in_a_command_are_masked(servers):
    plan = render_plan(
        "DATA_CLEANUP",
        {"script": "purge", "args": ["password=hunter22", "keep"]},
        servers[0].system,
        servers,
        task_ref=REF,
    )
    run = next(s for s in plan["step_sets"][0]["steps"] if s["name"] == "run")["command"]
    assert "hunter22" not in run and "password=****" in run


@pytest.mark.parametrize(
    "command",
    [
        "run PASSWORD=hunter22",
        "run passwd: hunter22",
        "run pa\u017f\u017fword=hunter22",  # long s: the expression matches it as "s"
        "run PR\u0130VATE_KEY=abc",
        "run pr\u0131vate key=abc",
        "run api_to\u212aen=abc",  # Kelvin sign
        "run Secret : x1 token=y2 passphrase=z3",
        "mv -f /app/deploy/app.war /app/was/app.war",
    ],
)
def test_a_command_is_masked_as_the_expression_alone_would(command):
    # The words looked for first only decide whether the expression runs: the outcome is its own.
    expected = plan_module._SECRETISH.sub(rf"\1\2{plan_module.MASK}", command)
    assert plan_module.mask(command) == expected
    assert (expected == command) == command.startswith("mv ")


def test_servers_with_other_paths_get_their_own_step_set(system, artifact):
    servers = [cmdb_server(system, 1), cmdb_server(system, 2), cmdb_server(system, 3, own_root=True)]
    plan = render_plan("APP_DEPLOY", {"artifact_sha256": artifact["sha256"]}, system, servers, task_ref=REF)
    assert [s["servers"] for s in plan["step_sets"]] == [["was-01", "was-02"], ["was-03"]]
    assert {u["remote"] for u in plan["uploads"]} == {
        f"/app/deploy/app.war.{artifact['sha256'][:12]}",
        f"/srv/was3/deploy/app.war.{artifact['sha256'][:12]}",
    }


# --- determinism and what changes the hash ---------------------------------------------------
def test_same_inputs_same_hash_and_each_input_changes_it(servers, artifact):
    system = servers[0].system
    parameters = {"artifact_sha256": artifact["sha256"], "version": "2.0.0"}

    def sha(params=parameters, targets=servers, ref=REF):
        return plans.plan_sha256(render_plan("APP_DEPLOY", params, system, targets, task_ref=ref))

    first = sha()
    assert sha() == first  # same inputs, same hash: no clock, no random name, no dict order
    assert sha(ref="OPS-20260523-002") != first  # the backup directory is named after the task
    assert sha(params={**parameters, "version": "2.0.1"}) != first
    assert sha(params={**parameters, "script_timeout": 600}) != first
    assert sha(params={**parameters, "rollout": {"max_parallel": 4}}) != first
    assert sha(params={**parameters, "health": {"max_latency_ms": 500}}) != first
    assert sha(targets=servers[:3]) != first
    Server.objects.filter(pk=servers[1].pk).update(deploy_path="/data/deploy")  # a CMDB path changes
    assert sha(targets=list(Server.objects.filter(pk__in=[s.pk for s in servers]))) != first
    Server.objects.filter(pk=servers[1].pk).update(
        deploy_path="/app/deploy", ip="10.9.9.9", health_url="http://10.9.9.9:8080/health"
    )
    assert sha(targets=list(Server.objects.filter(pk__in=[s.pk for s in servers]))) != first  # an address
    HealthCriteria.objects.filter(system=system).update(max_latency_ms=1500)
    Server.objects.filter(pk=servers[1].pk).update(ip="10.1.0.2", health_url="http://10.1.0.2:8080/health")
    assert sha(targets=list(Server.objects.filter(pk__in=[s.pk for s in servers]))) != first  # the criteria


def test_inactive_targets_are_left_out_and_said_so(servers):
    Server.objects.filter(pk=servers[0].pk).update(active=False)
    targets = list(Server.objects.filter(pk__in=[s.pk for s in servers]))
    plan = render_plan("SERVICE_RESTART", {}, servers[0].system, targets, task_ref=REF)
    assert "was-01" not in plan["step_sets"][0]["servers"]
    assert any("was-01" in w for w in plan["warnings"])


def test_missing_cmdb_path_refuses_the_plan_naming_the_server(system):
    server = cmdb_server(system, 1, script_path="")
    with pytest.raises(ParameterError) as info:
        render_plan("SERVICE_RESTART", {}, system, [server], task_ref=REF)
    assert "was-01" in info.value.errors["targets"] and "script_path" in info.value.errors["targets"]


def test_an_off_host_cmdb_health_url_refuses_the_plan(system):
    server = cmdb_server(system, 1, health_url="http://169.254.169.254/latest/meta-data")
    with pytest.raises(ParameterError) as info:
        render_plan("SERVICE_RESTART", {}, system, [server], task_ref=REF)
    assert "169.254.169.254" in info.value.errors["targets"]


def test_a_thousand_servers_render_fast(system, artifact, capsys):
    Server.objects.bulk_create(
        [
            Server(
                system=system,
                server_id=f"srv-{n:04d}",
                hostname=f"srv-{n:04d}.local",
                ip=f"10.{n // 250}.0.{n % 250}",
                app_path="/app/was",
                deploy_path="/app/deploy",
                backup_path="/app/backup",
                script_path="/app/bin",
                log_path="/app/logs/catalina.out",
                service_port=8080,
                health_url=f"http://10.{n // 250}.0.{n % 250}:8080/health",
                rolling_group=1 + n % 2,
            )
            for n in range(1000)
        ]
    )
    servers = list(Server.objects.filter(system=system))
    parameters = {"artifact_sha256": artifact["sha256"], "version": "2.0.0", "rollout": {"batch_percent": 0.1}}
    started = time.perf_counter()
    plan = render_plan("APP_DEPLOY", parameters, system, servers, task_ref=REF)
    digest = plans.plan_sha256(plan)
    seconds = time.perf_counter() - started
    with capsys.disabled():
        print(
            f"\n1,000-server APP_DEPLOY plan rendered and hashed in {seconds:.3f} s "
            f"({len(plans.canonical_json(plan)) // 1024} KiB)"
        )
    assert len(plan["step_sets"]) == 1 and len(plan["step_sets"][0]["servers"]) == 1000
    assert len(digest) == 64
    assert seconds < 5  # ~0.3 s on an idle machine; the bound leaves room for a loaded shared one


# --- the plan is what runs -------------------------------------------------------------------
@pytest.mark.testbed
@pytest.mark.django_db(transaction=True)
def test_the_testbed_receives_exactly_the_planned_commands(testbed, testbed_cmdb):
    from execution.services import run_task

    servers = testbed_cmdb[:2]
    fast_port_wait(servers, 5)
    task = approved_task(servers, parameters=deploy_parameters("2.0.0", drain_flag="maintenance.flag"))

    outcome = run_task(task.pk)
    task.refresh_from_db()
    assert outcome == "SUCCEEDED", task.failure_reason

    executed = {}
    for step in StepResult.objects.filter(server_run__execution__task=task).exclude(command="").order_by("seq"):
        executed.setdefault(step.server_run.server_ref, []).append((step.name, step.command))
    sent = "".join(commands_received(testbed, s.server_id) for s in servers)
    for step_set in task.plan["step_sets"]:
        planned = [(s["name"], s["command"]) for s in step_set["steps"] if "command" in s]
        assert [name for name, _ in planned][:2] == ["drain", "pre-check"] and planned[-1][0] == "undrain"
        upload = next(s["upload"] for s in step_set["steps"] if "upload" in s)
        for server_id in step_set["servers"]:
            # What the engine ran on this server, in order, is the plan's command list.
            # The one value known only at run time: where the log stood before startup.
            ran = [
                (n, re.sub(r"tail -c \+\d+ ", f"tail -c +{LOG_OFFSET_PLACEHOLDER} ", c) if n == "post-check" else c)
                for n, c in executed[server_id]
                if n != "upload"
            ]
            assert ran == planned, server_id
            server = next(s for s in servers if s.server_id == server_id)
            assert hashlib.sha256((Path(server.app_path) / "app.war").read_bytes()).hexdigest() == upload["sha256"]
        chained = {s["name"] for s in step_set["steps"] if "chain" in s}
        assert chained == {"shutdown", "swap", "startup"}
        for name, command in planned:  # and each reached sshd as written (inside the engine's wrapper)
            if name in chained:  # inside the chain's program, itself quoted once more
                assert shlex.quote(f"/bin/sh -c {shlex.quote(command)} </dev/null; rc=$?")[1:-1] in sent, command
            elif name != "post-check":
                assert shlex.quote('echo "GUARDIA_PGID=$$" >&2; ' + command)[1:-1] in sent, command


@pytest.mark.django_db
def test_a_restart_given_a_before_start_step_outside_the_forward_chain_runs_it_one_step_at_a_time():
    """A rollback's restart (phase prefix) with a declared step before the start: the steps go
    one at a time, the declared step under its prefixed name, its hooks called around it."""
    from execution.healthcheck import BeforeStart, Health, restart_was
    from execution.plan import PlanContext, Uploads

    server = ServerFactory()
    ctx = PlanContext(server, Health.for_server(server), "OPS-1", Uploads({}))
    seen: list[str] = []
    before = BeforeStart(
        "swap", "mv -f /a /b", on_start=lambda: seen.append("start"), on_done=lambda: seen.append("done")
    )
    restart_was(ctx, {"scripts": "/app/bin", "pid": ""}, phase_prefix="rb-", before_start=before)
    steps = [s for s in ctx.steps if "command" in s]
    assert [s["name"] for s in steps][:3] == ["rb-shutdown", "rb-swap", "rb-startup"]
    assert steps[1]["command"].startswith("mv -f /a /b && ") and not any("chain" in s for s in ctx.steps)
    assert seen == ["start", "done"]
