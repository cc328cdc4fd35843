"""Site profiles without a testbed: the SSH security policy refuses a plan before any
connection, crafted schema values are refused where they enter (the admin), and the
variant never takes a path from the scan."""

from __future__ import annotations

import pytest
from django.urls import reverse

from cmdb.models import Credential, EnvSchema, SecurityPolicy
from cmdb.profiles import DEFAULT_MUST_MATCH
from execution import profiles
from execution.errors import ParameterError
from governance import plans
from tests.factories import CredentialFactory, ServerFactory, UserFactory

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
