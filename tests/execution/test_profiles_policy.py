"""Site profiles without a testbed: the SSH security policy refuses a plan before any
connection, crafted schema values are refused where they enter (the admin), the variant
never takes a path from the scan, and the drift report opens a governed task."""

from __future__ import annotations

import pytest
from django.urls import reverse
from django.utils import timezone

from audit.models import AuditEntry
from cmdb.models import Credential, EnvScan, EnvSchema, SecurityPolicy
from cmdb.profiles import DEFAULT_MUST_MATCH
from execution import profiles
from execution.errors import ParameterError
from governance import plans
from governance.models import OpsTask
from tests.factories import CredentialFactory, ServerFactory, SystemOwnerFactory, UserFactory, governance_world

pytestmark = pytest.mark.django_db


def key_server(**fields):
    return ServerFactory(credential=CredentialFactory(kind=Credential.Kind.PRIVATE_KEY), ssh_port=22, **fields)


def test_a_server_the_policy_forbids_refuses_the_plan_naming_it():
    server = key_server()
    SecurityPolicy.objects.create(system=server.system, ssh_auth="key", port_min=22, port_max=22)
    assert plans.render_plan("SERVICE_RESTART", {}, server.system, [server])["playbook"] == "SERVICE_RESTART"

    server.ssh_port = 2222
    server.save()
    with pytest.raises(ParameterError) as port:
        plans.render_plan("SERVICE_RESTART", {}, server.system, [server])
    assert "SSH 포트 2222이(가) 보안 정책의 허용 범위(22-22) 밖" in port.value.errors["targets"]

    server.ssh_port = 22
    server.save()
    SecurityPolicy.objects.filter(system=server.system).update(ssh_auth="key_otp")
    with pytest.raises(ParameterError) as auth:
        plans.render_plan("SERVICE_RESTART", {}, server.system, [server])
    assert "SSH 인증 방식(키 + OTP)과 자격 증명(private_key)이 맞지 않아" in auth.value.errors["targets"]


def test_crafted_schema_values_are_refused_in_the_admin_and_nothing_is_saved(client):
    server = key_server()
    client.force_login(UserFactory(role="admin", is_staff=True))
    form = {
        "server": server.pk,
        "init_system": "sysv",
        "start_script": "/etc/init.d/tomcat;reboot",
        "jdk_path": "/usr/lib/jvm/../../bin",
        "service_name": "tomcat$(reboot)",
        "must_match": DEFAULT_MUST_MATCH,
    }
    response = client.post(reverse("admin:cmdb_envschema_add"), form)
    assert response.status_code == 200
    errors = response.context["adminform"].form.errors
    assert set(errors) == {"start_script", "jdk_path", "service_name"}
    assert not EnvSchema.objects.exists()


def test_the_variant_takes_enums_from_the_scan_and_paths_only_from_the_cmdb():
    server = key_server()
    schema = EnvSchema.objects.create(
        server=server, init_system="sysv", start_script="/etc/init.d/tomcat", jdk_path="/usr/local/jdk"
    )
    facts = {"init_system": "sysv", "start_script": "/etc/init.d/tomcat", "jdk_path": "/usr/local/jdk"}
    # The JDK is outside the server's roots and the JDK directories: no command set, no guess.
    with pytest.raises(profiles.NoVariant, match="JDK 경로 /usr/local/jdk이\\(가\\) 허용된 경로 밖"):
        profiles.select_variant(server, schema, facts)
    schema.jdk_path = ""
    variant = profiles.select_variant(server, schema, {**facts, "jdk_path": ""})
    assert (variant.name, variant.stop, variant.start) == (
        "sysv",
        "/etc/init.d/tomcat stop",
        "/etc/init.d/tomcat start",
    )
    # A scan that reports something else (here a crafted path) is never put into a command.
    for crafted in ({"start_script": "/etc/init.d/tomcat;reboot"}, {"init_system": "systemd;reboot"}):
        with pytest.raises(profiles.NoVariant):
            profiles.select_variant(server, schema, {**facts, "jdk_path": "", **crafted})


def test_the_drift_report_opens_a_governed_task_and_the_nav_links_it(client):
    world = governance_world()
    server = world.servers[0]
    schema = EnvSchema.objects.create(server=server, middleware="jeus", was_home="/opt/was")
    EnvScan.objects.create(
        server=server, facts={"middleware": "tomcat", "was_home": "/opt/was"}, scanned_at=timezone.now()
    )
    url = reverse("execution:drift-task", args=[schema.pk])
    for user in (world.security, world.auditor, world.supervisor):  # may read the report, may not file
        client.force_login(user)
        assert client.post(url, {"sub_type": "SERVICE_RESTART"}).status_code == 403
    outsider = SystemOwnerFactory().owner  # files requests, but for another institution's system
    client.force_login(outsider)
    assert client.post(url, {"sub_type": "SERVICE_RESTART"}).status_code == 404
    assert not OpsTask.objects.exists()

    client.force_login(world.requester)
    page = client.get(reverse("execution:drift")).content.decode()
    assert f'action="{url}"' in page and '<option value="SERVICE_RESTART">서비스 재시작</option>' in page
    assert f'href="{reverse("execution:drift")}"' in page  # the console's navigation links the report
    assert reverse("console:owner_check") not in page  # a site manager neither fixes nor reviews owners
    assert client.post(url, {"sub_type": "RAW_COMMAND"}).status_code == 302
    assert not OpsTask.objects.exists()  # only the types the report may file without parameters
    response = client.post(url, {"sub_type": "SERVICE_RESTART"})
    task = OpsTask.objects.get()
    assert response.status_code == 302 and response.url == reverse("console:task", args=[task.task_id])
    assert (task.sub_type, task.requester, task.status) == ("SERVICE_RESTART", world.requester, "PENDING_APPROVAL")
    assert list(task.targets.values_list("server_id", flat=True)) == [server.server_id]
    assert "미들웨어: CMDB jeus, 스캔 tomcat" in task.raw_request
    assert any(w.startswith(f"환경 차이 {server.server_id} (실행 시 중지)") for w in task.plan["warnings"])
    assert AuditEntry.objects.filter(action="task.submitted", task=task.task_id).exists()

    client.force_login(world.supervisor)  # fixes the owner table: the owner-mapping check is in the nav
    assert reverse("console:owner_check") in client.get(reverse("execution:drift")).content.decode()


@pytest.mark.parametrize("middleware", ["tomcat", "webtob", "other"])
def test_the_was_own_scripts_variant_per_middleware(middleware):
    server = key_server()
    home, jdk = "/opt/was/webtob", "/usr/lib/jvm/java-11"
    start, stop = f"{home}/bin/wsboot", f"{home}/bin/wsdown"
    schema = EnvSchema.objects.create(
        server=server, init_system="was", middleware=middleware, was_home=home, start_script=start, stop_script=stop
    )
    schema.jdk_path = jdk
    facts = {"init_system": "was", "middleware": middleware, "start_script": start, "stop_script": stop}
    variant = profiles.select_variant(server, schema, {**facts, "jdk_path": jdk})
    name = f"was-{middleware}" if middleware != "other" else "was-scripts"
    assert (variant.name, variant.stop, variant.start) == (name, f"JAVA_HOME={jdk} {stop}", f"JAVA_HOME={jdk} {start}")
    # A JDK the scan did not find is not passed; a script the scan did not find stops the server.
    assert profiles.select_variant(server, schema, facts).stop == stop
    with pytest.raises(profiles.NoVariant, match="기동/종료 스크립트를 찾지 못했습니다"):
        profiles.select_variant(server, schema, {**facts, "stop_script": ""})
    if middleware == "webtob":  # a WebtoB/JEUS server's scripts must lie under its WAS home
        schema.was_home = "/opt/was/other-home"
        with pytest.raises(profiles.NoVariant, match="허용된 경로 밖"):
            profiles.select_variant(server, schema, facts)


def test_the_testbed_refuses_unknown_layouts_and_layouts_in_scale_mode(tmp_path):
    from testbed import Testbed, TestbedError

    with pytest.raises(TestbedError, match="layouts must be at most 2 of"):
        Testbed(tmp_path / "a").up(2, layouts=["sysv-tomcat", "upstart"])
    with pytest.raises(TestbedError, match="one sshd per server"):
        Testbed(tmp_path / "b").up(3, sshd_processes=1, layouts=["systemd-tomcat"])
    assert not (tmp_path / "a" / "manifest.json").exists() and not (tmp_path / "b").exists()
