from __future__ import annotations

import io

from django.urls import reverse

from audit.models import AuditEntry
from cmdb.csv_import import COLUMNS, import_servers
from cmdb.models import Server
from tests.factories import ServerFactory, SystemFactory

HEADER = "server_id,system,hostname,ip,os_type,ssh_port,rolling_group,canary\n"


def csv_rows(system_code: str, n: int, start: int = 0) -> str:
    lines = [HEADER]
    for i in range(start, start + n):
        lines.append(
            f"srv-{i:05d},{system_code},h{i}.go.kr,10.{i // 65000}.{i // 250 % 250}.{i % 250 + 1},linux,22,"
            f"{i % 3 + 1},{'yes' if i == 0 else 'no'}\n"
        )
    return "".join(lines)


def upload(client, text: str | bytes, name: str = "servers.csv"):
    data = text.encode() if isinstance(text, str) else text
    handle = io.BytesIO(data)
    handle.name = name
    return client.post(reverse("admin:cmdb_server_import"), {"file": handle})


def test_bad_ip_duplicate_id_and_unknown_system_are_all_reported_and_nothing_is_imported(admin_client):
    system = SystemFactory(code="SYS-A")
    ServerFactory(server_id="existing-1", system=system)
    text = (
        HEADER
        + "ok-1,SYS-A,ok1,10.0.0.1,linux,22,1,no\n"  # row 2: fine
        + "bad-ip,SYS-A,h,10.0.0.300,linux,22,1,no\n"  # row 3: bad IP
        + "ok-2,SYS-A,ok2,10.0.0.2,linux,22,1,no\n"  # row 4: fine
        + "ok-1,SYS-A,dup,10.0.0.3,linux,22,1,no\n"  # row 5: duplicate of row 2
        + "lost,NO-SUCH,h,10.0.0.4,linux,22,1,no\n"  # row 6: unknown system
    )
    response = upload(admin_client, text)

    assert response.status_code == 200
    result = response.context["result"]
    assert result.error_rows == [3, 5, 6]
    by_row = {e.row: e for e in result.errors}
    assert by_row[3].field == "ip"
    assert by_row[5].field == "server_id" and "row 2" in by_row[5].message
    assert by_row[6].field == "system" and "NO-SUCH" in by_row[6].message
    body = response.content.decode()
    assert "아무것도 가져오지 않았습니다" in body and 'class="row-number">6<' in body
    assert set(Server.objects.values_list("server_id", flat=True)) == {"existing-1"}
    assert not AuditEntry.objects.filter(action="cmdb.server_import").exists()


def test_duplicate_against_the_database_and_bad_values_are_reported(admin_client):
    system = SystemFactory(code="SYS-B")
    ServerFactory(server_id="taken", system=system)
    text = (
        HEADER
        + "taken,SYS-B,h,10.0.0.1,linux,22,1,no\n"
        + "port,SYS-B,h,10.0.0.2,linux,70000,1,no\n"
        + "os,SYS-B,h,10.0.0.3,windows,22,1,no\n"
        + "flag,SYS-B,h,10.0.0.4,linux,22,1,maybe\n"
        + "bad id!,SYS-B,h,10.0.0.5,linux,22,1,no\n"
    )
    result = import_servers(None, text)
    fields = {(e.row, e.field) for e in result.errors}
    assert fields == {(2, "server_id"), (3, "ssh_port"), (4, "os_type"), (5, "canary"), (6, "server_id")}
    assert Server.objects.count() == 1


def test_a_thousand_rows_import_in_one_upload_and_are_audited(admin_client, cmdb_admin, django_assert_max_num_queries):
    SystemFactory(code="SYS-C")
    text = csv_rows("SYS-C", 1000)
    with django_assert_max_num_queries(60):  # bulk: the count does not grow with the rows
        response = upload(admin_client, text)
    assert response.status_code == 302, response.content[:2000]
    assert Server.objects.filter(system__code="SYS-C").count() == 1000
    assert Server.objects.get(server_id="srv-00000").canary is True
    entry = AuditEntry.objects.get(action="cmdb.server_import")
    assert entry.payload["rows"] == 1000 and entry.actor == cmdb_admin.username


def test_header_problems_and_cp949_files(admin_client):
    SystemFactory(code="SYS-D")
    missing = import_servers(None, "server_id,hostname\nx,y\n")
    assert missing.errors[0].row == 1 and "system" in missing.errors[0].message
    unknown = import_servers(None, "server_id,system,hostname,ip,colour\n")
    assert "colour" in unknown.errors[0].message
    assert import_servers(None, b"").errors
    # Korean Excel saves CSV as CP949; the Korean hostname must survive the round trip.
    korean = (HEADER + "kr-1,SYS-D,예산서버,10.0.0.9,linux,22,1,예\n").encode("cp949")
    response = upload(admin_client, korean)
    assert response.status_code == 302
    server = Server.objects.get(server_id="kr-1")
    assert server.hostname == "예산서버" and server.canary is True


def test_row_with_too_many_cells_is_named(admin_client):
    SystemFactory(code="SYS-E")
    result = import_servers(None, HEADER + "a,SYS-E,h,10.0.0.1,linux,22,1,no,extra\n")
    assert [(e.row, "cells" in e.message) for e in result.errors] == [(2, True)]


def test_template_lists_every_column_and_a_team_lead_cannot_import(admin_client, client):
    template = admin_client.get(reverse("admin:cmdb_server_template"))
    assert template.content.decode().splitlines()[0].split(",") == COLUMNS
    changelist = admin_client.get(reverse("admin:cmdb_server_changelist"))
    assert reverse("admin:cmdb_server_import") in changelist.content.decode()

    from tests.factories import UserFactory

    lead = UserFactory(role="team_lead", is_staff=True)
    client.force_login(lead)
    assert upload(client, HEADER).status_code == 403
