"""The statistics rollup: tasks counted once, per server-zone month of filing, system,
category and status (StatisticsRollup), so the statistics page of a person who sees every
task adds up a few thousand rows instead of aggregating every task.

Which tasks the rows count is one rule, kept in StatisticsRollupState: every task filed
before ``through`` (the first of a month). The page reads the months of its range that
the rows cover from them and counts every other task in the range live (filed since
``through``, or in a month the range only partly covers), so each task is counted once.

The rows stay right because every figure of a task changes only with its status, and
every status change is a transition (django-fsm's post_transition, in the transaction of
the transition, the state row locked): the task's count moves from its old row to its
new one. The exception is its approval steps: they are created before the task is pending
approval, so rows keep no step figures while it is received or parsed (0) and the page
counts those live (a handful of tasks, by the status index); a step is escalated (or
handed back) only by ``services.assign_step``, which calls ``on_step_routed`` in its
transaction to move the task's "escalated" count when that changes.

``rebuild`` recounts every row and moves ``through`` in one transaction, the state row
locked (``manage.py rebuild_statistics``, audited, and a daily schedule that moves it to
the current month on the first run of a month). The limited views (team leads, site
managers) never read the rows: their visibility includes "a step assigned to me", which
no per-system row can say.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from django.db import transaction
from django.db.models import Count, Exists, F, OuterRef, Q, QuerySet, Sum
from django.utils import timezone

import audit

from .compiled import CompiledSelect
from .models import (
    ApprovalStep,
    OpsTask,
    Routing,
    StatisticsRollup,
    StatisticsRollupState,
    Status,
)
from .periods import LocalMonth, local_midnight, month_after

# Before a task is pending approval its steps are still being created.
UNSTEPPED = [Status.RECEIVED, Status.PARSED]


def task_figures() -> dict:
    """What the rows count for a set of tasks, as aggregates (tasks, not step rows)."""
    return {
        "tasks": Count("pk"),
        "approved": Count("pk", filter=Q(approved_at__isnull=False)),
        **step_figures(),
    }


def step_figures() -> dict:
    """Tasks with at least one approval step / one escalated step, by EXISTS per task."""
    return {
        "with_steps": Count("pk", filter=Q(Exists(ApprovalStep.objects.filter(task=OuterRef("pk"))))),
        "escalated": Count(
            "pk", filter=Q(Exists(ApprovalStep.objects.filter(task=OuterRef("pk"), routing=Routing.ESCALATED)))
        ),
    }


def row_figures() -> dict:
    """The same figures summed over rollup rows."""
    return {name: Sum(name) for name in task_figures()}


@dataclass(frozen=True)
class Coverage:
    """The rows a range can read, the tasks it must still count live, and the covered tasks
    whose step figures are counted live (those waiting for a decision)."""

    rows: QuerySet
    live: Q
    waiting: Q


def coverage(since: dt.date | None, until: dt.date | None) -> Coverage | None:
    """For a range of server-zone days (open ends allowed), the rows of the whole months in
    it that the rollup counts, or None when there are none."""
    state = StatisticsRollupState.objects.filter(pk=1, through__isnull=False).first()
    if state is None or state.through is None:
        return None
    start = None if since is None else (since if since.day == 1 else month_after(since))
    end = state.through
    if until is not None:
        end = min(end, (until + dt.timedelta(days=1)).replace(day=1))
    if start is not None and start >= end:
        return None
    rows = StatisticsRollup.objects.filter(month__lt=end)
    live = Q(created_at__gte=local_midnight(end))
    covered = Q(created_at__lt=local_midnight(end))
    if start is not None:
        rows = rows.filter(month__gte=start)
        live |= Q(created_at__lt=local_midnight(start))
        covered &= Q(created_at__gte=local_midnight(start))
    return Coverage(rows=rows.order_by(), live=live, waiting=covered & Q(status__in=UNSTEPPED))


def _stored(row: dict) -> dict:
    """A row as stored: no step figures while the steps are still being created."""
    return {**row, "with_steps": 0, "escalated": 0} if row["status"] in UNSTEPPED else row


def rebuild(actor, through: dt.date | None = None) -> dict:
    """Recount every row for the tasks filed before the first of ``through``'s month
    (default: this month), audited."""
    through = (through or timezone.localdate()).replace(day=1)
    with transaction.atomic():
        state, _ = StatisticsRollupState.objects.select_for_update().get_or_create(pk=1)
        StatisticsRollup.objects.all().delete()
        filed = OpsTask.objects.order_by().filter(created_at__lt=local_midnight(through))
        grouped = (
            filed.annotate(month=LocalMonth("created_at"))
            .values("month", "system_id", "category", "status")
            .annotate(**task_figures())
        )
        rows = [StatisticsRollup(**_stored(row)) for row in grouped]
        StatisticsRollup.objects.bulk_create(rows, batch_size=500)
        state.through, state.built_at = through, timezone.now()
        state.save()
        result = {"through": through.isoformat(), "rows": len(rows), "tasks": sum(row.tasks for row in rows)}
        audit.record(actor, "statistics.rollup_rebuilt", payload=result)
    return result


def scheduled_rebuild() -> dict | None:
    """The daily schedule: rebuild once a month has turned (a no-op on the other days)."""
    state = StatisticsRollupState.objects.filter(pk=1).first()
    if state is not None and state.through == timezone.localdate().replace(day=1):
        return None
    return rebuild("system")


# The state row, locked: read by every transition (compiled once, see CompiledSelect).
_LOCKED_STATE = CompiledSelect(lambda: StatisticsRollupState.objects.select_for_update().filter(pk=1))


def before_transition(sender, instance, name, source, target, **kwargs) -> None:
    """Remember whether the task counted as approved in its old row (approve() sets it)."""
    instance._rollup_was_approved = instance.approved_at is not None


def on_transition(sender, instance, name, source, target, **kwargs) -> None:
    """Move a task's count from its old status row to its new one, if the rollup covers its month."""
    if source == target or not isinstance(instance, OpsTask):
        return
    state = _LOCKED_STATE.first()
    if state is None or state.through is None or instance.created_at >= local_midnight(state.through):
        return
    steps = ApprovalStep.objects.filter(task=instance)
    # Step figures are kept from pending approval on (and are 0 in rows before that).
    with_steps = int(target not in UNSTEPPED and steps.exists())
    escalated = int(target not in UNSTEPPED and steps.filter(routing=Routing.ESCALATED).exists())
    key = {
        "month": timezone.localtime(instance.created_at).date().replace(day=1),
        "system_id": instance.system_id,
        "category": instance.category,
    }
    was_approved = int(getattr(instance, "_rollup_was_approved", instance.approved_at is not None))
    old = {
        "approved": was_approved,
        "with_steps": 0 if source in UNSTEPPED else with_steps,
        "escalated": 0 if source in UNSTEPPED else escalated,
    }
    # Never below zero: rows written around the transitions (a bulk import) must not make
    # a transition fail; the next rebuild recounts them.
    StatisticsRollup.objects.filter(
        **key, status=source, tasks__gt=0, **{f"{name}__gte": value for name, value in old.items()}
    ).update(tasks=F("tasks") - 1, **{name: F(name) - value for name, value in old.items()})
    row, _ = StatisticsRollup.objects.get_or_create(**key, status=target)
    StatisticsRollup.objects.filter(pk=row.pk).update(
        tasks=F("tasks") + 1,
        approved=F("approved") + int(instance.approved_at is not None),
        with_steps=F("with_steps") + with_steps,
        escalated=F("escalated") + escalated,
    )


def on_step_routed(task: OpsTask, step: ApprovalStep, was_routing: str) -> None:
    """A step was (re)assigned (governance.services.assign_step, the one place a step's
    routing is written): when that changes whether the task has an escalated step, its
    row follows, in the assignment's transaction. Assignments that neither make nor undo
    an escalation cost nothing here."""
    if Routing.ESCALATED not in (step.routing, was_routing) or step.routing == was_routing:
        return
    escalated = ApprovalStep.objects.filter(task=task, routing=Routing.ESCALATED)
    others = escalated.exclude(pk=step.pk).exists()
    if others:
        return  # the task was and stays escalated
    state = StatisticsRollupState.objects.select_for_update().filter(pk=1).first()
    if state is None or state.through is None or task.created_at >= local_midnight(state.through):
        return
    key = {
        "month": timezone.localtime(task.created_at).date().replace(day=1),
        "system_id": task.system_id,
        "category": task.category,
        "status": task.status,
    }
    if step.routing == Routing.ESCALATED:
        StatisticsRollup.objects.filter(**key).update(escalated=F("escalated") + 1)
    else:
        StatisticsRollup.objects.filter(**key, escalated__gt=0).update(escalated=F("escalated") - 1)
