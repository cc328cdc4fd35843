"""Every console page: 200 for a permitted user, 403/404/redirect for others; console
actions go through the services and bad input changes nothing; no remote assets."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from django.urls import reverse

from audit.models import AuditEntry
from cmdb.models import SystemOwner
from governance import services
from governance.models import ApprovalStep, GlobalStop, Notification, OpsTask, Status, StepStatus
from tests.factories import file_task

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def task(console_world, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=False):
        return file_task(
            console_world, title="메모리 점검", targets=console_world.servers[:1], sr_number="SR-2026-0042"
        )


def login(client, user):
    client.force_login(user)
    return client


def page_urls(task_id: str) -> list[str]:
    return [
        reverse("console:dashboard"),
        reverse("console:search") + "?q=SR-2026",
        reverse("console:approvals"),
        reverse("console:task", args=[task_id]),
        reverse("console:owner_settings"),
        reverse("console:statistics"),
        reverse("console:inbox"),
    ]


def test_every_page_answers_the_lead_and_redirects_anonymous(client, console_world, task):
    for url in page_urls(task.task_id):
        anonymous = client.get(url)
        assert anonymous.status_code == 302 and anonymous["Location"].startswith("/accounts/login/"), url
    login(client, console_world.lead)
    for url in page_urls(task.task_id):
        response = client.get(url)
        assert response.status_code == 200, url
        assert b'lang="ko' in response.content  # Korean UI by default


def test_tiles_endpoint_counts_only_visible_tasks(client, console_world, task):
    login(client, console_world.lead)
    assert client.get(reverse("console:tiles")).json() == {"waiting": 1, "in_progress": 0, "done": 0, "failed": 0}
    login(client, console_world.outsider)
    assert client.get(reverse("console:tiles")).json()["waiting"] == 0


def test_outsiders_get_404_for_a_task_and_403_for_pm_pages(client, console_world, task):
    login(client, console_world.outsider)
    assert client.get(reverse("console:task", args=[task.task_id])).status_code == 404
    # Without the kill-switch permission the stop page is 403 for every id, so it confirms nothing.
    assert client.post(reverse("console:task_stop", args=[task.task_id]), {"reason": "x"}).status_code == 403
    assert client.get(reverse("console:validate", args=[task.task_id])).status_code == 403
    assert client.post(reverse("console:global_stop"), {"action": "engage", "reason": "x"}).status_code == 403
    assert not GlobalStop.objects.filter(engaged=True).exists()
    assert task.task_id not in client.get(reverse("console:dashboard")).content.decode()
    assert task.task_id not in client.get(reverse("console:search") + "?q=OPS").content.decode()


def test_lead_approves_from_my_approvals(client, console_world, task, django_capture_on_commit_callbacks):
    login(client, console_world.lead)
    step = services.my_approvals(console_world.lead).get(task=task)
    page = client.get(reverse("console:approvals")).content.decode()
    assert f'id="step-{step.pk}"' in page and "메모리 점검" in page
    with django_capture_on_commit_callbacks(execute=False):
        response = client.post(
            reverse("console:decide", args=[step.pk]), {"decision": "APPROVED", "comments": "좋습니다"}, follow=True
        )
    assert task.task_id in response.content.decode()
    step.refresh_from_db()
    task.refresh_from_db()
    assert step.status == StepStatus.APPROVED and step.actual_approver == console_world.lead
    assert step.comments == "좋습니다" and task.status == Status.APPROVED
    assert AuditEntry.objects.filter(task=task.task_id, action="approval.decided").count() == 1


def test_wrong_approver_and_bad_decision_change_nothing(client, console_world, task):
    step = services.my_approvals(console_world.lead).get(task=task)
    login(client, console_world.requester)  # the requester may not approve their own request
    # A site manager holds no decide permission: 403 before the step is even looked up.
    response = client.post(reverse("console:decide", args=[step.pk]), {"decision": "APPROVED"}, follow=True)
    assert response.status_code == 403
    login(client, console_world.lead)
    response = client.post(reverse("console:decide", args=[step.pk]), {"decision": "MAYBE"}, follow=True)
    assert "MAYBE" in response.content.decode()  # the choice error names the bad value
    response = client.post(reverse("console:decide", args=[999999]), {"decision": "APPROVED"}, follow=True)
    assert "999999" in response.content.decode()
    step.refresh_from_db()
    assert step.status == StepStatus.PENDING and OpsTask.objects.get(pk=task.pk).status == Status.PENDING_APPROVAL
    assert not AuditEntry.objects.filter(action="approval.decided").exists()


def test_task_page_shows_timeline_and_pm_stops_the_task(client, console_world, task):
    login(client, console_world.requester)
    page = client.get(reverse("console:task", args=[task.task_id])).content.decode()
    assert 'id="task-status"' in page and "승인 대기" in page and f'data-live-task="{task.task_id}"' in page
    assert "승인자 지정" in page and "lead" in page  # assignment from the audit chain, in the timeline
    assert "task-stop-form" not in page  # the requester holds no kill switch
    login(client, console_world.pm)
    assert "task-stop-form" in client.get(reverse("console:task", args=[task.task_id])).content.decode()
    client.post(reverse("console:task_stop", args=[task.task_id]), {"reason": "장애 대응 중"})
    task.refresh_from_db()
    assert task.status == Status.ABORTED and task.stop_reason == "장애 대응 중"


def test_global_stop_banner_on_every_page_then_release(client, console_world, task):
    login(client, console_world.pm)
    client.post(reverse("console:global_stop"), {"action": "engage", "reason": ""})
    assert not GlobalStop.objects.filter(engaged=True).exists()  # a stop without a reason is refused
    client.post(reverse("console:global_stop"), {"action": "engage", "reason": "감사 로그 점검"})
    assert GlobalStop.objects.get(id=1).engaged
    login(client, console_world.lead)
    for url in page_urls(task.task_id):
        assert 'id="global-stop-banner"' in client.get(url).content.decode(), url
    login(client, console_world.pm)
    client.post(reverse("console:global_stop"), {"action": "release"})
    assert not GlobalStop.objects.get(id=1).engaged
    assert 'id="global-stop-banner"' not in client.get(reverse("console:dashboard")).content.decode()


def test_pm_validation_page_renders_diff_and_decides(client, console_world, task, django_capture_on_commit_callbacks):
    OpsTask.objects.filter(pk=task.pk).update(
        status=Status.PENDING_PM_VALIDATION,
        result_package={
            "diff": "--- a/app.conf\n+++ b/app.conf\n@@ -1 +1 @@\n-port=8080\n+port=8081\n",
            "log": ["shutdown.sh exit 0", "startup.sh exit 0"],
            "health": [{"server": "was-1", "ok": True, "detail": "HTTP 200"}],
        },
    )
    login(client, console_world.lead)
    assert client.get(reverse("console:validate", args=[task.task_id])).status_code == 403
    login(client, console_world.pm)
    page = client.get(reverse("console:validate", args=[task.task_id])).content.decode()
    assert '<span class="del">-port=8080</span>' in page and '<span class="add">+port=8081</span>' in page
    assert "startup.sh exit 0" in page and "health-ok" in page
    url = reverse("console:validate", args=[task.task_id])
    response = client.post(url, {"verdict": "rework", "comments": ""})
    assert response.status_code == 200 and "지시 사항" in response.content.decode()
    assert OpsTask.objects.get(pk=task.pk).status == Status.PENDING_PM_VALIDATION
    with django_capture_on_commit_callbacks(execute=False):
        client.post(url, {"verdict": "approve", "comments": "확인"})
    assert OpsTask.objects.get(pk=task.pk).status == Status.COMPLETED


def test_owner_sets_deputy_and_away_only_for_own_systems(client, console_world, task):
    login(client, console_world.lead)
    page = client.get(reverse("console:owner_settings")).content.decode()
    assert "예산시스템" in page
    # the institution's PM can decide for the system, so may stand in (test_owner_pickers covers refusals)
    client.post(
        reverse("console:owner_settings"),
        {"system": console_world.system.pk, "deputy": console_world.pm.pk, "away": "on"},
        follow=True,
    )
    ownership = SystemOwner.objects.get(system=console_world.system)
    assert ownership.deputy == console_world.pm and not ownership.owner_is_active
    assert AuditEntry.objects.filter(action="owner.presence").exists()
    # the open owner step followed the owner's absence to the new deputy
    assert ApprovalStep.objects.get(task=task, step_order=1).assigned_to == console_world.pm
    login(client, console_world.outsider)
    assert "예산시스템" not in client.get(reverse("console:owner_settings")).content.decode()
    response = client.post(reverse("console:owner_settings"), {"system": console_world.system.pk, "away": ""})
    assert response.status_code == 404
    assert not SystemOwner.objects.get(system=console_world.system).owner_is_active


def test_search_by_sr_number_person_and_institution(client, console_world, task):
    login(client, console_world.lead)
    search = reverse("console:search")
    assert task.task_id in client.get(search + "?q=SR-2026-0042").content.decode()
    assert task.task_id in client.get(search + "?person=field").content.decode()
    assert task.task_id in client.get(search + f"?institution={console_world.inst.pk}").content.decode()
    assert task.task_id not in client.get(search + "?person=nobody-by-that-name").content.decode()
    assert client.get(search + "?institution=abc").status_code == 200  # bad filter: form error, no crash


def test_inbox_lists_and_marks_read(client, console_world, task):
    login(client, console_world.lead)
    assert Notification.objects.filter(user=console_world.lead, read_at__isnull=True).exists()
    page = client.get(reverse("console:inbox")).content.decode()
    assert task.task_id in page and 'id="unread-count"' in page
    client.post(reverse("console:inbox_read"))
    assert not Notification.objects.filter(user=console_world.lead, read_at__isnull=True).exists()


def test_statistics_page_ships_local_chart_library(client, console_world, task):
    login(client, console_world.pm)
    page = client.get(reverse("console:statistics")).content.decode()
    assert "/static/vendor/chartjs/chart.umd.js" in page and 'id="chart-data"' in page
    assert (REPO / "static/vendor/chartjs/chart.umd.js").stat().st_size > 100_000


REMOTE_ASSET = re.compile(
    r"""(?:src|href|action)\s*=\s*["']?\s*(?:https?:)?//"""  # <script src=...>, <link href=...>, forms
    r"""|url\(\s*["']?(?:https?:)?//|@import\s+["']?(?:https?:)?//""",  # CSS
    re.IGNORECASE,
)


def test_no_template_or_stylesheet_loads_remote_assets():
    files = [*REPO.glob("templates/**/*.html"), *REPO.glob("*/templates/**/*.html"), *REPO.glob("static/css/**/*.css")]
    assert any(f.name == "base.html" for f in files)
    offenders = [f"{f.relative_to(REPO)}: {m.group(0)}" for f in files for m in REMOTE_ASSET.finditer(f.read_text())]
    assert offenders == []


def test_language_switch_to_english_and_back(client, console_world, task):
    login(client, console_world.lead)
    assert "내 승인" in client.get(reverse("console:dashboard")).content.decode()
    client.post("/i18n/setlang/", {"language": "en", "next": "/console/"})
    page = client.get(reverse("console:task", args=[task.task_id])).content.decode()
    assert 'lang="en"' in page and "My approvals" in page and "Pending approval" in page
    client.post("/i18n/setlang/", {"language": "ko", "next": "/console/"})
    assert "내 승인" in client.get(reverse("console:dashboard")).content.decode()


def test_audit_link_only_for_audit_readers(client, console_world):
    from tests.factories import UserFactory

    login(client, console_world.lead)
    assert "/audit/" not in client.get(reverse("console:dashboard")).content.decode()
    login(client, UserFactory(username="auditor", role="auditor"))
    assert 'href="/audit/"' in client.get(reverse("console:dashboard")).content.decode()


def test_korean_by_default_even_for_an_english_browser(client, console_world):
    login(client, console_world.lead)
    page = client.get(reverse("console:dashboard"), HTTP_ACCEPT_LANGUAGE="en-US,en;q=0.9")
    assert "내 승인" in page.content.decode() and page["Content-Language"].startswith("ko")
    client.post("/i18n/setlang/", {"language": "en", "next": "/console/"})
    assert "My approvals" in client.get(reverse("console:dashboard")).content.decode()
    client.cookies["django_language"] = "xx"  # an unknown choice falls back to Korean
    assert "내 승인" in client.get(reverse("console:dashboard")).content.decode()
