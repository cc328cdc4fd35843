"""CSV import of TB_ENV_SCHEMA and TB_SECURITY_POLICY: typed, bad rows named with their line
and field, nothing written on error, scoped to the importer's systems, audited."""

from __future__ import annotations

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import reverse

from audit.models import AuditEntry
from cmdb import csv_import
from cmdb.models import EnvSchema, SecurityPolicy
from tests.factories import ServerFactory, SystemFactory, SystemOwnerFactory, UserFactory

pytestmark = pytest.mark.django_db


def upload(client, model: str, text: str):
    data = {"file": SimpleUploadedFile("rows.csv", text.encode("utf-8"), content_type="text/csv")}
    return client.post(reverse(f"admin:cmdb_{model}_import"), data)


def test_admin_imports_schemas_and_policies_and_a_second_file_replaces_them(admin_client):
    one, two = ServerFactory(server_id="was-01"), ServerFactory(server_id="was-02")
    schemas = (
        "server_id,init_system,service_name,middleware,was_home,jdk_path,jdk_version\n"
        "was-01,systemd,tomcat.service,tomcat,/app/tomcat,/usr/lib/jvm/java-17,17.0.9\n"
        "was-02,was,,jeus,/app/jeus8,,\n"
    )
    assert upload(admin_client, "envschema", schemas).status_code == 302
    first = EnvSchema.objects.get(server=one)
    assert (first.init_system, first.service_name, first.jdk_version) == ("systemd", "tomcat.service", "17.0.9")
    assert EnvSchema.objects.get(server=two).middleware == "jeus"
    assert upload(admin_client, "envschema", "server_id,middleware\nwas-01,webtob\n").status_code == 302
    first.refresh_from_db()
    assert first.middleware == "webtob" and EnvSchema.objects.count() == 2
    entries = AuditEntry.objects.filter(action="cmdb.env_schema_import").order_by("pk")
    assert [e.payload["replaced"] for e in entries] == [0, 1]

    policy = f"system,ssh_auth,port_min,port_max\n{one.system.code},key,22,2222\n"
    assert upload(admin_client, "securitypolicy", policy).status_code == 302
    saved = SecurityPolicy.objects.get(system=one.system)
    assert (saved.ssh_auth, saved.port_min, saved.port_max) == ("key", 22, 2222)
    assert AuditEntry.objects.filter(action="cmdb.security_policy_import").exists()
    template = admin_client.get(reverse("admin:cmdb_envschema_template")).content.decode()
    assert template.startswith("server_id,os_type,os_version,kernel,init_system,service_name,")


def test_bad_rows_are_named_by_line_and_field_and_nothing_is_written(admin_client):
    system = SystemFactory(code="SYS-A")
    ServerFactory(server_id="was-01", system=system)
    ServerFactory(server_id="was-02", system=system)
    schemas = (
        "server_id,init_system,start_script,service_name\n"
        "was-01,sysv,/etc/init.d/tomcat,\n"
        "was-02,sysv,/etc/init.d/tomcat;reboot,\n"
        "was-09,was,,\n"
        "was-01,upstart,,tomcat$(id)\n"
    )
    response = upload(admin_client, "envschema", schemas)
    assert response.status_code == 200
    errors = {(e.row, e.field) for e in response.context["result"].errors}
    assert errors == {(3, "start_script"), (4, "server_id"), (5, "server_id")}
    assert not EnvSchema.objects.exists()

    policies = "system,ssh_auth,port_min,port_max\nSYS-A,key,abc,22\nSYS-A,telnet,2200,22\n"
    result = csv_import.import_profiles(UserFactory(role="admin"), csv_import.SECURITY_POLICY, policies)
    assert {(e.row, e.field) for e in result.errors} == {(2, "port_min"), (3, "system")}
    single = "system,ssh_auth,port_min,port_max\nSYS-A,telnet,2200,22\n"
    result = csv_import.import_profiles(UserFactory(role="admin"), csv_import.SECURITY_POLICY, single)
    assert {(e.row, e.field) for e in result.errors} == {(2, "ssh_auth"), (2, "port_max")}
    assert not SecurityPolicy.objects.exists()
    assert not AuditEntry.objects.filter(action__in=["cmdb.env_schema_import", "cmdb.security_policy_import"])


def test_rows_outside_the_importers_systems_are_unknown_and_other_roles_get_403(client):
    mine, theirs = ServerFactory(server_id="own-01"), ServerFactory(server_id="other-01")
    supervisor = SystemOwnerFactory(system=mine.system).supervisor
    supervisor.is_staff = True
    supervisor.save()
    text = "server_id,middleware\nown-01,tomcat\nother-01,tomcat\n"
    result = csv_import.import_profiles(supervisor, csv_import.ENV_SCHEMA, text)
    assert [(e.row, e.field, e.message) for e in result.errors] == [(3, "server_id", "unknown server 'other-01'")]
    assert not EnvSchema.objects.exists()

    client.force_login(supervisor)
    assert upload(client, "envschema", "server_id,middleware\nown-01,tomcat\n").status_code == 403
    assert upload(client, "securitypolicy", f"system\n{mine.system.code}\n").status_code == 403
    assert not EnvSchema.objects.exists() and not SecurityPolicy.objects.exists()
    assert theirs.pk
