"""The admin's audit lists stay bounded as the log grows: the same number of queries with
a few entries and with many, no scan for a filter's distinct values, no COUNT(*) over the
whole log, and a search that matches one whole value on one indexed column."""

from __future__ import annotations

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

import audit
from audit.admin import AuditEntryAdmin, BoundedCountPaginator, search_column
from audit.models import AuditEntry
from tests.factories import UserFactory

pytestmark = pytest.mark.django_db

PAGES = [
    "/admin/audit/auditentry/",
    "/admin/audit/auditentry/?action=task.transition",
    "/admin/audit/auditentry/?q=OPS-20260101-001",
    "/admin/audit/auditentry/?q=행위자:kim1",
    "/admin/audit/auditentry/?q=기관:MOEF&action=task.transition",
    "/admin/audit/auditcheckpoint/",
]


def _append(count: int, start: int = 0) -> None:
    for i in range(start, start + count):
        audit.record(
            f"kim{i % 3}",
            "task.transition" if i % 2 else "approval.decided",
            task=f"OPS-20260101-{i % 4:03d}",
            payload={"institution": "MOEF" if i % 2 else "MOIS"},
        )


def _queries(client, url: str) -> list[str]:
    with CaptureQueriesContext(connection) as captured:
        assert client.get(url).status_code == 200
    return [q["sql"] for q in captured.captured_queries]


def test_the_admin_audit_lists_read_the_same_queries_at_any_size(client, settings):
    settings.AUDIT_CHECKPOINT_EVERY = 10
    client.force_login(UserFactory(username="admin9", role="admin", is_staff=True, is_superuser=True))
    _append(6)
    few = {url: _queries(client, url) for url in PAGES}
    _append(120, start=6)
    for url in PAGES:
        many = _queries(client, url)
        assert len(many) == len(few[url]), url
        log_reads = [sql for sql in many if "TB_AUDIT" in sql]
        assert not [sql for sql in log_reads if "DISTINCT" in sql.upper()], url
        counts = [sql for sql in log_reads if "COUNT(" in sql.upper()]
        assert counts and all("LIMIT" in sql.upper() for sql in counts), counts


def test_the_count_is_bounded_and_the_pages_stay_whole(client, monkeypatch):
    monkeypatch.setattr(BoundedCountPaginator, "COUNT_UP_TO", 30)
    monkeypatch.setattr(AuditEntryAdmin, "list_per_page", 10)
    client.force_login(UserFactory(username="admin9", role="admin", is_staff=True, is_superuser=True))
    _append(45)
    cl = client.get("/admin/audit/auditentry/").context["cl"]
    assert cl.result_count == 30 and cl.paginator.num_pages == 3
    newest = list(AuditEntry.objects.order_by("-seq")[:10])
    assert list(cl.result_list) == newest  # newest first, one page of ten
    third = client.get("/admin/audit/auditentry/", {"p": 3}).context["cl"]
    assert list(third.result_list) == list(AuditEntry.objects.order_by("-seq")[20:30])


def test_the_search_names_one_column_and_matches_whole_values(client):
    client.force_login(UserFactory(username="admin9", role="admin", is_staff=True, is_superuser=True))
    _append(12)

    def found(term: str) -> list[int]:
        return [e.seq for e in client.get("/admin/audit/auditentry/", {"q": term}).context["cl"].result_list]

    def where(**lookup) -> list[int]:
        return list(AuditEntry.objects.filter(**lookup).order_by("-seq").values_list("seq", flat=True))

    assert found("OPS-20260101-001") == where(task="OPS-20260101-001") != []
    assert found("kim1") == found("행위자: kim1") == where(actor="kim1") != []
    assert found("기관:MOEF") == where(institution="MOEF") != []
    assert found("행위:approval.decided") == where(action="approval.decided") != []
    assert found("작업:OPS-20260101-002") == where(task="OPS-20260101-002") != []
    assert found("kim") == found("20260101") == found("OPS-2026") == []  # no fragments
    assert search_column("모름:x") == ("actor", "모름:x")  # an unknown prefix is part of the value
    page = client.get("/admin/audit/auditentry/")
    assert "행위자:이름" in page.content.decode()  # the help text says how to search


def test_the_action_filter_offers_the_products_actions_not_the_columns_values(client):
    client.force_login(UserFactory(username="admin9", role="admin", is_staff=True, is_superuser=True))
    audit.record("kim", "zz.unlisted")
    page = client.get("/admin/audit/auditentry/")
    choices = [c["display"] for spec in page.context["cl"].filter_specs for c in spec.choices(page.context["cl"])]
    assert "zz.unlisted" not in choices and "상태 변경" in choices
    listed = client.get("/admin/audit/auditentry/", {"action": "task.transition"}).context["cl"]
    assert all(e.action == "task.transition" for e in listed.result_list)
