"""The PM's priority on a task, through the console: PMs only, before the run, in range,
audited with the value it replaced; every refusal leaves the task as it was. And a request
with a time phrase is filed with its window's start."""

from __future__ import annotations

import datetime as dt
import json

import pytest
from django.utils import timezone

from audit.models import AuditEntry
from governance.models import OpsTask, Status
from governance.submission import file_request
from tests.factories import governance_world

pytestmark = pytest.mark.django_db


@pytest.fixture
def world():
    w = governance_world()
    w.task = file_request(w.requester, system=w.system, sub_type="MEMORY_CHECK", title="점검", targets=["was-1"])
    return w


def priority_of(task: OpsTask) -> int:
    return OpsTask.objects.get(pk=task.pk).priority


def test_a_pm_sets_the_priority_and_it_is_audited(client, world):
    client.force_login(world.pm)
    page = client.get(f"/console/tasks/{world.task.task_id}/").content.decode()
    assert 'id="priority-form"' in page
    response = client.post(f"/console/tasks/{world.task.task_id}/priority/", {"priority": "4"})
    assert response.status_code == 302 and priority_of(world.task) == 4
    entry = AuditEntry.objects.get(action="task.priority", task=world.task.task_id)
    assert entry.actor == "pm" and entry.payload["from"] == 0 and entry.payload["to"] == 4
    assert '<dd id="task-priority">4</dd>' in client.get(f"/console/tasks/{world.task.task_id}/").content.decode()


@pytest.mark.parametrize("role", ["requester", "owner", "auditor"])
def test_anyone_but_a_pm_is_refused_and_nothing_changes(client, world, role):
    client.force_login(getattr(world, role))
    assert 'id="priority-form"' not in client.get(f"/console/tasks/{world.task.task_id}/").content.decode()
    response = client.post(f"/console/tasks/{world.task.task_id}/priority/", {"priority": "9"})
    assert response.status_code == 403
    assert priority_of(world.task) == 0 and not AuditEntry.objects.filter(action="task.priority").exists()


@pytest.mark.parametrize("value", ["10", "-10", "high", ""])
def test_a_value_out_of_range_is_refused_naming_the_range(client, world, value):
    client.force_login(world.pm)
    response = client.post(f"/console/tasks/{world.task.task_id}/priority/", {"priority": value}, follow=True)
    assert "우선순위는" in response.content.decode()
    assert priority_of(world.task) == 0 and not AuditEntry.objects.filter(action="task.priority").exists()


def test_a_running_task_keeps_its_priority(client, world):
    OpsTask.objects.filter(pk=world.task.pk).update(status=Status.EXECUTING)
    client.force_login(world.pm)
    response = client.post(f"/console/tasks/{world.task.task_id}/priority/", {"priority": "3"}, follow=True)
    assert "바꿀 수 없습니다" in response.content.decode() and priority_of(world.task) == 0


def test_an_unknown_task_is_404(client, world):
    client.force_login(world.pm)
    assert client.post("/console/tasks/OPS-NOPE/priority/", {"priority": "1"}).status_code == 404


def test_a_request_for_tomorrow_night_is_filed_with_its_window(client, world):
    client.force_login(world.requester)
    response = client.post(
        "/api/v1/sr/intake",
        json.dumps({"raw_request": "예산시스템 WAS1번 내일 새벽 2시에 재시작 부탁합니다"}),
        content_type="application/json",
    )
    assert response.status_code == 201, response.content
    task = OpsTask.objects.get(task_id=response.json()["task_id"])
    start = timezone.localtime(task.window_start)
    assert task.window_start > timezone.now() and (start.hour, start.minute) == (2, 0)
    assert start.date() == timezone.localdate() + dt.timedelta(days=1)
