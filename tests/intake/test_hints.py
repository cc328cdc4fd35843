"""History hints in the parse preview: the same servers' recent tasks, only those the caller
may see, with the first step to suggest when the same symptom comes back."""

from __future__ import annotations

import datetime as dt

from django.utils import timezone

from governance.models import OpsTask
from tests.factories import UserFactory
from tests.intake.test_api import PARSE, URL, client_for, post

DISK_ALERT = "예산시스템 WAS1 디스크 용량 95% 경보 왔어요 재시작 부탁해요"


def _file(user, text: str, days_ago: int) -> OpsTask:
    response = post(client_for(user), URL, {"raw_request": text})
    assert response.status_code == 201, response.content
    task = OpsTask.objects.get(task_id=response.json()["task_id"])
    OpsTask.objects.filter(pk=task.pk).update(created_at=timezone.now() - dt.timedelta(days=days_ago))
    return task


def test_a_disk_alert_that_came_back_suggests_log_cleanup_first(world):
    earlier = _file(world.requester, "예산시스템 WAS1번 로그 용량 꽉 찼어요 로그 정리해 주세요", days_ago=8)
    response = post(client_for(world.requester), PARSE, {"raw_request": DISK_ALERT})
    assert response.status_code == 200, response.content
    hints = response.json()["hints"]
    assert hints[0]["task_id"] == earlier.task_id and hints[0]["server"] == "was-1"
    assert hints[0]["text"].startswith("이 서버(was-1)는 지난주에도 같은 로그 용량 경보가 있었습니다")
    assert hints[0]["text"].endswith("로그 정리를 먼저 할까요?") and hints[0]["suggest_sub_type"] == "LOG_CLEANUP"
    # Taking the suggestion reads the request again as a log cleanup.
    again = post(client_for(world.requester), PARSE, {"raw_request": DISK_ALERT, "task_sub_type": "LOG_CLEANUP"})
    assert again.json()["parsed"]["sub_type"] == "LOG_CLEANUP"


def test_the_same_task_on_the_same_server_is_mentioned(world):
    earlier = _file(world.requester, "예산시스템 WAS2번 재시작", days_ago=2)
    hints = post(client_for(world.requester), PARSE, {"raw_request": "예산시스템 WAS2번 재시작"}).json()["hints"]
    assert [h["task_id"] for h in hints] == [earlier.task_id]
    assert "2일 전에도 같은 작업(서비스 재시작" in hints[0]["text"] and hints[0]["suggest_sub_type"] == ""


def test_other_servers_old_tasks_and_tasks_the_caller_cannot_see_give_no_hint(world):
    _file(world.requester, "예산시스템 WAS2번 로그 용량 꽉 찼어요 로그 정리해 주세요", days_ago=3)  # another server
    _file(world.requester, "예산시스템 WAS1번 로그 용량 꽉 찼어요 로그 정리해 주세요", days_ago=45)  # too old
    colleague = UserFactory(username="field2", role="site_manager")
    world.inst.site_managers.add(colleague)
    _file(colleague, "예산시스템 WAS1번 로그 용량 꽉 찼어요 로그 정리해 주세요", days_ago=1)  # not the caller's
    assert post(client_for(world.requester), PARSE, {"raw_request": DISK_ALERT}).json()["hints"] == []
    # The system's owner sees every task of the system, the colleague's included.
    owner_hints = post(client_for(world.owner), PARSE, {"raw_request": DISK_ALERT})
    assert owner_hints.status_code == 200, owner_hints.content
    assert owner_hints.json()["hints"][0]["when"] == "어제"
