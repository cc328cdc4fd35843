"""The engine's stop check (governance.control.should_stop): one statement per poll, and every
way a stop is set seen by it at once, the task's own stop winning over the global one.

Database only; the stop's effect on a running rollout (the running step killed, the group
restored, no forward step after the poll) is shown on the sshd testbed by
test_engine_rolling.py::test_kill_switch_mid_rollout_kills_the_running_step_and_restores_the_group.
"""

from __future__ import annotations

import pytest

from governance import control
from governance.models import GlobalStop, OpsTask
from tests.execution.engine_helpers import approved_task
from tests.factories import ServerFactory, SystemFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def task():
    system = SystemFactory()
    return approved_task([ServerFactory(system=system, server_id="srv-01")], "RAW_COMMAND", {"command": "uptime"})


def check(task_pk: int, django_assert_num_queries) -> str | None:
    with django_assert_num_queries(1):
        return control.should_stop(task_pk)


def test_nothing_stopped_is_none_in_one_statement(task, django_assert_num_queries):
    assert check(task.pk, django_assert_num_queries) is None
    GlobalStop.objects.create(id=1, engaged=False, reason="released earlier")
    assert check(task.pk, django_assert_num_queries) is None


def test_a_global_stop_is_seen_with_its_reason(task, django_assert_num_queries):
    GlobalStop.objects.create(id=1, engaged=True, reason="훈련")
    assert check(task.pk, django_assert_num_queries) == "전체 정지: 훈련"
    GlobalStop.objects.filter(id=1).update(reason="")
    assert check(task.pk, django_assert_num_queries) == "전체 정지: "
    GlobalStop.objects.filter(id=1).update(engaged=False)
    assert check(task.pk, django_assert_num_queries) is None


def test_the_task_stop_is_seen_and_wins_over_the_global_one(task, django_assert_num_queries):
    OpsTask.objects.filter(pk=task.pk).update(stop_requested=True, stop_reason="운영자 중지")
    assert check(task.pk, django_assert_num_queries) == "운영자 중지"
    GlobalStop.objects.create(id=1, engaged=True, reason="훈련")
    assert check(task.pk, django_assert_num_queries) == "운영자 중지"
    OpsTask.objects.filter(pk=task.pk).update(stop_reason="")
    assert check(task.pk, django_assert_num_queries) == "운영자가 중지했습니다"


def test_a_deleted_task_stops_the_run(task, django_assert_num_queries):
    GlobalStop.objects.create(id=1, engaged=True, reason="훈련")
    gone = task.pk
    OpsTask.objects.filter(pk=gone).delete()
    assert check(gone, django_assert_num_queries) == "작업이 삭제되었습니다"
