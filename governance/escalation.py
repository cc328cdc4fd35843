"""SLA escalation: the sweep a django-q2 schedule runs every minute (TS-01)."""

from __future__ import annotations

import datetime as dt
from collections import defaultdict

from django.db import connection, transaction
from django.utils import timezone

from . import routing
from .models import ApprovalStep, OpsTask, Status, StepStatus
from .notify import Action, Message, notify
from .notify import batched as notify_batched
from .services import assign_step, sla_for
from .transitions import TASK_RELATED, apply_transition, audit_task, describe, task_link


def escalate_overdue_steps(now: dt.datetime | None = None) -> dict[str, int]:
    """Remind at half the SLA; past it climb owner -> deputy -> supervisor, mark URGENT.

    At the last rung the system's setting decides: page the supervisor again, or expire
    the request as rejected. A timeout never approves anything.
    """
    now = now or timezone.now()
    counts = {"reminded": 0, "escalated": 0, "repaged": 0, "expired": 0, "skipped": 0}
    open_steps = ApprovalStep.objects.open().filter(task__status=Status.PENDING_APPROVAL)
    for step in open_steps.filter(reminded_at__isnull=True, sla_deadline__gt=now).select_related("task", "assigned_to"):
        half = step.activated_at + (step.sla_deadline - step.activated_at) / 2
        if half <= now and step.assigned_to:
            notify(
                step.assigned_to,
                Message(
                    f"승인 기한 절반 경과: {step.task.task_id} ({step.task.title})",
                    kind="reminder",
                    task=step.task,
                    link=task_link(step.task),
                ),
            )
            ApprovalStep.objects.filter(pk=step.pk).update(reminded_at=now)
            counts["reminded"] += 1
    overdue = list(open_steps.filter(sla_deadline__lte=now).values_list("pk", flat=True))
    for chunk_start in range(0, len(overdue), CHUNK):
        with transaction.atomic(), notify_batched():
            for outcome in _escalate_chunk(overdue[chunk_start : chunk_start + CHUNK], now):
                counts[outcome] += 1
    return counts


CHUNK = 200


def _escalate_chunk(step_pks: list[int], now: dt.datetime):
    """Lock a chunk of overdue steps and their tasks, load what routing needs in a few
    queries, then escalate each. Steps another transaction holds (an approver deciding
    right now) are skipped on PostgreSQL and picked up by the next sweep if still open."""
    skip = connection.features.has_select_for_update_skip_locked
    of = ("self",) if connection.features.has_select_for_update_of else ()
    steps = list(
        ApprovalStep.objects.select_for_update(skip_locked=skip, of=of)
        .filter(pk__in=step_pks, status=StepStatus.PENDING, sla_deadline__lte=now, task__status=Status.PENDING_APPROVAL)
        .select_related("assigned_to", "original_owner", *(f"task__{name}" for name in TASK_RELATED))
        .prefetch_related("task__targets")
    )
    task_ids = [step.task_id for step in steps]
    locked = set(
        OpsTask.objects.select_for_update(skip_locked=skip).filter(pk__in=task_ids).values_list("pk", flat=True)
    )
    excluded: dict[int, set[int]] = defaultdict(set)
    for task_id, approver in (
        ApprovalStep.objects.filter(task_id__in=task_ids)
        .exclude(actual_approver=None)
        .values_list("task_id", "actual_approver_id")
    ):
        excluded[task_id].add(approver)
    yield from ("skipped" for _ in range(len(step_pks) - len(steps)))
    for step in steps:
        if step.task_id not in locked:
            yield "skipped"
            continue
        yield _escalate_one(step, now, excluded[step.task_id] | {step.task.requester_id})


def _escalate_one(step: ApprovalStep, now: dt.datetime, excluded: set[int]) -> str:
    task = step.task
    previous = step.assigned_to
    assignment = routing.assign(task, step.role, min_level=step.escalation_level + 1, excluded=excluded)
    task.urgent = True
    if assignment.user is not None and assignment.user != previous:
        assign_step(task, step, assignment, now, escalated_from=previous)
        return "escalated"
    if task.system.expire_unanswered:
        step.status, step.comments, step.decided_at = StepStatus.REJECTED, "expired: no answer within SLA", now
        step.save()
        task.steps.filter(status=StepStatus.PENDING).update(status=StepStatus.SKIPPED)
        audit_task("system", "approval.expired", task, step=step.step_order, last_assignee=str(previous or ""))
        apply_transition("system", task, "reject", reason="expired: nobody answered within the SLA")
        notify(
            task.requester,
            Message(f"승인 기한 만료로 반려: {task.task_id}", kind="rejected", task=task, link=task_link(task)),
        )
        return "expired"
    step.sla_deadline = now + sla_for(task)
    step.save(update_fields=["sla_deadline"])
    task.save(update_fields=["urgent", "updated_at"])
    audit_task("system", "approval.repaged", task, step=step.step_order, assigned_to=str(previous or ""))
    if previous:
        notify(
            previous,
            Message(
                f"[긴급] 재요청: {describe(task)}",
                kind="approval",
                task=task,
                link=task_link(task),
                actions=[Action("승인", "approve", step.pk), Action("반려", "reject", step.pk)],
            ),
        )
    return "repaged"
