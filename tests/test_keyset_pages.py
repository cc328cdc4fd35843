"""Deep pages by keyset: the task search, the task API, the inbox and the audit console page
by where the last page ended, never skip or repeat a row, go back with `after`, and refuse
a position that is not one, naming the parameter."""

from __future__ import annotations

import datetime as dt
import re

import pytest
from django.db import connection
from django.utils import timezone
from rest_framework.authtoken.models import Token

import audit
from audit.models import AuditEntry
from governance import queries
from governance.models import Notification, OpsTask
from tests.factories import governance_world

pytestmark = pytest.mark.django_db

NEXT = re.compile(r'<a rel="next" href="\?([^"]*)"')
PREV = re.compile(r'<a rel="prev" href="\?([^"]*)"')


def _tasks(world, count: int) -> list[str]:
    """``count`` visible tasks, several sharing one created_at (the id breaks the tie)."""
    base = timezone.now() - dt.timedelta(days=30)
    ids = []
    for i in range(count):
        task = OpsTask.objects.create(
            task_id=f"OPS-20260101-{i:04d}", category="MAINTENANCE", sub_type="MEMORY_CHECK", title=f"점검 {i}",
            system=world.system, requester=world.requester, risk="LOW", created_at=base + dt.timedelta(hours=i // 3),
        )  # fmt: skip
        ids.append(task.task_id)
    return ids


def _walk(client, url: str, size_hint: int) -> tuple[list[str], list[str]]:
    """Follow the "다음" links from the first page; returns the task ids and each page's query."""
    seen, queries_used, query = [], [], url.split("?", 1)[1]
    for _ in range(size_hint):
        page = client.get(f"{url.split('?', 1)[0]}?{query.replace('&amp;', '&')}")
        assert page.status_code == 200
        seen += [t.task_id for t in page.context["page"].object_list]
        queries_used.append(query)
        found = NEXT.search(page.content.decode())
        if not found:
            break
        query = found.group(1)
    return seen, queries_used


def test_search_pages_by_keyset_without_gaps_or_repeats_and_goes_back(client):
    world = governance_world()
    ids = _tasks(world, 2 * queries.TASKS_PER_PAGE + 7)
    client.force_login(world.owner)
    seen, used = _walk(client, "/console/search/?q=점검", 10)
    assert seen == sorted(ids, key=lambda t: (OpsTask.objects.get(task_id=t).created_at, t), reverse=True)
    assert len(used) == 3 and all("page=" not in q for q in used)
    last = client.get("/console/search/?" + used[-1].replace("&amp;", "&"))
    back = PREV.search(last.content.decode()).group(1).replace("&amp;", "&")
    previous = client.get("/console/search/?" + back)
    assert [t.task_id for t in previous.context["page"].object_list] == seen[50:100]
    assert "50건" not in last.content.decode() and f"{len(ids)}건" in last.content.decode()


def test_a_bad_position_is_refused_naming_it_and_the_first_page_shown(client):
    world = governance_world()
    _tasks(world, 3)
    client.force_login(world.owner)
    for url in ("/console/search/?q=점검&before=1;drop", "/console/inbox/?after=12.x"):
        response = client.get(url)
        param = "before" if "before" in url else "after"
        assert response.status_code == 400, url
        assert f"{param}: 페이지 위치를 읽을 수 없어 첫 페이지를 보여 줍니다." in response.content.decode()
    client.force_login(world.auditor)
    audit_page = client.get("/audit/?before=-5")
    assert audit_page.status_code == 400 and audit_page.context["page"].object_list[0].seq == AuditEntry.objects.count()
    assert OpsTask.objects.count() == 3


def test_the_audit_console_pages_by_seq_with_a_filter(client):
    world = governance_world()
    for i in range(120):
        audit.record("kim", "test.page" if i % 2 else "test.other", task=f"T{i}")
    client.force_login(world.auditor)
    seqs = []
    query = "action=test.page"
    for _ in range(5):
        page = client.get(f"/audit/?{query}")
        seqs += [e.seq for e in page.context["page"]]
        found = NEXT.search(page.content.decode())
        if not found:
            break
        query = found.group(1).replace("&amp;", "&")
    assert seqs == list(AuditEntry.objects.filter(action="test.page").order_by("-seq").values_list("seq", flat=True))
    assert len(seqs) == 60


def test_the_task_api_pages_by_cursor_and_refuses_a_bad_one(client):
    world = governance_world()
    ids = _tasks(world, 23)
    token = Token.objects.get_or_create(user=world.owner)[0].key
    headers = {"HTTP_AUTHORIZATION": f"Token {token}"}
    seen, url = [], "/api/v1/tasks/?limit=10"
    while url:
        body = client.get(url, **headers).json()
        assert "count" not in body  # no count of every visible task on every page
        seen += [t["task_id"] for t in body["results"]]
        url = body["next"]
    assert sorted(seen) == sorted(ids) and len(seen) == len(set(seen)) == 23
    bad = client.get("/api/v1/tasks/", {"cursor": "bz0xJnI9eA=="}, **headers)  # "o=1&r=x"
    assert bad.status_code == 400 and "cursor" in bad.json()


def test_the_inbox_is_bounded_and_pages_back_and_forth(client):
    world = governance_world()
    moment = timezone.now()
    Notification.objects.bulk_create(
        [
            Notification(user=world.owner, message=f"알림 {i}", created_at=moment - dt.timedelta(minutes=i))
            for i in range(75)
        ]
    )
    client.force_login(world.owner)
    first = client.get("/console/inbox/")
    assert len(first.context["page"].object_list) == queries.TASKS_PER_PAGE
    second = client.get("/console/inbox/?" + NEXT.search(first.content.decode()).group(1).replace("&amp;", "&"))
    assert [n.message for n in second.context["page"].object_list] == [f"알림 {i}" for i in range(50, 75)]


@pytest.mark.parametrize(
    "index,where",
    [("task_created_id", {}), ("task_system_created", {"system_id": 1})],
)
def test_a_deep_task_page_is_one_index_range_without_a_sort(index, where):
    if connection.vendor != "sqlite":
        pytest.skip("EXPLAIN QUERY PLAN wording is SQLite's")
    page = queries.task_page(OpsTask.objects.filter(**where), {"before": "1764000000000000.500"})
    assert page.object_list == []
    qs = OpsTask.objects.filter(**where).filter(created_at__lte=timezone.now()).order_by("-created_at", "-pk")[:51]
    sql, params = qs.query.sql_with_params()
    with connection.cursor() as cursor:
        cursor.execute("EXPLAIN QUERY PLAN " + sql, params)
        plan = " / ".join(row[-1] for row in cursor.fetchall())
    assert f"USING INDEX {index}" in plan and "TEMP B-TREE" not in plan, plan
