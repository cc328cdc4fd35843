"""The statistics rollup (governance/rollup.py): with its rows in place every figure still
equals a count made independently from the tasks, for every role, over the whole history
and over ranges that cut months in half, and it stays so when tasks finish afterwards."""

from __future__ import annotations

import datetime as dt

import pytest
from django.core.management import CommandError, call_command
from django.db import transaction
from django.utils import timezone

from audit.models import AuditEntry
from governance import reports, rollup, services
from governance.escalation import escalate_overdue_steps
from governance.models import ApprovalStep, OpsTask, Routing, StatisticsRollup, StatisticsRollupState, Status
from governance.routing import Assignment
from governance.transitions import apply_transition, lock_task
from tests.governance.test_counts import _expected, _independent_visible, assert_figures, build_history

pytestmark = pytest.mark.django_db


@pytest.fixture
def history(world, django_capture_on_commit_callbacks):
    """The per-role counts' history (tests/governance/test_counts.py), for each test anew: these change it."""
    with django_capture_on_commit_callbacks(execute=False):
        return build_history(world)


def _user(world, history, role):
    return history if role == "field2" else getattr(world, role)


@pytest.mark.parametrize("role", ["pm", "auditor", "admin", "owner", "field2"])
def test_every_figure_matches_an_independent_count_with_the_rollup(world, history, role):
    rollup.rebuild("tester")
    assert StatisticsRollup.objects.exists()
    cover = rollup.coverage(None, None)
    assert cover is not None
    assert OpsTask.objects.filter(cover.live).count() < OpsTask.objects.count()  # some are read from the rows
    user = _user(world, history, role)
    assert_figures(reports.statistics(user), _expected(_independent_visible(user)))


def test_tasks_that_finish_after_the_rebuild_join_their_row(world, history):
    rollup.rebuild("tester")
    through = StatisticsRollupState.objects.get().through
    counted = sum(StatisticsRollup.objects.values_list("tasks", flat=True))
    earlier = OpsTask.objects.filter(created_at__lt=reports.local_midnight(through))
    # An overdue step of a waiting task is escalated by the sweep (not a transition).
    waiting = ApprovalStep.objects.open().filter(task__status=Status.PENDING_APPROVAL, task__in=earlier)
    waiting.update(sla_deadline=timezone.now() - dt.timedelta(minutes=1))
    assert escalate_overdue_steps()["escalated"] >= 1
    for role in ("pm", "auditor"):
        user = getattr(world, role)
        assert_figures(reports.statistics(user), _expected(_independent_visible(user)))
    moves = [
        (Status.PENDING_APPROVAL, "approve", ()),
        (Status.PENDING_APPROVAL, "cancel", ()),
        (Status.EXECUTING, "fail_rolled_back", ("테스트",)),
        (Status.PENDING_PM_VALIDATION, "complete", ()),
    ]
    finished = 0
    for status, method, args in moves:
        for pk in earlier.filter(status=status).values_list("pk", flat=True)[:2]:
            with transaction.atomic():
                apply_transition("system", lock_task(pk=pk), method, *args)
            finished += 1
    assert finished >= 4
    assert sum(StatisticsRollup.objects.values_list("tasks", flat=True)) == counted  # moved, not added
    for role in ("pm", "auditor", "owner"):
        user = getattr(world, role)
        assert_figures(reports.statistics(user), _expected(_independent_visible(user)))
    # A rebuild from scratch counts the same (rows emptied by a move stay, at 0).
    before = _rows()
    rollup.rebuild("tester")
    assert _rows() == before


def _rows() -> list[tuple]:
    fields = ("month", "system", "category", "status", "tasks", "approved", "with_steps", "escalated")
    return sorted(StatisticsRollup.objects.filter(tasks__gt=0).values_list(*fields))


def test_a_range_that_cuts_months_counts_the_same_with_and_without_the_rollup(world, history):
    today = timezone.localdate()
    ranges = [
        (today - dt.timedelta(days=150), today),
        (today - dt.timedelta(days=170), today - dt.timedelta(days=40)),
        (None, today - dt.timedelta(days=65)),
        (today - dt.timedelta(days=100), None),
    ]
    without = {r: reports.statistics(world.pm, *r) for r in ranges}
    rollup.rebuild("tester")
    for r in ranges:
        assert reports.statistics(world.pm, *r) == without[r], r


def test_the_rebuild_is_audited_and_the_command_names_a_bad_date(world, history, capsys):
    call_command("rebuild_statistics")
    entry = AuditEntry.objects.filter(action="statistics.rollup_rebuilt").get()
    assert entry.actor == "manage.py rebuild_statistics"
    assert entry.payload["tasks"] == sum(StatisticsRollup.objects.values_list("tasks", flat=True)) > 0
    assert "statistics rollup:" in capsys.readouterr().out
    with pytest.raises(CommandError, match="--through"):
        call_command("rebuild_statistics", "--through", "2026-13-01")
    assert AuditEntry.objects.filter(action="statistics.rollup_rebuilt").count() == 1


def test_the_daily_schedule_rebuilds_once_a_month(world, history):
    assert rollup.scheduled_rebuild() is not None
    assert rollup.scheduled_rebuild() is None  # same month: nothing to move
    assert AuditEntry.objects.filter(action="statistics.rollup_rebuilt").count() == 1


def test_a_row_out_of_step_never_blocks_a_transition(world, history):
    """Rows written around the transitions (a bulk import) could miss a task: its transition
    still goes through, and the next rebuild recounts."""
    rollup.rebuild("tester")
    StatisticsRollup.objects.all().delete()
    task = OpsTask.objects.filter(
        status=Status.PENDING_APPROVAL, created_at__lt=reports.local_midnight(timezone.localdate().replace(day=1))
    ).first()
    with transaction.atomic():
        apply_transition("system", lock_task(pk=task.pk), "cancel")
    assert OpsTask.objects.get(pk=task.pk).status == Status.CANCELLED
    rollup.rebuild("tester")
    assert_figures(reports.statistics(world.pm), _expected(_independent_visible(world.pm)))


def test_an_escalation_handed_back_leaves_the_row(world, history):
    """A step escalated by the sweep and then assigned back to its owner (the owner is
    present again): the task's "escalated" count follows both ways."""
    rollup.rebuild("tester")
    earlier = OpsTask.objects.filter(created_at__lt=reports.local_midnight(timezone.localdate().replace(day=1)))
    waiting = ApprovalStep.objects.open().filter(task__status=Status.PENDING_APPROVAL, task__in=earlier)
    waiting.update(sla_deadline=timezone.now() - dt.timedelta(minutes=1))
    assert escalate_overdue_steps()["escalated"] >= 1
    for step in ApprovalStep.objects.open().filter(routing=Routing.ESCALATED, task__in=earlier).select_related("task"):
        with transaction.atomic():
            services.assign_step(step.task, step, Assignment(world.owner, 0, Routing.DIRECT, None), timezone.now())
    assert not ApprovalStep.objects.open().filter(routing=Routing.ESCALATED, task__in=earlier).exists()
    for role in ("pm", "auditor"):
        user = getattr(world, role)
        assert_figures(reports.statistics(user), _expected(_independent_visible(user)))
