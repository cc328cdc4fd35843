"""Kill switch, the execution worker's hooks, and the PM's validation of results (HITL).

The execution layer calls execution_started / should_stop / execution_finished /
execution_failed / open_inspection_ticket (re-exported by services.py); governance never
imports execution.
"""

from __future__ import annotations

from functools import partial

from django.conf import settings
from django.db import connection, transaction
from django.utils import timezone
from django.utils.module_loading import import_string
from django.utils.translation import gettext
from django_q.tasks import async_task

import audit
from cmdb.models import System, SystemOwner

from . import events, plans, policy
from .compiled import CompiledSelect
from .errors import Conflict, Forbidden, Invalid
from .models import STOPPABLE, GlobalStop, OpsTask, Status, StepStatus, SubType
from .notify import Message, notify
from .queries import visible_task
from .transitions import (
    apply_transition,
    audit_task,
    describe,
    enqueue_execution,
    lock_task,
    next_task_id,
    publish,
    publish_line,
    task_link,
    users_in,
)

# --- kill switch --------------------------------------------------------------------
# The engaged global stop, if any: asked by every final approval, run and console page
# (compiled once, see CompiledSelect).
_ENGAGED = CompiledSelect(lambda: GlobalStop.objects.filter(id=1, engaged=True))


def global_stop_state() -> GlobalStop | None:
    return _ENGAGED.first()


def global_stop_reason() -> str:
    """Why the global stop is on ("" once it has been released meanwhile)."""
    stop = global_stop_state()
    return stop.reason if stop else ""


def execution_allowed() -> bool:
    return global_stop_state() is None


def _require_kill_switch(user) -> None:
    if not user.has_perm("governance.use_kill_switch"):
        raise Forbidden("킬 스위치를 사용할 권한이 없습니다")  # who may: cmdb/roles.py


def stop_task(user, task_id: str, reason: str) -> OpsTask:
    """Per-task stop: a task not yet running is aborted at once; a running one stops at
    the engine's next step boundary and its current group rolls back.

    Order matters: a task the user may not see is NotFound before the permission and the
    state are looked at, so neither its existence nor its state or stop reason leaks."""
    reason = reason.strip() or "stopped by operator"
    with transaction.atomic():
        visible_task(user, task_id)
        _require_kill_switch(user)
        task = lock_task(task_id=task_id)
        if task.status not in STOPPABLE:
            raise Conflict(f"{task_id}은(는) {task.get_status_display()} 상태({task.status})라 중지할 것이 없습니다")
        task.stop_requested, task.stop_reason = True, reason
        task.save(update_fields=["stop_requested", "stop_reason", "updated_at"])
        audit.record(
            user,
            "killswitch.task",
            task=task.task_id,
            target=task.system.code,
            payload={"reason": reason, "status": task.status, "institution": task.system.institution.code},
        )
        if task.status != Status.EXECUTING:
            task.steps.filter(status=StepStatus.PENDING).update(status=StepStatus.SKIPPED)
            apply_transition(user, task, "abort", reason, reason=f"kill switch: {reason}")
        else:
            publish(task, "stop", f"stop requested: {reason}")
    return task


def engage_global_stop(actor, reason: str, requires_ack: bool = False) -> GlobalStop:
    with transaction.atomic():
        stop, _ = GlobalStop.objects.select_for_update().get_or_create(id=1)
        if hasattr(actor, "has_perm"):
            _require_kill_switch(actor)
        stop.engaged, stop.reason, stop.engaged_at = True, reason[:300], timezone.now()
        stop.engaged_by = actor.get_username() if hasattr(actor, "get_username") else str(actor or "system")
        stop.requires_ack = stop.requires_ack or requires_ack
        stop.save()
        audit.record(actor, "killswitch.global_on", payload={"reason": reason, "requires_ack": stop.requires_ack})
        for person in users_in("pm", "admin"):
            notify(person, Message(f"[전체 정지] {reason}", kind="alert", link=f"{settings.BASE_URL}/console/"))
        events.send_on_commit(events.BROADCAST_GROUP, events.LiveEvent(kind="stop", status="ENGAGED", message=reason))
    return stop


def require_step_up(user, action: str) -> None:
    """A fresh second factor before the decisions that change production the most; the
    check is named in settings (STEP_UP_CHECK, empty: none), so governance does not know
    how the factor is entered."""
    path = getattr(settings, "STEP_UP_CHECK", "")
    if path and not import_string(path)(user, action):
        raise Forbidden("이 결정에는 방금 확인한 2차 인증이 필요합니다: /accounts/otp/ 에서 인증한 뒤 다시 하세요.")


def release_global_stop(user, comment: str = "") -> GlobalStop:
    _require_kill_switch(user)
    require_step_up(user, "killswitch.global_off")
    with transaction.atomic():
        stop, _ = GlobalStop.objects.select_for_update().get_or_create(id=1)
        if not stop.engaged:
            raise Conflict("전체 중지가 켜져 있지 않습니다")
        if stop.requires_ack and not user.has_perm("governance.change_globalstop"):
            raise Forbidden("감사 체인 손상은 관리자가 확인해야 합니다")
        action = "killswitch.break_acknowledged" if stop.requires_ack else "killswitch.global_off"
        audit.record(user, action, payload={"reason": stop.reason, "comment": comment})
        stop.engaged, stop.requires_ack = False, False
        stop.save()
        events.send_on_commit(events.BROADCAST_GROUP, events.LiveEvent(kind="stop", status="RELEASED", message=comment))
        # Work approved while the stop was on waits in APPROVED; start it now.
        for task in OpsTask.objects.filter(status=Status.APPROVED, stop_requested=False):
            enqueue_execution(task)
    return stop


def should_stop(task_pk: int) -> str | None:
    """Checked by the engine every STOP_POLL_SECONDS while a run lasts (and before each group).

    One statement reads the task's stop flag and the engaged global stop together: the
    engine polls ten times a second for the whole run, and under the run's own load every
    statement costs the orchestrating thread a GIL hand-off (two ORM queries were 5-10 s of
    a 1,000-server deploy). Reading the rows themselves, not a stamp that the stop paths bump,
    keeps every way a stop is set (the console, the API, an update by hand) seen at once."""
    with connection.cursor() as cursor:
        cursor.execute(_stop_sql(connection), [True, task_pk])
        row = cursor.fetchone()
    if row is None:
        return gettext("작업이 삭제되었습니다")
    requested, reason, global_reason = row
    if requested:
        return reason or gettext("운영자가 중지했습니다")
    return gettext("전체 정지: %(reason)s") % {"reason": global_reason} if global_reason is not None else None


_STOP_SQL: dict[str, str] = {}


def _stop_sql(conn) -> str:
    """The stop check's statement for this database (built once per backend: no ORM compile per poll)."""
    sql = _STOP_SQL.get(conn.vendor)
    if sql is None:
        qn = conn.ops.quote_name

        def column(model, name: str) -> str:
            return qn(model._meta.get_field(name).column)

        sql = _STOP_SQL[conn.vendor] = (
            f"SELECT t.{column(OpsTask, 'stop_requested')}, t.{column(OpsTask, 'stop_reason')}, "
            f"g.{column(GlobalStop, 'reason')} "
            f"FROM {qn(OpsTask._meta.db_table)} t LEFT JOIN {qn(GlobalStop._meta.db_table)} g "
            f"ON g.{column(GlobalStop, 'id')} = 1 AND g.{column(GlobalStop, 'engaged')} = %s "
            f"WHERE t.{column(OpsTask, 'id')} = %s"
        )
    return sql


# --- execution hooks (called by the execution worker) ---------------------------------
def execution_started(task_pk: int) -> OpsTask | None:
    """APPROVED -> EXECUTING, or None when the task must not run (gone, moved on, stopped)."""
    with transaction.atomic():
        # Not the approved plan: the run renders its own and compares hashes (execution.services);
        # held for the whole run, a 1,000-server plan was ~17 MB of parsed JSON in the worker.
        task = (
            OpsTask.objects.select_for_update()
            .select_related("system__institution")
            .defer("plan")
            .filter(pk=task_pk)
            .first()
        )
        if task is None or task.status != Status.APPROVED:
            return None
        if task.stop_requested:
            apply_transition("system", task, "abort", task.stop_reason, reason=f"kill switch: {task.stop_reason}")
            return None
        if not execution_allowed():
            audit.record(
                "system",
                "execution.blocked",
                task=task.task_id,
                payload={"reason": f"global stop: {global_stop_reason()}"},
            )
            return None
        apply_transition("system", task, "start_execution")
    return task


# A run's end does not read the approved plan: at 1,000 servers it is megabytes of JSON that the
# worker would parse and write back unchanged at the end of every run (its memory peak).
WITHOUT_PLAN = ("plan",)


def execution_finished(task_pk: int, package: dict) -> OpsTask:
    with transaction.atomic():
        task = lock_task(pk=task_pk, defer=WITHOUT_PLAN)
        apply_transition("system", task, "finish_execution", package, reason="execution finished; PM validation")
        for pm in _validators_for(task):
            notify(
                pm,
                Message(
                    f"결과 검증 요청\n{describe(task)}",
                    kind="validation",
                    task=task,
                    link=f"{task_link(task)}validate/",
                ),
            )
    return task


FAILURE_METHODS: dict[str, str] = {
    Status.FAILED_ROLLED_BACK: "fail_rolled_back",
    Status.MANUAL_INTERVENTION_REQUIRED: "require_manual",
    Status.STATE_UNCERTAIN: "lose_contact",
    Status.ABORTED: "abort",
}


def execution_failed(task_pk: int, outcome: str, reason: str, package: dict | None = None) -> OpsTask:
    """A run ended in a failure state. The engine's result package, when it has one, is kept on
    the task so the task page can show what each server did."""
    if outcome not in FAILURE_METHODS:
        raise ValueError(f"unknown outcome {outcome!r}")
    with transaction.atomic():
        task = lock_task(pk=task_pk, defer=WITHOUT_PLAN)
        if package:
            task.result_package = package
        apply_transition("system", task, FAILURE_METHODS[outcome], reason, reason=reason)
        people = {task.requester, *_validators_for(task)}
        if outcome != Status.FAILED_ROLLED_BACK:
            people |= set(users_in("admin"))
        for person in people:
            notify(
                person,
                Message(
                    f"[{task.get_status_display()}] {task.task_id}: {reason}",
                    kind="alert",
                    task=task,
                    link=task_link(task),
                ),
            )
    return task


def _validators_for(task: OpsTask) -> list:
    pm = task.system.institution.pm
    if pm and pm.is_active and pm.pk != task.requester_id:
        return [pm]
    return [u for u in users_in("pm") if u.pk != task.requester_id][:1]


def open_inspection_ticket(system: System, servers, title: str, findings: dict) -> OpsTask:
    """A scheduled inspection crossed a threshold: open a ticket for the owner to act on."""
    ownership = SystemOwner.objects.select_related("owner").filter(system=system).first()
    with transaction.atomic():
        task = OpsTask.objects.create(
            task_id=next_task_id(),
            category=policy.CATEGORY_BY_SUBTYPE[SubType.MEMORY_CHECK],
            sub_type=SubType.MEMORY_CHECK,
            title=title[:200],
            system=system,
            parameters={"findings": findings},
            requester=ownership.supervisor if ownership else system.institution.pm,
            channel="SCHEDULE",
            risk=policy.RISK_BY_SUBTYPE[SubType.MEMORY_CHECK],
            result_package={"findings": findings},
            urgent=True,
        )
        task.targets.set(servers)
        audit_task("system", "inspection.ticket", task, findings=findings)
        if ownership:
            notify(
                ownership.owner,
                Message(f"정기 점검 임계치 초과\n{describe(task)}", kind="alert", task=task, link=task_link(task)),
            )
    return task


# --- HITL validation ----------------------------------------------------------------
def validate_result(user, task_id: str, verdict: str, comments: str = "", plan_sha256: str = "") -> OpsTask:
    if verdict not in ("approve", "rework", "takeover"):
        raise Invalid("판정은 approve, rework, takeover 중 하나여야 합니다", field="verdict")
    if verdict == "rework" and not comments.strip():
        raise Invalid("재작업을 요청하려면 지시 사항을 입력하세요", field="comments")
    with transaction.atomic():
        visible_task(user, task_id)  # 404 before the permission and any state check
        if not user.has_perm("governance.validate_result"):
            raise Forbidden("결과 검증은 PM만 할 수 있습니다")
        task = lock_task(task_id=task_id)
        if task.status != Status.PENDING_PM_VALIDATION:
            raise Conflict(f"{task_id}은(는) {task.get_status_display()} 상태({task.status})로 검증 대기 중이 아닙니다")
        if user.pk == task.requester_id:
            raise Forbidden("자신의 요청은 검증할 수 없습니다 (4-eyes 원칙)")
        plans.check_plan(task, plan_sha256)
        decided = audit.record(
            user,
            "validation.decided",
            task=task.task_id,
            payload={
                "verdict": verdict,
                "comments": comments,
                "round": task.rework_round,
                "institution": task.system.institution.code,
                "plan_sha256": task.plan_sha256,
                "playbook_version": task.playbook_version,
            },
        )
        publish_line(task.task_id, decided)
        if verdict == "approve":
            apply_transition(user, task, "complete", reason="PM validated the result")
            if task.sub_type == SubType.CODE_FIX:
                # The accepted change's artifact is deployed by a task of its own, through the
                # approval policy and the rolling engine, filed by the worker (by task name).
                transaction.on_commit(
                    partial(
                        async_task,
                        "execution.tasks.deploy_code_change",
                        task.pk,
                        user.pk,
                        task_name=f"deploy-{task.task_id}",
                    )
                )
            notify(
                task.requester,
                Message(
                    f"완료되었습니다: {task.task_id} {task.title}", kind="completed", task=task, link=task_link(task)
                ),
            )
        elif verdict == "rework" and task.sub_type == SubType.CODE_FIX and task.rework_round + 2 > _max_rounds():
            # The agent had its last round: a person takes the change over.
            audit_task(user, "agent.max_rounds", task, rounds=task.rework_round + 1, instruction=comments)
            apply_transition(
                user,
                task,
                "require_manual",
                f"AI 에이전트 최대 회차({_max_rounds()}) 도달: {comments}",
                reason=f"agent reached its maximum of {_max_rounds()} rounds",
            )
        elif verdict == "rework":
            apply_transition(
                user, task, "send_back", comments, reason=f"rework round {task.rework_round + 1}: {comments}"
            )
            notify(
                task.requester,
                Message(f"재작업 요청 ({task.task_id}): {comments}", kind="rework", task=task, link=task_link(task)),
            )
            if task.category == "CODE_CHANGE":
                enqueue_execution(task)  # the work agent reworks from the instructions
        else:
            apply_transition(
                user, task, "require_manual", f"taken over by {user}: {comments}", reason=f"PM took over: {comments}"
            )
    return task


def _max_rounds() -> int:
    return int(getattr(settings, "AGENT_MAX_ROUNDS", 3))


def resume_execution(user, task_id: str) -> OpsTask:
    """Run an APPROVED task again (after rework or once the global stop was released)."""
    with transaction.atomic():
        visible_task(user, task_id)
        task = lock_task(task_id=task_id)
        if user.pk != task.requester_id and not user.has_perm("governance.use_kill_switch"):
            raise Forbidden("요청자나 PM만 작업을 재개할 수 있습니다")
        if task.status != Status.APPROVED:
            raise Conflict(f"{task_id}은(는) {task.get_status_display()} 상태({task.status})로 승인됨 상태가 아닙니다")
        audit.record(user, "task.resumed", task=task.task_id, payload={"institution": task.system.institution.code})
        enqueue_execution(task)
    return task
