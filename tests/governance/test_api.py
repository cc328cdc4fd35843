"""REST: POST /api/v1/approval/process and GET /api/v1/task/history/{task_id}."""

from __future__ import annotations

import threading

import pytest
from rest_framework.test import APIClient

from audit.models import AuditEntry
from governance import control, services
from governance.models import Status

URL = "/api/v1/approval/process"


def client_for(user) -> APIClient:
    client = APIClient()
    client.force_authenticate(user)
    return client


def test_approve_via_api_returns_next_step(world, submit):
    task = submit("APP_DEPLOY")
    step = task.steps.get(step_order=1)
    response = client_for(world.owner).post(
        URL, {"step_id": step.pk, "decision": "APPROVED", "comments": "ok"}, format="json"
    )
    assert response.status_code == 200, response.json()
    body = response.json()
    assert body["result"] == "NEXT_STEP" and body["next_step"]["role"] == "pm"
    assert body["next_step"]["assigned_to"] == "pm"


def test_bad_input(world, submit):
    task = submit("APP_DEPLOY")
    step = task.steps.get(step_order=1)
    owner = client_for(world.owner)
    missing = owner.post(URL, {"step_id": 999999, "decision": "APPROVED"}, format="json")
    assert missing.status_code == 404 and "999999" in missing.json()["detail"]
    malformed = owner.post(URL, {"step_id": step.pk, "decision": "MAYBE"}, format="json")
    assert malformed.status_code == 400 and "decision" in malformed.json()
    no_id = owner.post(URL, {"decision": "APPROVED"}, format="json")
    assert no_id.status_code == 400 and "step_id" in no_id.json()
    other = client_for(world.outsider).post(URL, {"step_id": step.pk, "decision": "APPROVED"}, format="json")
    assert other.status_code == 404  # another system's step: not even its existence is confirmed
    deputy = client_for(world.deputy).post(URL, {"step_id": step.pk, "decision": "APPROVED"}, format="json")
    assert deputy.status_code == 403  # sees the task, but the step is the owner's
    assert APIClient().post(URL, {"step_id": step.pk, "decision": "APPROVED"}, format="json").status_code == 401
    step.refresh_from_db()
    assert step.status == "P"  # nothing was lost or changed by the bad requests


def test_kill_switch_stopped_task_answers_409_with_reason(world, submit):
    task = submit("APP_DEPLOY")
    control.stop_task(world.pm, task.task_id, "장애 대응 중 변경 동결")
    response = client_for(world.owner).post(
        URL, {"step_id": task.steps.get(step_order=1).pk, "decision": "APPROVED"}, format="json"
    )
    assert response.status_code == 409
    assert "장애 대응 중 변경 동결" in response.json()["detail"]


def test_second_decision_is_409(world, submit):
    task = submit("SERVICE_RESTART")
    step = task.steps.get()
    owner = client_for(world.owner)
    assert owner.post(URL, {"step_id": step.pk, "decision": "APPROVED"}, format="json").status_code == 200
    again = owner.post(URL, {"step_id": step.pk, "decision": "REJECTED", "comments": "too late"}, format="json")
    assert again.status_code == 409 and "이미 결정되었습니다" in again.json()["detail"]


@pytest.mark.django_db(transaction=True)
def test_race_two_approvals_exactly_one_wins(world, submit):
    task = submit("SERVICE_RESTART")
    step = task.steps.get()
    barrier = threading.Barrier(2)
    codes: list[int] = []

    def approve():
        client = client_for(world.owner)
        barrier.wait()
        codes.append(client.post(URL, {"step_id": step.pk, "decision": "APPROVED"}, format="json").status_code)

    threads = [threading.Thread(target=approve) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert sorted(codes) == [200, 409]
    assert AuditEntry.objects.filter(task=task.task_id, action="approval.decided").count() == 1
    task.refresh_from_db()
    assert task.status == Status.APPROVED


def test_history_timeline_and_scoping(world, submit):
    task = submit("SERVICE_RESTART")
    services.decide_step(world.owner, task.steps.get().pk, "APPROVED", "좋습니다")
    response = client_for(world.requester).get(f"/api/v1/task/history/{task.task_id}")
    assert response.status_code == 200
    kinds = [item["kind"] for item in response.json()["timeline"]]
    assert "task.submitted" in kinds and "approval.decided" in kinds and "notification" in kinds
    assert client_for(world.outsider).get(f"/api/v1/task/history/{task.task_id}").status_code == 404
    listing = client_for(world.owner).get("/api/v1/tasks/", {"q": task.task_id})
    assert [t["task_id"] for t in listing.json()["results"]] == [task.task_id]
