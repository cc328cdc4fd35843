from __future__ import annotations

import datetime as dt

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django_q.models import OrmQ
from django_q.tasks import async_task

from audit.models import AuditEntry
from governance import control, services
from governance.errors import Conflict, Forbidden, Invalid
from governance.models import Notification, OpsTask, Routing, Status, StepStatus


def test_deploy_needs_owner_then_pm_and_enqueues_execution(world, submit, django_capture_on_commit_callbacks):
    task = submit("APP_DEPLOY")
    assert task.task_id.startswith("OPS-") and task.status == Status.PENDING_APPROVAL
    steps = list(task.steps.order_by("step_order"))
    assert [s.role for s in steps] == ["owner", "pm"]
    assert steps[0].assigned_to == world.owner and steps[0].routing == Routing.DIRECT
    assert steps[1].activated_at is None  # opens only after step 1
    note = Notification.objects.get(user=world.owner, task=task)
    assert "예산시스템" in note.message and "was-1" in note.message and "field" in note.message
    assert {a["kind"] for a in note.actions} == {"approve", "reject", "open"}

    first = services.decide_step(world.owner, steps[0].pk, "APPROVED", "ok")
    assert first.result == "NEXT_STEP" and first.next_step.assigned_to == world.pm
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        final = services.decide_step(world.pm, steps[1].pk, "APPROVED", "go")
    assert final.result == "APPROVED"
    task.refresh_from_db()
    assert task.status == Status.APPROVED and task.approved_at is not None
    # With the ORM broker the run is queued in the decision's own transaction, not after it.
    assert not [cb for cb in callbacks if getattr(cb, "func", None) is async_task]
    queued = [(q.task["func"], q.task["args"]) for q in OrmQ.objects.all()]
    assert queued == [("execution.tasks.run_task", (task.pk,))]
    actions = list(AuditEntry.objects.filter(task=task.task_id).values_list("action", flat=True))
    assert actions.count("approval.decided") == 2 and "task.submitted" in actions


def test_reject_ends_the_task_and_skips_later_steps(world, submit):
    task = submit("APP_DEPLOY")
    step = task.steps.get(step_order=1)
    services.decide_step(world.owner, step.pk, "REJECTED", "not now")
    task.refresh_from_db()
    assert task.status == Status.REJECTED
    assert task.steps.get(step_order=2).status == StepStatus.SKIPPED
    assert Notification.objects.filter(user=world.requester, kind="rejected").exists()


def test_critical_change_goes_owner_pm_security_officer(world, submit):
    task = submit("SSL_REPLACE")
    assert [s.role for s in task.steps.order_by("step_order")] == ["owner", "pm", "security_officer"]
    for approver in (world.owner, world.pm, world.security):
        step = task.steps.get(status=StepStatus.PENDING, activated_at__isnull=False)
        assert step.assigned_to == approver
        services.decide_step(approver, step.pk, "APPROVED")
    task.refresh_from_db()
    assert task.status == Status.APPROVED
    assert len({s.actual_approver_id for s in task.steps.all()}) == 3  # different steps, different approvers


def test_tier3_restart_is_auto_approved_but_not_on_sensitive_system(world, submit):
    world.inst.tier = 3
    world.inst.save()
    task = submit("SERVICE_RESTART")
    assert task.status == Status.APPROVED and task.steps.count() == 0
    world.system.sensitive = True
    world.system.save()
    task = submit("SERVICE_RESTART")
    assert task.status == Status.PENDING_APPROVAL


def test_outside_window_refused_unless_emergency(world, submit):
    now = dt.datetime.now().astimezone()
    world.system.window_start = (now + dt.timedelta(hours=2)).time().replace(microsecond=0)
    world.system.window_end = (now + dt.timedelta(hours=3)).time().replace(microsecond=0)
    world.system.save()
    with pytest.raises(Invalid, match="deploy window"):
        submit("APP_DEPLOY")
    assert AuditEntry.objects.filter(action="task.refused").exists()
    task = submit("APP_DEPLOY", emergency=True)
    assert [s.role for s in task.steps.order_by("step_order")] == ["owner", "pm", "supervisor"]


def test_away_owner_routes_to_deputy_and_only_owner_changes_it(world, submit):
    task = submit("SERVICE_RESTART")
    with pytest.raises(Forbidden):
        services.set_owner_presence(world.deputy, world.system, owner_is_active=False)
    services.set_owner_presence(world.owner, world.system, owner_is_active=False)
    step = task.steps.get()
    assert step.assigned_to == world.deputy and step.original_owner == world.owner
    assert AuditEntry.objects.filter(action="owner.presence", target="BUDGET").exists()
    new_task = submit("SERVICE_RESTART")
    assert new_task.steps.get().routing == Routing.DELEGATED


def test_owner_who_files_the_request_is_skipped(world, submit):
    task = submit("SERVICE_RESTART", requester=world.owner)
    assert task.steps.get().assigned_to == world.deputy


def test_pm_validation_approve_rework_takeover(world, submit):
    task = submit("SERVICE_RESTART")
    services.decide_step(world.owner, task.steps.get().pk, "APPROVED")
    started = control.execution_started(task.pk)
    assert started.status == Status.EXECUTING
    control.execution_finished(task.pk, {"diff": "-a\n+b", "log": "ok"})
    with pytest.raises(Invalid, match="지시 사항"):
        control.validate_result(world.pm, task.task_id, "rework", "")
    with pytest.raises(Forbidden):
        control.validate_result(world.owner, task.task_id, "approve")
    control.validate_result(world.pm, task.task_id, "rework", "restart the other node too")
    task.refresh_from_db()
    assert task.status == Status.APPROVED and task.rework_round == 1
    control.execution_started(task.pk)
    control.execution_finished(task.pk, {"diff": ""})
    control.validate_result(world.pm, task.task_id, "approve")
    task.refresh_from_db()
    assert task.status == Status.COMPLETED
    assert Notification.objects.filter(user=world.requester, kind="completed").exists()
    with pytest.raises(Conflict):
        control.validate_result(world.pm, task.task_id, "takeover")


def test_execution_failure_outcomes(world, submit):
    task = submit("SERVICE_RESTART")
    services.decide_step(world.owner, task.steps.get().pk, "APPROVED")
    control.execution_started(task.pk)
    control.execution_failed(task.pk, "FAILED_ROLLED_BACK", "port 18080 not answering within 30 s on srv-07")
    task.refresh_from_db()
    assert task.status == Status.FAILED_ROLLED_BACK and "srv-07" in task.failure_reason
    with pytest.raises(ValueError):
        control.execution_failed(task.pk, "EXPLODED", "x")


def test_requester_cancels_before_approval_only(world, submit):
    task = submit("APP_DEPLOY")
    with pytest.raises(Forbidden):
        services.cancel_task(world.owner, task.task_id)
    services.cancel_task(world.requester, task.task_id, "잘못 접수")
    task.refresh_from_db()
    assert task.status == Status.CANCELLED
    assert not task.steps.filter(status=StepStatus.PENDING).exists()
    with pytest.raises(Conflict):
        services.cancel_task(world.requester, task.task_id)


@pytest.mark.parametrize("outcome", ["SUCCEEDED", "FAILED_ROLLED_BACK"])
def test_a_runs_end_neither_reads_nor_rewrites_the_approved_plan(world, submit, outcome):
    # At 1,000 servers the plan is megabytes of JSON: the end of a run leaves it in the database.
    task = submit("SERVICE_RESTART")
    services.decide_step(world.owner, task.steps.get().pk, "APPROVED")
    control.execution_started(task.pk)
    plan, plan_sha256 = OpsTask.objects.values_list("plan", "plan_sha256").get(pk=task.pk)
    assert plan
    with CaptureQueriesContext(connection) as queries:
        if outcome == "SUCCEEDED":
            ended = control.execution_finished(task.pk, {"diff": "", "log": "ok"})
        else:
            ended = control.execution_failed(task.pk, outcome, "port 18080 not answering", {"servers": []})
    assert "plan" in ended.get_deferred_fields()
    table, column = OpsTask._meta.db_table, OpsTask._meta.get_field("plan").column
    task_sql = [q["sql"] for q in queries if f'"{table}"' in q["sql"]]
    assert task_sql and not any(f'"{table}"."{column}"' in sql or f'"{column}" =' in sql for sql in task_sql), task_sql
    task.refresh_from_db()
    expected = Status.PENDING_PM_VALIDATION if outcome == "SUCCEEDED" else Status.FAILED_ROLLED_BACK
    assert task.status == expected and (task.plan, task.plan_sha256) == (plan, plan_sha256)
    assert task.result_package
