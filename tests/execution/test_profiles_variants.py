"""Playbook variants on the real sshd testbed: three servers with three environments (a
systemd unit with Tomcat and JDK 17, an init.d script with Tomcat 9 and JDK 1.8, JEUS's own
scripts with JDK 11; testbed.layouts installs their stand-ins), one APP_DEPLOY across them."""

from __future__ import annotations

from pathlib import Path

import pytest
from django.template.loader import render_to_string
from django.urls import reverse

from audit.models import AuditEntry
from cmdb.models import EnvScan, EnvSchema, SecurityPolicy
from execution import profiles
from execution.models import Execution, ServerRun, StepResult
from execution.services import run_task
from testbed import Testbed
from testbed.register import register_testbed
from tests.factories import UserFactory

from .engine_helpers import approved_task, commands_received, deploy_parameters, fast_port_wait, version_of

pytestmark = [pytest.mark.testbed, pytest.mark.django_db(transaction=True)]

LAYOUTS = ["systemd-tomcat", "sysv-tomcat", "jeus-scripts"]


@pytest.fixture(scope="module")
def layout_testbed(tmp_path_factory):
    tb = Testbed(tmp_path_factory.mktemp("layouts"))
    tb.up(3, layouts=LAYOUTS)
    yield tb
    tb.down()


@pytest.fixture
def layout_servers(db, layout_testbed):
    layout_testbed.reset()
    servers = register_testbed(layout_testbed.manifest)
    fast_port_wait(servers)
    return servers


def variant_steps(plan: dict) -> dict[str, dict]:
    found = {}
    for step_set in plan["step_sets"]:
        steps = {s["name"]: s for s in step_set["steps"]}
        for server_id in step_set["servers"]:
            found[server_id] = steps
    return found


def catalina(testbed, server_id: str) -> str:
    return (Path(testbed.server(server_id)["root"]) / "logs" / "catalina.out").read_text()


def test_one_deploy_runs_each_servers_own_variant(layout_servers, layout_testbed):
    systemd, sysv, jeus = layout_servers
    profiles.scan_servers("TESTBED-WAS")
    for server, init, middleware in ((systemd, "systemd", "tomcat"), (sysv, "sysv", "tomcat"), (jeus, "was", "jeus")):
        facts = EnvScan.objects.get(server=server).facts
        assert (facts["init_system"], facts["middleware"]) == (init, middleware), facts
        assert profiles.compare(EnvSchema.objects.get(server=server), facts) == []
    assert EnvScan.objects.get(server=jeus).facts["jdk_version"] == "11.0.21"

    task = approved_task(layout_servers, parameters=deploy_parameters("2.0.0", max_parallel=3))
    # Before approval, the plan shows each server's variant and its own stop/start commands.
    steps = variant_steps(task.plan)
    init_script = EnvSchema.objects.get(server=sysv).start_script
    jeus_schema = EnvSchema.objects.get(server=jeus)
    expected = {
        systemd.server_id: ("systemd", "systemctl stop tomcat-app.service"),
        sysv.server_id: ("sysv", f"{init_script} stop"),
        jeus.server_id: ("was-jeus", f"JAVA_HOME={jeus_schema.jdk_path} {jeus_schema.stop_script}"),
    }
    for server_id, (variant, stop) in expected.items():
        assert steps[server_id]["env-variant"]["check"]["variant"] == variant
        assert steps[server_id]["shutdown"]["command"] == stop
        assert list(steps[server_id])[:2] == ["env-scan", "env-variant"]
    assert not [c for s in task.plan["step_sets"] for c in s["health"] if c["kind"] == "env-variant"]  # not a probe
    shown = render_to_string("console/_plan.html", {"plan": task.plan, "plan_sha256": task.plan_sha256})
    assert "환경 변형 (종료·기동 명령)" in shown and "variant=was-jeus" in shown  # what the approver reads

    run_task(task.pk)

    execution = Execution.objects.get(task=task)
    for server in layout_servers:
        run = ServerRun.objects.get(execution=execution, server_ref=server.server_id)
        assert run.state == "SUCCEEDED", run.message
        assert version_of(server) == "2.0.0"
        variant, stop = expected[server.server_id]
        logged = {s.name: s for s in StepResult.objects.filter(server_run=run, phase="forward")}
        assert logged["env-variant"].output_excerpt.startswith(f"환경 변형 {variant} ")
        assert logged["shutdown"].command == stop
        assert stop in commands_received(layout_testbed, server.server_id)
    # Each stand-in ran, with the JDK its environment names.
    assert "systemd stand-in: systemctl start tomcat-app.service" in catalina(layout_testbed, systemd.server_id)
    assert "java-17-openjdk-standin" in catalina(layout_testbed, systemd.server_id)
    assert "init.d stand-in: tomcat9 start (JAVA_HOME=" in catalina(layout_testbed, sysv.server_id)
    assert f"JEUS stand-in: startManagedServer (JAVA_HOME={jeus_schema.jdk_path})" in catalina(
        layout_testbed, jeus.server_id
    )


def test_no_variant_or_disallowed_drift_stops_that_server_while_the_others_continue(
    layout_servers, layout_testbed, client
):
    systemd, sysv, jeus = layout_servers
    # The systemd server's schema lacks the unit's name: no command set fits, none is guessed.
    EnvSchema.objects.filter(server=systemd).update(service_name="")
    # The JEUS server drifted: its JEUS marker is gone (the scan finds "other", the schema says jeus).
    marker = Path(layout_testbed.server(jeus.server_id)["root"]) / "jeus8" / "bin" / "jeusadmin"
    marker.rename(marker.with_name("jeusadmin.moved"))
    seen = {s.server_id: len(commands_received(layout_testbed, s.server_id)) for s in layout_servers}
    try:
        profiles.scan_servers("TESTBED-WAS")
        task = approved_task(layout_servers, parameters=deploy_parameters("2.0.0", failures_allowed=2, max_parallel=3))
        warnings = " ".join(task.plan["warnings"])
        assert "환경 변형 없음 (실행 시 중지)" in warnings and "서비스 이름이 없습니다" in warnings
        assert f"환경 차이 {jeus.server_id} (실행 시 중지)" in warnings

        run_task(task.pk)
    finally:
        marker.with_name("jeusadmin.moved").rename(marker)

    execution = Execution.objects.get(task=task)
    reasons = {
        systemd.server_id: ("systemd 서버인데 CMDB 환경 스키마에 서비스 이름이 없습니다", ["env-scan", "env-variant"]),
        jeus.server_id: ("환경 스키마와 달라 변경 전에 중지했습니다 (미들웨어: CMDB jeus, 스캔 other)", ["env-scan"]),
    }
    for server_id, (reason, steps) in reasons.items():
        run = ServerRun.objects.get(execution=execution, server_ref=server_id)
        assert run.state in {"REFUSED", "ROLLED_BACK"} and reason in run.message, (run.state, run.message)
        forward = StepResult.objects.filter(server_run=run, phase="forward").values_list("name", flat=True)
        assert list(forward) == steps  # the scan was the only command that reached that server
        received = commands_received(layout_testbed, server_id)[seen[server_id] :]
        assert "cp -p" not in received and "mv -f" not in received, received[-300:]
        assert "systemctl stop tomcat-app.service\n" not in received and "JAVA_HOME=" not in received
    steps = AuditEntry.objects.filter(action="execution.step", task=task.task_id, target=systemd.server_id)
    assert [(e.payload["step"], e.payload["state"]) for e in steps.order_by("seq")][-1] == ("env-variant", "FAILED")
    ok = ServerRun.objects.get(execution=execution, server_ref=sysv.server_id)
    assert ok.state == "SUCCEEDED", ok.message
    assert version_of(sysv) == "2.0.0" and version_of(systemd) == "1.0.0" and version_of(jeus) == "1.0.0"

    client.force_login(UserFactory(username="cmdb-admin", role="admin"))
    page = client.get(reverse("execution:drift")).content.decode()
    assert jeus.server_id in page and sysv.server_id not in page


def test_a_port_the_security_policy_forbids_is_never_connected_to(layout_servers, layout_testbed):
    systemd, sysv, jeus = layout_servers
    SecurityPolicy.objects.create(system=systemd.system, port_min=sysv.ssh_port, port_max=jeus.ssh_port)
    before = commands_received(layout_testbed, systemd.server_id)

    profiles.scan_servers("TESTBED-WAS")
    assert "보안 정책의 허용 범위" in EnvScan.objects.get(server=systemd).error
    entry = AuditEntry.objects.filter(action="execution.env_scan").latest("pk")
    assert entry.payload["refused_by_policy"] and systemd.server_id in entry.payload["refused_by_policy"][0]
    rollout = {"rollout": {"failures_allowed": 1, "max_parallel": 3}}
    task = approved_task(layout_servers, sub_type="SERVICE_RESTART", parameters=rollout)
    assert f"보안 정책 (실행 시 중지): {systemd.server_id}: SSH 포트" in " ".join(task.plan["warnings"])

    run_task(task.pk)

    runs = {r.server_ref: r for r in ServerRun.objects.filter(execution__task=task)}
    refused = runs[systemd.server_id]
    assert "보안 정책의 허용 범위" in refused.message and "접속하지 않았습니다" in refused.message
    assert list(StepResult.objects.filter(server_run=refused).values_list("name", flat=True)) == ["ssh-policy"]
    audited = AuditEntry.objects.get(action="execution.step", task=task.task_id, target=systemd.server_id)
    assert (audited.payload["step"], audited.payload["state"]) == ("ssh-policy", "FAILED")
    assert "보안 정책의 허용 범위" in StepResult.objects.get(server_run=refused).output_excerpt
    assert commands_received(layout_testbed, systemd.server_id) == before  # not one command reached it
    assert runs[sysv.server_id].state == runs[jeus.server_id].state == "SUCCEEDED"


def test_a_variant_other_than_the_approved_one_is_refused(layout_servers, layout_testbed):
    jeus = layout_servers[2]
    # The schema lets the JDK differ (not in must_match): no drift refusal to rely on.
    EnvSchema.objects.filter(server=jeus).update(must_match="os_type,init_system,middleware")
    profiles.scan_servers("TESTBED-WAS")
    task = approved_task([jeus], sub_type="SERVICE_RESTART")
    assert variant_steps(task.plan)[jeus.server_id]["env-variant"]["check"]["stop"].startswith("JAVA_HOME=")
    jdk = Path(EnvSchema.objects.get(server=jeus).jdk_path)
    jdk.rename(jdk.with_name("jdk-moved"))  # after approval, the JDK is gone
    try:
        run_task(task.pk)
    finally:
        jdk.with_name("jdk-moved").rename(jdk)

    run = ServerRun.objects.get(execution__task=task, server_ref=jeus.server_id)
    assert "승인된 계획의 변형(was-jeus" in run.message and "변경 전에 중지했습니다" in run.message, run.message
    forward = StepResult.objects.filter(server_run=run, phase="forward").values_list("name", flat=True)
    assert list(forward) == ["env-scan", "env-variant"]
