"""A page's number of queries does not grow with the data.

Every page a person pages through is read with a few data and again with several times
more: the query count must be the same. A serializer field or template attribute that is
read without select_related/prefetch_related (an N+1) makes the second count larger.
"""

from __future__ import annotations

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from rest_framework.authtoken.models import Token

from governance import services
from governance.models import ApprovalStep, Notification, OpsTask, Routing
from tests.factories import UserFactory, governance_world

pytestmark = pytest.mark.django_db


def _file(world, count: int, django_capture_on_commit_callbacks) -> None:
    """Tasks filed through the product, each with a second, escalated step decided by the
    deputy (so every step user field is filled) and a notification to the owner."""
    for i in range(count):
        with django_capture_on_commit_callbacks(execute=False):
            task = services.submit_task(
                world.requester,
                system=world.system,
                sub_type="MEMORY_CHECK",
                title=f"메모리 점검 {i}",
                targets=world.servers,
            )
        ApprovalStep.objects.create(
            task=task,
            step_order=task.steps.count() + 1,
            role="owner",
            status="A",
            routing=Routing.ESCALATED,
            assigned_to=world.owner,
            original_owner=world.owner,
            actual_approver=world.deputy,
        )
        OpsTask.objects.filter(pk=task.pk).update(current_approver=world.owner)
        Notification.objects.create(user=world.owner, task=task, message=f"알림 {i}")


def _pages(world) -> list[tuple[str, str]]:
    from audit.models import AuditEntry
    from audit.paging import EPOCH, MICROSECOND

    first = OpsTask.objects.order_by("pk").first()
    task = first.task_id
    # Deep pages by keyset: everything older than the oldest task / the newest entry.
    tasks_before = f"{(first.created_at - EPOCH) // MICROSECOND + 1}.{first.pk}"
    note = Notification.objects.order_by("created_at", "pk").last()
    notes_before = f"{(note.created_at - EPOCH) // MICROSECOND}.{note.pk}"
    seq_before = AuditEntry.objects.order_by("-seq").values_list("seq", flat=True).first()
    step = services.my_approvals(world.owner).order_by("sla_deadline", "pk").first()
    steps_before = f"{(step.sla_deadline - EPOCH) // MICROSECOND}.{step.pk}"
    return [
        ("owner", f"/console/approvals/?before={steps_before}"),
        ("owner", f"/console/search/?q=점검&before={tasks_before}"),
        ("owner", f"/console/inbox/?before={notes_before}"),
        ("auditor", f"/audit/?before={seq_before}"),
        ("auditor", f"/audit/?action=task.submitted&before={seq_before}"),
        ("owner", "/api/v1/tasks/?limit=1"),
        ("owner", "/console/"),
        ("owner", "/console/tiles/"),
        ("owner", "/console/search/?q=점검"),
        ("owner", "/console/search/?person=deputy"),
        ("owner", "/console/approvals/"),
        ("owner", "/console/inbox/"),
        ("owner", "/console/statistics/"),
        ("owner", f"/console/tasks/{task}/"),
        ("requester", "/console/"),
        ("requester", "/console/search/?q=점검"),
        ("pm", "/console/"),
        ("pm", "/console/statistics/"),
        ("auditor", "/audit/"),
        ("auditor", "/audit/?action=task.submitted"),
        ("auditor", f"/audit/?task={task}"),
        ("owner", "/api/v1/tasks/"),
        ("owner", "/api/v1/tasks/?person=deputy"),
        ("requester", "/api/v1/tasks/"),
        ("pm", "/api/v1/tasks/"),
        ("owner", f"/api/v1/tasks/{task}/"),
        ("owner", f"/api/v1/task/history/{task}"),
    ]


def _count(client, world, role: str, url: str) -> int:
    user = getattr(world, role)
    headers = {}
    if url.startswith("/api/"):
        headers["HTTP_AUTHORIZATION"] = f"Token {Token.objects.get_or_create(user=user)[0].key}"
    else:
        client.force_login(user)
    with CaptureQueriesContext(connection) as queries:
        response = client.get(url, **headers)
    assert response.status_code == 200, (role, url, response.status_code)
    return len(queries)


def test_no_page_makes_more_queries_with_more_data(client, django_capture_on_commit_callbacks):
    world = governance_world()
    _file(world, 2, django_capture_on_commit_callbacks)
    # Compared by position: a deep page's position (in its URL) moves with the data.
    small = [((role, url), _count(client, world, role, url)) for role, url in _pages(world)]
    _file(world, 10, django_capture_on_commit_callbacks)
    large = [((role, url), _count(client, world, role, url)) for role, url in _pages(world)]
    grown = {page: (before, after) for (page, before), (_, after) in zip(small, large, strict=True) if after > before}
    assert not grown, f"query count grows with the data (2 tasks -> 12 tasks): {grown}"


def test_approvals_page_is_bounded(client, django_capture_on_commit_callbacks):
    """The approvals list is paged by keyset, nearest deadline first: the first page holds
    one page of cards, "다음" reads the rest, "이전" comes back, and no page counts the list."""
    from governance import views

    world = governance_world()
    _file(world, views.APPROVALS_PER_PAGE + 3, django_capture_on_commit_callbacks)
    client.force_login(world.owner)
    everything = list(services.my_approvals(world.owner).order_by("sla_deadline", "pk"))
    assert len(everything) > views.APPROVALS_PER_PAGE
    with CaptureQueriesContext(connection) as queries:
        first = client.get("/console/approvals/")
    assert not [q["sql"] for q in queries.captured_queries if "COUNT(" in q["sql"] and "APPROVAL_FLOW" in q["sql"]]
    assert list(first.context["steps"]) == everything[: views.APPROVALS_PER_PAGE]
    older = first.context["page"].older
    assert f"before={older}" in first.content.decode()
    rest = client.get(f"/console/approvals/?before={older}")
    assert list(rest.context["steps"]) == everything[views.APPROVALS_PER_PAGE :]
    assert not rest.context["page"].older
    back = client.get(f"/console/approvals/?after={rest.context['page'].newer}")
    assert list(back.context["steps"]) == everything[: views.APPROVALS_PER_PAGE]
    bad = client.get("/console/approvals/?before=yesterday")
    assert bad.status_code == 400 and list(bad.context["steps"]) == everything[: views.APPROVALS_PER_PAGE]
    assert "before: 페이지 위치를 읽을 수 없어" in bad.content.decode()
    other = UserFactory(username="lead9", role="team_lead")
    client.force_login(other)
    assert len(client.get("/console/approvals/").context["steps"]) == 0


@pytest.mark.parametrize("column", ["action", "institution", "actor", "task"])
def test_audit_console_filters_page_off_an_index_without_sorting(column):
    """A filtered audit page, newest first, deep in the list: read from the (column, seq)
    index, with no sort of every matching row."""
    from audit.models import AuditEntry

    if connection.vendor != "sqlite":
        pytest.skip("EXPLAIN QUERY PLAN wording is SQLite's")
    sql, params = AuditEntry.objects.filter(**{column: "x"}).order_by("-seq")[50_000:50_050].query.sql_with_params()
    with connection.cursor() as cursor:
        cursor.execute("EXPLAIN QUERY PLAN " + sql, params)
        plan = " / ".join(row[-1] for row in cursor.fetchall())
    assert f"USING INDEX audit_{column}_seq" in plan and "TEMP B-TREE" not in plan, plan


def test_admin_audit_search_matches_whole_values_off_the_indexes(client):
    """The admin's audit search is an exact match on indexed columns: found by task id or
    actor, not by a fragment (a fragment would read the whole log)."""
    import audit
    from audit.models import AuditEntry

    admin_user = UserFactory(username="admin9", role="admin", is_staff=True, is_superuser=True)
    for i in range(3):
        audit.record(f"kim{i}", "test.step", task=f"OPS-20260101-{i:05d}", payload={"institution": "MOEF"})
    client.force_login(admin_user)
    found = client.get("/admin/audit/auditentry/", {"q": "OPS-20260101-00001"})
    assert [e.task for e in found.context["cl"].result_list] == ["OPS-20260101-00001"]
    assert list(client.get("/admin/audit/auditentry/", {"q": "kim2"}).context["cl"].result_list) == list(
        AuditEntry.objects.filter(actor="kim2")
    )
    assert not client.get("/admin/audit/auditentry/", {"q": "20260101"}).context["cl"].result_list
