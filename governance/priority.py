"""The PM's priority on a task: it orders the execution queue (higher first, then approval
time) among tasks that wait for the same servers. Set only by PMs, only before the task runs,
and audited with the value it replaced."""

from __future__ import annotations

from django.db import transaction

import audit

from .errors import Forbidden, Invalid, NotFound
from .models import OpsTask, Status

PRIORITY_MIN, PRIORITY_MAX = -9, 9
# Before the run: afterwards the queue has nothing left to order.
SETTABLE = {Status.RECEIVED, Status.PARSED, Status.PENDING_APPROVAL, Status.APPROVED}


def parse_priority(raw) -> int:
    try:
        value = int(str(raw).strip())
    except (TypeError, ValueError) as exc:
        raise Invalid("우선순위는 정수여야 합니다", field="priority") from exc
    if not PRIORITY_MIN <= value <= PRIORITY_MAX:
        raise Invalid(f"우선순위는 {PRIORITY_MIN}부터 {PRIORITY_MAX}까지입니다", field="priority")
    return value


def set_priority(user, task_id: str, raw) -> OpsTask:
    if not user.has_perm("governance.validate_result"):
        raise Forbidden("우선순위는 PM만 정할 수 있습니다")
    if not OpsTask.objects.visible_to(user).filter(task_id=task_id).exists():
        raise NotFound(f"작업 {task_id}을(를) 찾을 수 없습니다", field="task")
    value = parse_priority(raw)
    with transaction.atomic():
        task = OpsTask.objects.select_for_update().select_related("system__institution").get(task_id=task_id)
        if task.status not in SETTABLE:
            raise Invalid("실행이 시작되었거나 끝난 작업의 우선순위는 바꿀 수 없습니다", field="priority")
        previous = task.priority
        if previous == value:
            return task
        OpsTask.objects.filter(pk=task.pk).update(priority=value)
        task.priority = value
        audit.record(
            user,
            "task.priority",
            task=task.task_id,
            target=task.system.code,
            payload={"from": previous, "to": value, "institution": task.system.institution.code},
        )
    return task
