"""Shared pieces of every governance state change: lock, transition, audit, publish.

services.py (requests, approvals, owners) and control.py (kill switch, execution hooks,
PM validation) both build on these, so the transaction shape (lock the row, call the
transition, save, audit, publish after commit) is written once.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from functools import partial

from django.conf import settings
from django.contrib.auth import get_user_model
from django.db import connection, transaction
from django.utils import timezone
from django.utils.module_loading import import_string
from django_fsm import ConcurrentTransition, TransitionNotAllowed, can_proceed, has_transition_perm
from django_q.conf import Conf
from django_q.tasks import async_task

import audit

from . import events, reports, routing
from .compiled import CompiledSelect, update_row
from .errors import Conflict, Forbidden, NotFound
from .models import ApprovalStep, OpsTask, TaskSequence
from .queries import visible_steps


def task_link(task: OpsTask) -> str:
    return f"{settings.BASE_URL}/console/tasks/{task.task_id}/"


def _task_columns(task: OpsTask, payload: dict) -> dict:
    """audit.record()'s fields of an entry about a task: the task's number, its system as the
    target and the system's institution in the payload (the export's institution filter reads it)."""
    payload.setdefault("institution", task.system.institution.code)
    return {"task": task.task_id, "target": task.system.code, "payload": payload}


def record_task(actor, action: str, task: OpsTask, **payload):
    """One audit entry about a task (see _task_columns)."""
    return audit.record(actor, action, **_task_columns(task, payload))


# Inside one_append(), audit_task collects its entries; they are appended to the chain together
# when the block ends (see one_append).
_collected: ContextVar[list | None] = ContextVar("guardia_audit_collected", default=None)


@contextmanager
def one_append() -> Iterator[None]:
    """The entries audit_task makes inside the block go into the chain together when it ends
    without an error: one chain-head round and one insert (audit.record_many) instead of one
    per entry, with the same seq order, hashes and mirror lines as one record() each; then
    their lines are published. Use it inside the transaction of the change: on PostgreSQL the
    chain head's row lock (which every audited change queues on) is then taken just before the
    commit, not at the first entry. An error in the block appends nothing (the transaction
    rolls back anyway)."""
    items: list[tuple[str, tuple]] = []
    token = _collected.set(items)
    try:
        yield
    finally:
        _collected.reset(token)
    entries = audit.record_many([item for _task_id, item in items])
    if entries:  # the lines are rendered after the commit, when the chain head's lock is released
        events.build_on_commit(partial(_line_events, [task_id for task_id, _item in items], entries))


def audit_task(actor, action: str, task: OpsTask, **payload):
    """record_task with the task's status, and the line published to the task page. Inside
    one_append() the entry is appended (and None returned) when that block ends."""
    payload.setdefault("status", task.status)
    columns = _task_columns(task, payload)
    collected = _collected.get()
    if collected is not None:
        collected.append((task.task_id, (actor, action, columns)))
        return None
    entry = audit.record(actor, action, **columns)
    publish_line(task.task_id, entry)
    return entry


def publish_line(task_id: str, entry) -> None:
    """The task page's timeline gets the new line live, rendered by the same function as
    after a reload (reports.audit_line), so both read the same Korean text and KST time."""
    events.build_on_commit(partial(_line_events, [task_id], [entry]))


def _line_events(task_ids: list[str], entries: list) -> list[tuple[str, events.LiveEvent]]:
    return [
        (
            events.task_group(task_id),
            events.LiveEvent(
                kind="timeline", task_id=task_id, message=line["text"], data={"action": entry.action, "line": line}
            ),
        )
        for task_id, entry, line in zip(task_ids, entries, reports.live_lines(entries), strict=True)
    ]


def publish(task: OpsTask, kind: str, message: str = "", **data) -> None:
    event = events.LiveEvent(
        kind=kind,
        task_id=task.task_id,
        status=task.status,
        message=message,
        data={"status_label": task.get_status_display(), **data},
    )

    events.send_on_commit(events.task_group(task.task_id), event)
    events.send_on_commit(events.CONSOLE_GROUP, event)
    # Participants' own channels, so their dashboards follow tasks they are part of.
    ownership = routing.ownership_of(task)
    people = {task.requester_id, task.current_approver_id}
    if ownership is not None:
        people |= {ownership.owner_id, ownership.deputy_id, ownership.supervisor_id}
    for user_id in people:
        if user_id is not None:
            events.send_on_commit(events.user_group(user_id), event)


def _column_values(task: OpsTask) -> list:
    return [field.value_from_object(task) for field in task._meta.concrete_fields]


def apply_transition(
    actor, task: OpsTask, method: str, *args, reason: str = "", changed: tuple[str, ...] | None = None
) -> None:
    """Run the FSM transition ``method`` on the locked task, save it, audit and publish it.

    ``changed``: the fields the caller itself changed on the task before this call, when it
    knows them all; the save then writes those, the ones the transition changed and
    ``updated_at``, instead of every column (a task's plan is its largest, and a decision
    need not encode and write it again). None (the default) writes every column."""
    source = task.status
    bound = getattr(task, method)
    if not can_proceed(bound, check_conditions=False):
        raise Conflict(f"task {task.task_id} is {source}; cannot {method}")
    # People pass the transition's own permission too; the system (a string actor) does not need one.
    if hasattr(actor, "has_perm") and not has_transition_perm(bound, actor):
        raise Forbidden(f"you may not {method} task {task.task_id}")
    before = _column_values(task) if changed is not None else []
    try:
        bound(*args)
    except TransitionNotAllowed as exc:
        raise Conflict(f"task {task.task_id} is {source}; cannot {method}") from exc
    if changed is None:
        task.save()
    else:
        fields = task._meta.concrete_fields
        moved = [f.name for f, old, new in zip(fields, before, _column_values(task), strict=True) if old != new]
        # As the FSM model's save(update_fields=...) does, its UPDATE compiled once: the row must
        # still be in the state the transition started from.
        if not update_row(task, {*changed, *moved, "updated_at"}, where={"status": source}):
            raise ConcurrentTransition(f"task {task.task_id} changed since it was read")
        task._update_initial_state()
    audit_task(actor, "task.transition", task, source=source, target=task.status, reason=reason)
    publish(task, "transition", reason or task.get_status_display())


TASK_RELATED = (
    "system__institution__pm",
    "requester",
    "system__ownership__owner",
    "system__ownership__deputy",
    "system__ownership__supervisor",
)


def lock_task(task_id: str | None = None, pk: int | None = None, defer: tuple[str, ...] = ()) -> OpsTask:
    """The task row, locked, with its people and system. ``defer``: columns left unread (then
    neither held nor written back by the transition's save)."""
    # Lock only the task row: PostgreSQL refuses FOR UPDATE on the nullable side of the
    # outer joins that bring the owner table along.
    of = ("self",) if connection.features.has_select_for_update_of else ()
    query = OpsTask.objects.select_for_update(of=of).select_related(*TASK_RELATED).defer(*defer)
    try:
        return query.get(task_id=task_id) if task_id is not None else query.get(pk=pk)
    except OpsTask.DoesNotExist as exc:
        raise NotFound(f"task {task_id or pk} not found") from exc


def _assigned_step(step, user):
    of = ("self", "task") if connection.features.has_select_for_update_of else ()
    related = ["task__" + name for name in TASK_RELATED]
    return (
        ApprovalStep.objects.select_for_update(of=of).select_related("task", *related).filter(pk=step, assigned_to=user)
    )


_ASSIGNED_STEP = CompiledSelect(_assigned_step, "step", "user")


def lock_step(user, step_id) -> ApprovalStep:
    """The approval step ``user`` is to decide, with its task (``step.task``, the people and
    system of lock_task), both rows locked; NotFound when the user may not see the step.

    A step assigned to the user is visible to them by definition (OpsTask.visible_to counts
    "a step assigned to me"), so that case is one query by primary key and assignee (compiled
    once); any other step is looked up through visible_steps and then its task locked, as
    before, so a step the user may not see is "not found" before anything about its state is said."""
    try:
        step = _ASSIGNED_STEP.first(step=int(step_id), user=user.pk)
        if step is None:
            step = visible_steps(user).select_for_update().get(pk=step_id)
            step.task = lock_task(pk=step.task_id)
    except (ApprovalStep.DoesNotExist, ValueError, TypeError) as exc:
        raise NotFound(f"승인 단계 {step_id}을(를) 찾을 수 없습니다") from exc
    return step


def next_task_id(today: dt.date | None = None) -> str:
    today = today or timezone.localdate()
    seq, _ = TaskSequence.objects.select_for_update().get_or_create(day=today)
    seq.last += 1
    seq.save(update_fields=["last"])
    return f"OPS-{today:%Y%m%d}-{seq.last:03d}"


def describe(task: OpsTask) -> str:
    """Enough to decide from a phone: what, where, risk, requester, targets."""
    targets = ", ".join(s.server_id for s in task.targets.all()[:10]) or "-"
    return (
        f"[{task.task_id}] {task.title}\n{task.get_sub_type_display()} · 위험도 {task.get_risk_display()}"
        f"{' · 긴급' if task.urgent or task.emergency else ''}\n"
        f"{task.system.institution.name} / {task.system.name} · 대상 {targets}\n요청자 {task.requester}"
    )


def enqueue_execution(task: OpsTask, *, with_change: bool = False) -> None:
    """Queue the run on the worker cluster the execution layer names for it (a site gateway's
    queue, or None for the central one) through EXECUTION_QUEUE, a dotted path; after the
    commit of the caller's transaction.

    ``with_change`` (the approval decision): with the ORM broker on this database the queue
    row is written in the caller's transaction instead. A worker sees it only once that
    commits and a rollback takes it back, as after a commit, but the change costs one write
    turn, not a second transaction after the commit (for which django-q2 also closed and
    reopened the connection). Any other broker (Redis), or running synchronously, is always
    queued after the commit."""
    router = getattr(settings, "EXECUTION_QUEUE", "")
    cluster = import_string(router)(task) if router else None
    queue = partial(async_task, "execution.tasks.run_task", task.pk, task_name=f"run-{task.task_id}", cluster=cluster)
    if with_change and connection.in_atomic_block and Conf.ORM == connection.alias and not Conf.SYNC:
        queue()
    else:
        transaction.on_commit(queue)


def users_in(*groups: str):
    return get_user_model().objects.filter(groups__name__in=groups, is_active=True).distinct()
