"""The auditor console and API, and the global stop after a detected break."""

from __future__ import annotations

import pytest
from django.db import connection
from rest_framework.authtoken.models import Token

from audit.models import AuditEntry
from audit.signals import chain_broken
from tests.factories import UserFactory


def _break_entry(seq: int) -> None:
    with connection.cursor() as cursor:
        cursor.execute("UPDATE \"TB_AUDIT_LOG\" SET command = 'tampered' WHERE seq = %s", [seq])


@pytest.fixture
def auditor(roles):
    return UserFactory(username="auditor1", role="auditor")


def test_console_pages_are_for_auditors_admins_and_superusers_only(client, chain, auditor, roles):
    for url in ("/audit/", "/audit/verify/", "/audit/export/"):
        assert client.get(url).status_code == 302  # to the login page
    client.force_login(UserFactory(username="req1", role="site_manager"))
    assert client.get("/audit/").status_code == 403
    assert client.post("/audit/verify/").status_code == 403
    client.force_login(UserFactory(username="adm1", role="admin"))
    assert client.get("/audit/").status_code == 200
    client.force_login(auditor)
    page = client.get("/audit/?institution=MOEF").content.decode()
    assert "test.step" in page and "MOIS" not in page


def test_verify_button_runs_verification_and_is_audited(client, chain, auditor):
    client.force_login(auditor)
    page = client.get("/audit/verify/").content.decode()
    assert "무결성 검증" in page
    entries = AuditEntry.objects.count()  # the chain, plus the login that force_login recorded
    page = client.post("/audit/verify/").content.decode()
    assert 'id="verify-result" class="ok"' in page and f"항목 {entries}건" in page
    _break_entry(9)
    page = client.post("/audit/verify/").content.decode()
    assert 'class="broken"' in page and "seq 9" in page and "modified" in page
    runs = AuditEntry.objects.filter(action="audit.verify", actor="auditor1").values_list("result_code", flat=True)
    assert list(runs) == ["ok", "broken:modified"]


def test_export_form_downloads_and_rejects_bad_input(client, chain, auditor):
    client.force_login(auditor)
    response = client.get("/audit/export/", {"format": "csv", "institution": "MOEF", "since": "2000-01-01"})
    assert response.status_code == 200 and response["Content-Disposition"].startswith("attachment")
    body = b"".join(response.streaming_content).decode("utf-8-sig")
    assert body.count("\n") == 1 + 12 + 1  # column header, 12 MOEF entries, trailer
    bad = client.get("/audit/export/", {"format": "exe", "since": "2026-02-01", "until": "2026-01-01"})
    assert bad.status_code == 400 and "형식" in bad.content.decode()
    export_runs = AuditEntry.objects.filter(action="audit.export")
    assert export_runs.count() == 1 and export_runs[0].payload["count"] == 12


def test_rest_verify_and_export_with_token(client, chain, auditor):
    token = Token.objects.create(user=auditor)
    headers = {"HTTP_AUTHORIZATION": f"Token {token.key}"}
    report = client.get("/api/v1/audit/verify", **headers).json()
    assert report["ok"] is True and report["entries"] == AuditEntry.objects.count() - 1  # minus this run
    response = client.get("/api/v1/audit/export", {"format": "jsonl", "task": "OPS-20260101-002"}, **headers)
    assert response.status_code == 200 and response["Content-Type"] == "application/x-ndjson"
    assert len(b"".join(response.streaming_content).splitlines()) == 1 + 12 + 1
    error = client.get("/api/v1/audit/export", {"format": "zip"}, **headers)
    assert error.status_code == 400 and "format" in error.json()
    other = Token.objects.create(user=UserFactory(username="dev1", role="site_manager"))
    denied = client.get("/api/v1/audit/verify", HTTP_AUTHORIZATION=f"Token {other.key}")
    assert denied.status_code == 403 and "detail" in denied.json()


def test_admin_is_read_only(client, chain):
    client.force_login(UserFactory(username="root", is_superuser=True, is_staff=True))
    entry = AuditEntry.objects.get(seq=1)
    assert client.get("/admin/audit/auditentry/").status_code == 200
    assert client.get("/admin/audit/auditentry/add/").status_code == 403
    client.post(f"/admin/audit/auditentry/{entry.pk}/change/", {"command": "changed"})
    client.post(f"/admin/audit/auditentry/{entry.pk}/delete/", {"post": "yes"})
    assert AuditEntry.objects.get(seq=1).command == "echo 0"


def test_break_sends_chain_broken_signal(chain):
    from audit import services

    received = []

    def receiver(sender, report, **kwargs):
        received.append(report)

    chain_broken.connect(receiver)
    try:
        _break_entry(4)
        services.run_verification("tester")
    finally:
        chain_broken.disconnect(receiver)
    assert len(received) == 1 and received[0].first_broken_seq == 4 and received[0].kind == "modified"


def test_global_stop_after_a_break_blocks_new_execution_until_an_admin_acknowledges(chain, roles):
    from audit import services
    from governance import control
    from governance.errors import Forbidden

    assert control.execution_allowed()
    _break_entry(12)
    report = services.run_verification(None, source="schedule")
    assert not report.ok
    stop = control.global_stop_state()
    assert stop is not None and stop.requires_ack and "seq 12" in stop.reason
    assert not control.execution_allowed()

    pm = UserFactory(username="pm1", role="pm")
    with pytest.raises(Forbidden):
        control.release_global_stop(pm, "not mine to clear")
    assert not control.execution_allowed()

    admin = UserFactory(username="admin1", role="admin")
    control.release_global_stop(admin, "investigated; restored from backup")
    assert control.execution_allowed()
    ack = AuditEntry.objects.get(action="killswitch.break_acknowledged")
    assert ack.actor == "admin1" and ack.payload["comment"] == "investigated; restored from backup"
    assert AuditEntry.objects.filter(action="killswitch.global_on").exists()
