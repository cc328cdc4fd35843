from __future__ import annotations

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from audit.models import AuditEntry
from cmdb.models import Server
from tests.factories import InstitutionFactory, ServerFactory, SystemFactory

CHANGELIST = reverse("admin:cmdb_server_changelist")


def make_servers(n: int, **system_kwargs) -> None:
    system = SystemFactory(**system_kwargs)
    Server.objects.bulk_create(
        Server(
            server_id=f"bulk-{system.code}-{i:05d}", system=system, hostname=f"h{i}", ip=f"10.1.{i // 250}.{i % 250}"
        )
        for i in range(n)
    )


def changelist_queries(client, query: str = "") -> int:
    with CaptureQueriesContext(connection) as ctx:
        response = client.get(CHANGELIST + query)
    assert response.status_code == 200
    return len(ctx.captured_queries)


def test_query_count_does_not_grow_with_the_table(admin_client, django_assert_max_num_queries):
    make_servers(100)
    small = changelist_queries(admin_client)
    make_servers(900)
    large = changelist_queries(admin_client)
    assert large == small
    with django_assert_max_num_queries(small):
        admin_client.get(CHANGELIST + "?tier=2&os=linux")
    with django_assert_max_num_queries(small):
        admin_client.get(CHANGELIST + "?p=5")


def test_filters_by_institution_system_tier_and_os(admin_client):
    moef = InstitutionFactory(code="MOEF", name="기획재정부", tier=1)
    moef.set_aliases(["기재부"])
    moef.save()
    budget = SystemFactory(code="BUDGET", institution=moef)
    other = SystemFactory(code="OTHER", institution=InstitutionFactory(tier=3))
    ServerFactory(server_id="budget-was1", system=budget, os_type="aix")
    ServerFactory(server_id="other-was1", system=other)

    def listed(query: str) -> set[str]:
        response = admin_client.get(CHANGELIST + query)
        return {s.server_id for s in response.context["cl"].result_list}

    assert listed(f"?institution={moef.pk}") == {"budget-was1"}
    assert listed(f"?system={other.pk}") == {"other-was1"}
    assert listed("?tier=1") == {"budget-was1"}
    assert listed("?tier=3") == {"other-was1"}
    assert listed("?os=aix") == {"budget-was1"}
    assert listed("?q=기획재정부") == {"budget-was1"}
    response = admin_client.get(reverse("admin:cmdb_institution_changelist") + "?q=기재부")
    assert [i.code for i in response.context["cl"].result_list] == ["MOEF"]


def test_admin_shows_the_seed_table_names(admin_client):
    body = admin_client.get(reverse("admin:index")).content.decode()
    for name in ["TB_INSTITUTION", "TB_SYSTEM", "TB_SERVER_INFO", "TB_SYSTEM_OWNER", "TB_CREDENTIAL"]:
        assert name in body


def test_server_edit_is_validated_and_audited(admin_client):
    server = ServerFactory(server_id="edit-me")
    url = reverse("admin:cmdb_server_change", args=[server.pk])
    form = {
        "server_id": "edit-me",
        "system": server.system_id,
        "hostname": "new-host",
        "ip": server.ip,
        "os_type": "linux",
        "active": "on",
        "ssh_port": 22,
        "rolling_group": 2,
        "health_url": "ftp://nope",
    }
    bad = admin_client.post(url, form)
    assert bad.status_code == 200 and "health_url" in bad.context["adminform"].form.errors
    form["health_url"] = "http://10.0.0.1:8080/health"
    assert admin_client.post(url, form).status_code == 302
    server.refresh_from_db()
    assert server.hostname == "new-host" and server.rolling_group == 2
    entry = AuditEntry.objects.get(action="cmdb.server_change")
    assert entry.target == "edit-me" and {"hostname", "rolling_group", "health_url"} <= set(entry.payload["changed"])


@pytest.mark.parametrize("page", ["institution", "system", "systemowner", "credential", "healthcriteria"])
def test_every_console_list_opens(admin_client, page):
    assert admin_client.get(reverse(f"admin:cmdb_{page}_changelist")).status_code == 200
    assert admin_client.get(reverse(f"admin:cmdb_{page}_add")).status_code == 200
