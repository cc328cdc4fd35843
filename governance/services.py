"""Governance services: every operation on tasks, approval steps, owners and the kill switch.

Each state change follows one shape (CONVENTIONS §4): in one transaction lock the task row,
call the FSM transition, save, write the audit entry, and schedule notifications, live
events and execution with transaction.on_commit. On SQLite the IMMEDIATE transaction mode
serialises writers at BEGIN; on PostgreSQL select_for_update does; ConcurrentTransitionMixin
refuses a save whose state moved underneath. Either way two approvers cannot both win.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from functools import partial

from django.conf import settings
from django.db import connection, transaction
from django.utils import timezone
from django.utils.module_loading import import_string
from django_fsm import TransitionNotAllowed, can_proceed, has_transition_perm
from django_q.tasks import async_task

import audit
from cmdb.models import Server, System, SystemOwner

from . import attachments, events, policy, routing
from .errors import Conflict, Forbidden, Invalid, NotFound
from .models import (
    ApprovalStep,
    GlobalStop,
    Notification,
    OpsTask,
    Status,
    StepStatus,
    SubType,
    TaskSequence,
)
from .notify import Action, Message, notify

ROLE_LABEL = {"owner": "시스템 담당자", "pm": "PM", "security_officer": "보안 담당자", "supervisor": "상급자"}


# --- helpers ------------------------------------------------------------------------
def task_link(task: OpsTask) -> str:
    return f"{settings.BASE_URL}/console/tasks/{task.task_id}/"


def audit_task(actor, action: str, task: OpsTask, **payload) -> None:
    payload.setdefault("institution", task.system.institution.code)
    payload.setdefault("status", task.status)
    audit.record(actor, action, task=task.task_id, target=task.system.code, payload=payload)


def _publish(task: OpsTask, kind: str, message: str = "", **data) -> None:
    event = events.LiveEvent(kind=kind, task_id=task.task_id, status=task.status, message=message,
                             data={"status_label": task.get_status_display(), **data})

    events.send_on_commit(events.task_group(task.task_id), event)
    events.send_on_commit(events.CONSOLE_GROUP, event)
    # Participants' own channels, so their dashboards follow tasks they are part of.
    ownership = routing.ownership_of(task)
    people = {task.requester_id, task.current_approver_id}
    if ownership is not None:
        people |= {ownership.owner_id, ownership.deputy_id, ownership.supervisor_id}
    for user_id in people - {None}:
        events.send_on_commit(events.user_group(user_id), event)


def apply_transition(actor, task: OpsTask, method: str, *args, reason: str = "") -> None:
    source = task.status
    bound = getattr(task, method)
    if not can_proceed(bound, check_conditions=False):
        raise Conflict(f"task {task.task_id} is {source}; cannot {method}")
    # People pass the transition's own permission too; the system (a string actor) does not need one.
    if hasattr(actor, "has_perm") and not has_transition_perm(bound, actor):
        raise Forbidden(f"you may not {method} task {task.task_id}")
    try:
        bound(*args)
    except TransitionNotAllowed as exc:
        raise Conflict(f"task {task.task_id} is {source}; cannot {method}") from exc
    task.save()
    audit_task(actor, "task.transition", task, source=source, target=task.status, reason=reason)
    _publish(task, "transition", reason or task.get_status_display())


TASK_RELATED = ("system__institution__pm", "requester", "system__ownership__owner", "system__ownership__deputy",
                "system__ownership__supervisor")


def lock_task(task_id: str | None = None, pk: int | None = None) -> OpsTask:
    # Lock only the task row: PostgreSQL refuses FOR UPDATE on the nullable side of the
    # outer joins that bring the owner table along.
    of = ("self",) if connection.features.has_select_for_update_of else ()
    query = OpsTask.objects.select_for_update(of=of).select_related(*TASK_RELATED)
    try:
        return query.get(task_id=task_id) if task_id is not None else query.get(pk=pk)
    except OpsTask.DoesNotExist as exc:
        raise NotFound(f"task {task_id or pk} not found") from exc


def _in_group(user, *names: str) -> bool:
    return user.is_superuser or user.groups.filter(name__in=names).exists()


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


# --- intake -------------------------------------------------------------------------
def submit_task(requester, *, system: System, sub_type: str, title: str, targets=(), parameters=None,
                raw_request: str = "", channel: str = "WEB", emergency: bool = False, sr_number: str = "",
                parsed: dict | None = None) -> OpsTask:
    if not requester.has_perm("governance.submit_task"):
        raise Forbidden("you may not submit requests")
    if not System.objects.for_user(requester).filter(pk=system.pk).exists():
        raise Forbidden(f"you may not file requests for system {system.code}")
    if sub_type not in SubType.values:
        raise Invalid(f"unknown sub_type {sub_type!r}", field="sub_type")
    if not title.strip():
        raise Invalid("a title is required", field="title")
    targets = list(targets)
    foreign = [s.server_id for s in targets if s.system_id != system.pk]
    if foreign:
        raise Invalid(f"servers not in system {system.code}: {', '.join(foreign)}", field="targets")
    parameters = dict(parameters or {})
    validator = getattr(settings, "PLAYBOOK_VALIDATOR", "")
    if validator:
        try:
            parameters = import_string(validator)(sub_type, parameters)
        except (ValueError, TypeError) as exc:
            raise Invalid(str(exc), field="parameters") from exc
    missing = attachments.missing_attachments(parameters)
    if missing:
        raise Invalid(f"no stored attachment for {', '.join(missing)}: upload the file with the request",
                      field="parameters")
    plan = policy.plan_for(sub_type=sub_type, tier=system.institution.tier, sensitive=system.sensitive,
                           in_window=system.in_window(), emergency=emergency)
    if plan.refused:
        audit.record(requester, "task.refused", target=system.code,
                     payload={"reason": plan.refused, "sub_type": sub_type, "institution": system.institution.code})
        raise Invalid(f"{plan.refused}; mark it as an emergency to request an extra approval", field="emergency")
    with transaction.atomic():
        task = OpsTask.objects.create(
            task_id=next_task_id(), category=policy.CATEGORY_BY_SUBTYPE[sub_type], sub_type=sub_type,
            title=title.strip()[:200], raw_request=raw_request, sr_number=sr_number, system=system,
            parameters=parameters, requester=requester, channel=channel, risk=plan.risk, emergency=emergency,
            playbook=sub_type,
        )
        task.targets.set(targets)
        task = lock_task(pk=task.pk)  # fresh owner row: the caller's System may carry a stale cached one
        audit_task(requester, "task.submitted", task, sub_type=sub_type, risk=plan.risk, channel=channel,
                    targets=[s.server_id for s in targets], emergency=emergency)
        apply_transition(requester, task, "mark_parsed", parsed or {"sub_type": sub_type, "targets": len(targets)})
        for order, role in enumerate(plan.roles, start=1):
            ApprovalStep.objects.create(task=task, step_order=order, role=role)
        if plan.auto_approve:
            apply_transition("policy", task, "approve",
                             reason=f"auto-approved: tier {system.institution.tier}, {plan.risk}")
            _enqueue_execution(task)
        else:
            apply_transition(requester, task, "request_approval")
            _activate_next_step(task)
    return task


def _enqueue_execution(task: OpsTask) -> None:
    transaction.on_commit(partial(async_task, "execution.tasks.run_task", task.pk, task_name=f"run-{task.task_id}"))


# --- approvals ----------------------------------------------------------------------
def _activate_next_step(task: OpsTask, now: dt.datetime | None = None) -> ApprovalStep | None:
    step = task.steps.filter(status=StepStatus.PENDING, activated_at__isnull=True).order_by("step_order").first()
    if step is None:
        return None
    assign_step(task, step, routing.assign(task, step.role), now or timezone.now())
    return step


def sla_for(task: OpsTask) -> dt.timedelta:
    ownership = routing.ownership_of(task)
    return dt.timedelta(minutes=ownership.sla_minutes if ownership else 10)


def assign_step(task: OpsTask, step: ApprovalStep, assignment: routing.Assignment, now: dt.datetime,
            escalated_from=None) -> None:
    step.assigned_to = assignment.user
    if not step.original_owner_id:
        step.original_owner = assignment.original_owner
    step.routing = assignment.routing
    step.escalation_level = assignment.level
    step.activated_at = step.activated_at or now
    step.sla_deadline = now + sla_for(task)
    step.reminded_at = None
    step.save(update_fields=["assigned_to", "original_owner", "routing", "escalation_level", "activated_at",
                             "sla_deadline", "reminded_at"])
    task.current_approver = assignment.user
    task.save(update_fields=["current_approver", "urgent", "updated_at"])
    action = "approval.escalated" if escalated_from else "approval.assigned"
    audit_task("system", action, task, step=step.step_order, role=step.role, routing=step.routing,
                original_owner=str(step.original_owner or ""), assigned_to=str(assignment.user or ""),
                escalated_from=str(escalated_from or ""))
    if assignment.user is None:
        for pm in _users_in("pm", "admin"):
            notify(pm, Message(f"승인자를 찾을 수 없습니다: {task.task_id} ({ROLE_LABEL.get(step.role)})",
                               kind="alert", task=task, link=task_link(task)))
        return
    prefix = "[긴급] " if task.urgent else ""
    notify(assignment.user, Message(
        f"{prefix}승인 요청 ({ROLE_LABEL.get(step.role, step.role)}, {step.get_routing_display()})\n{describe(task)}",
        kind="approval", task=task, link=task_link(task),
        actions=[Action("승인", "approve", step.pk), Action("반려", "reject", step.pk),
                 Action("열기", "open", url=task_link(task))],
    ))
    _publish(task, "step", f"step {step.step_order} → {assignment.user}", step=step.pk)


def _users_in(*groups: str):
    from django.contrib.auth import get_user_model

    return get_user_model().objects.filter(groups__name__in=groups, is_active=True).distinct()


@dataclass
class Decision:
    result: str  # "APPROVED" (task fully approved), "REJECTED", "NEXT_STEP"
    task: OpsTask
    next_step: ApprovalStep | None


def decide_step(user, step_id, decision: str, comments: str = "") -> Decision:
    if decision not in ("APPROVED", "REJECTED"):
        raise Invalid("decision must be APPROVED or REJECTED", field="decision")
    with transaction.atomic():
        try:
            step = ApprovalStep.objects.select_for_update().get(pk=step_id)
        except (ApprovalStep.DoesNotExist, ValueError, TypeError) as exc:
            raise NotFound(f"approval step {step_id} not found") from exc
        task = lock_task(pk=step.task_id)
        if task.stop_requested or task.status == Status.ABORTED:
            raise Conflict(f"task {task.task_id} was stopped by the kill switch: {task.stop_reason or 'stopped'}")
        if step.status != StepStatus.PENDING:
            raise Conflict(f"step {step.pk} was already decided ({step.get_status_display()})")
        if task.status != Status.PENDING_APPROVAL:
            raise Conflict(f"task {task.task_id} is {task.status}, not waiting for approval")
        if step.activated_at is None:
            raise Conflict(f"step {step.pk} is not open yet")
        if user.pk == task.requester_id:
            raise Forbidden("nobody approves their own request (four-eyes rule)")
        if user.pk != step.assigned_to_id or not user.has_perm("governance.decide_step"):
            raise Forbidden(f"step {step.pk} is assigned to someone else")
        step.status = StepStatus.APPROVED if decision == "APPROVED" else StepStatus.REJECTED
        step.actual_approver, step.comments, step.decided_at = user, comments, timezone.now()
        step.save()
        audit_task(user, "approval.decided", task, step=step.step_order, role=step.role, decision=decision,
                    comments=comments, routing=step.routing, original_owner=str(step.original_owner or ""),
                    actual_approver=user.get_username())
        if decision == "REJECTED":
            task.steps.filter(status=StepStatus.PENDING).update(status=StepStatus.SKIPPED)
            apply_transition(user, task, "reject", reason=comments or "rejected")
            notify(task.requester, Message(f"반려되었습니다: {task.task_id} — {comments}", kind="rejected",
                                           task=task, link=task_link(task)))
            return Decision("REJECTED", task, None)
        next_step = _activate_next_step(task)
        if next_step is not None:
            return Decision("NEXT_STEP", task, next_step)
        if not execution_allowed():
            raise Conflict(f"global stop is on: {global_stop_state().reason}")
        apply_transition(user, task, "approve", reason="all approval steps approved")
        notify(task.requester, Message(f"승인 완료, 실행 대기: {task.task_id}", kind="approved", task=task,
                                       link=task_link(task)))
        _enqueue_execution(task)
        return Decision("APPROVED", task, None)


def my_approvals(user):
    return (ApprovalStep.objects.open().filter(assigned_to=user, task__status=Status.PENDING_APPROVAL)
            .select_related("task__system__institution", "task__requester").order_by("sla_deadline"))


# --- owner settings -----------------------------------------------------------------
def set_owner_presence(user, system: System, *, deputy=None, owner_is_active: bool | None = None,
                       clear_deputy: bool = False) -> SystemOwner:
    """Only the owner sets their own deputy and away status; open steps follow the change."""
    with transaction.atomic():
        try:
            ownership = SystemOwner.objects.select_for_update().get(system=system)
        except SystemOwner.DoesNotExist as exc:
            raise NotFound(f"system {system.code} has no owner row") from exc
        if ownership.owner_id != user.pk:
            raise Forbidden("only the system's owner sets the deputy and away status")
        changed: dict[str, list] = {}
        if deputy is not None or clear_deputy:
            if deputy is not None and deputy.pk == user.pk:
                raise Invalid("the deputy must be someone other than the owner", field="deputy")
            if deputy is not None and not deputy.has_perm("governance.decide_step"):
                raise Invalid(f"{deputy} may not approve requests", field="deputy")
            changed["deputy"] = [str(ownership.deputy or ""), str(deputy or "")]
            ownership.deputy = deputy
        if owner_is_active is not None and owner_is_active != ownership.owner_is_active:
            changed["owner_is_active"] = [ownership.owner_is_active, owner_is_active]
            ownership.owner_is_active = owner_is_active
        if not changed:
            return ownership
        ownership.save()
        audit.record(user, "owner.presence", target=system.code,
                     payload={"changed": changed, "institution": system.institution.code})
        if not ownership.owner_is_active:
            _reroute_open_owner_steps(system, user)
    return ownership


def _reroute_open_owner_steps(system: System, away_owner) -> None:
    steps = ApprovalStep.objects.open().filter(task__system=system, role="owner", assigned_to=away_owner,
                                               task__status=Status.PENDING_APPROVAL)
    for step in steps.select_related("task"):
        task = lock_task(pk=step.task_id)
        assign_step(task, step, routing.assign(task, "owner"), timezone.now(), escalated_from=away_owner)


def cancel_task(user, task_id: str, reason: str = "") -> OpsTask:
    """The requester withdraws a request that has not been approved yet."""
    with transaction.atomic():
        task = lock_task(task_id=task_id)
        task.steps.filter(status=StepStatus.PENDING).update(status=StepStatus.SKIPPED)
        apply_transition(user, task, "cancel", reason=reason or "withdrawn by the requester")
        for step in task.steps.exclude(assigned_to=None).select_related("assigned_to"):
            notify(step.assigned_to, Message(f"요청 취소: {task.task_id}", kind="info", task=task,
                                             link=task_link(task)))
    return task


# --- kill switch --------------------------------------------------------------------
def global_stop_state() -> GlobalStop | None:
    return GlobalStop.objects.filter(id=1, engaged=True).first()


def execution_allowed() -> bool:
    return not GlobalStop.objects.filter(id=1, engaged=True).exists()


def _require_kill_switch(user) -> None:
    if not user.has_perm("governance.use_kill_switch"):
        raise Forbidden("only PMs and admins use the kill switch")


def stop_task(user, task_id: str, reason: str) -> OpsTask:
    """Per-task stop: a task not yet running is aborted at once; a running one stops at
    the engine's next step boundary and its current group rolls back."""
    _require_kill_switch(user)
    reason = reason.strip() or "stopped by operator"
    with transaction.atomic():
        task = lock_task(task_id=task_id)
        if task.status not in (Status.PARSED, Status.PENDING_APPROVAL, Status.APPROVED, Status.EXECUTING,
                               Status.RECEIVED):
            raise Conflict(f"task {task_id} is {task.status}; nothing to stop")
        task.stop_requested, task.stop_reason = True, reason
        task.save(update_fields=["stop_requested", "stop_reason", "updated_at"])
        audit.record(user, "killswitch.task", task=task.task_id, target=task.system.code,
                     payload={"reason": reason, "status": task.status, "institution": task.system.institution.code})
        if task.status != Status.EXECUTING:
            task.steps.filter(status=StepStatus.PENDING).update(status=StepStatus.SKIPPED)
            apply_transition(user, task, "abort", reason, reason=f"kill switch: {reason}")
        else:
            _publish(task, "stop", f"stop requested: {reason}")
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
        for person in _users_in("pm", "admin"):
            notify(person, Message(f"[전체 정지] {reason}", kind="alert", link=f"{settings.BASE_URL}/console/"))
        events.send_on_commit(events.BROADCAST_GROUP, events.LiveEvent(kind="stop", status="ENGAGED", message=reason))
    return stop


def release_global_stop(user, comment: str = "") -> GlobalStop:
    _require_kill_switch(user)
    with transaction.atomic():
        stop, _ = GlobalStop.objects.select_for_update().get_or_create(id=1)
        if not stop.engaged:
            raise Conflict("the global stop is not engaged")
        if stop.requires_ack and not _in_group(user, "admin"):
            raise Forbidden("an audit-chain break must be acknowledged by an admin")
        action = "killswitch.break_acknowledged" if stop.requires_ack else "killswitch.global_off"
        audit.record(user, action, payload={"reason": stop.reason, "comment": comment})
        stop.engaged, stop.requires_ack = False, False
        stop.save()
        events.send_on_commit(events.BROADCAST_GROUP, events.LiveEvent(kind="stop", status="RELEASED", message=comment))
        # Work approved while the stop was on waits in APPROVED; start it now.
        for task in OpsTask.objects.filter(status=Status.APPROVED, stop_requested=False):
            _enqueue_execution(task)
    return stop


def should_stop(task_pk: int) -> str | None:
    """Checked by the engine before every step and between servers."""
    row = OpsTask.objects.filter(pk=task_pk).values("stop_requested", "stop_reason").first()
    if row is None:
        return "task deleted"
    if row["stop_requested"]:
        return row["stop_reason"] or "stopped by operator"
    stop = global_stop_state()
    return f"global stop: {stop.reason}" if stop else None


# --- execution hooks (called by the execution worker) ---------------------------------
def execution_started(task_pk: int) -> OpsTask | None:
    """APPROVED -> EXECUTING, or None when the task must not run (gone, moved on, stopped)."""
    with transaction.atomic():
        task = OpsTask.objects.select_for_update().select_related("system__institution").filter(pk=task_pk).first()
        if task is None or task.status != Status.APPROVED:
            return None
        if task.stop_requested:
            apply_transition("system", task, "abort", task.stop_reason, reason=f"kill switch: {task.stop_reason}")
            return None
        if not execution_allowed():
            audit.record("system", "execution.blocked", task=task.task_id,
                         payload={"reason": f"global stop: {global_stop_state().reason}"})
            return None
        apply_transition("system", task, "start_execution")
    return task


def execution_finished(task_pk: int, package: dict) -> OpsTask:
    with transaction.atomic():
        task = lock_task(pk=task_pk)
        apply_transition("system", task, "finish_execution", package, reason="execution finished; PM validation")
        for pm in _validators_for(task):
            notify(pm, Message(f"결과 검증 요청\n{describe(task)}", kind="validation", task=task,
                               link=f"{task_link(task)}validate/"))
    return task


FAILURE_METHODS = {
    Status.FAILED_ROLLED_BACK: "fail_rolled_back",
    Status.MANUAL_INTERVENTION_REQUIRED: "require_manual",
    Status.STATE_UNCERTAIN: "lose_contact",
    Status.ABORTED: "abort",
}


def execution_failed(task_pk: int, outcome: str, reason: str) -> OpsTask:
    if outcome not in FAILURE_METHODS:
        raise ValueError(f"unknown outcome {outcome!r}")
    with transaction.atomic():
        task = lock_task(pk=task_pk)
        apply_transition("system", task, FAILURE_METHODS[outcome], reason, reason=reason)
        people = {task.requester, *_validators_for(task)}
        if outcome != Status.FAILED_ROLLED_BACK:
            people |= set(_users_in("admin"))
        for person in people:
            notify(person, Message(f"[{task.get_status_display()}] {task.task_id}: {reason}", kind="alert",
                                   task=task, link=task_link(task)))
    return task


def _validators_for(task: OpsTask) -> list:
    pm = task.system.institution.pm
    if pm and pm.is_active and pm.pk != task.requester_id:
        return [pm]
    return [u for u in _users_in("pm") if u.pk != task.requester_id][:1]


def open_inspection_ticket(system: System, servers, title: str, findings: dict) -> OpsTask:
    """A scheduled inspection crossed a threshold: open a ticket for the owner to act on."""
    ownership = SystemOwner.objects.select_related("owner").filter(system=system).first()
    with transaction.atomic():
        task = OpsTask.objects.create(
            task_id=next_task_id(), category=policy.CATEGORY_BY_SUBTYPE[SubType.MEMORY_CHECK],
            sub_type=SubType.MEMORY_CHECK, title=title[:200], system=system, parameters={"findings": findings},
            requester=ownership.supervisor if ownership else system.institution.pm, channel="SCHEDULE",
            risk=policy.RISK_BY_SUBTYPE[SubType.MEMORY_CHECK], result_package={"findings": findings}, urgent=True,
        )
        task.targets.set(servers)
        audit_task("system", "inspection.ticket", task, findings=findings)
        if ownership:
            notify(ownership.owner, Message(f"정기 점검 임계치 초과\n{describe(task)}", kind="alert", task=task,
                                            link=task_link(task)))
    return task


# --- HITL validation ----------------------------------------------------------------
def validate_result(user, task_id: str, verdict: str, comments: str = "") -> OpsTask:
    if verdict not in ("approve", "rework", "takeover"):
        raise Invalid("verdict must be approve, rework or takeover", field="verdict")
    if not user.has_perm("governance.validate_result"):
        raise Forbidden("only a PM validates results")
    if verdict == "rework" and not comments.strip():
        raise Invalid("instructions are required to send work back", field="comments")
    with transaction.atomic():
        task = lock_task(task_id=task_id)
        if task.status != Status.PENDING_PM_VALIDATION:
            raise Conflict(f"task {task_id} is {task.status}, not waiting for validation")
        if user.pk == task.requester_id:
            raise Forbidden("nobody validates their own request (four-eyes rule)")
        audit.record(user, "validation.decided", task=task.task_id,
                     payload={"verdict": verdict, "comments": comments, "round": task.rework_round,
                              "institution": task.system.institution.code})
        if verdict == "approve":
            apply_transition(user, task, "complete", reason="PM validated the result")
            notify(task.requester, Message(f"완료되었습니다: {task.task_id} {task.title}", kind="completed",
                                           task=task, link=task_link(task)))
        elif verdict == "rework":
            apply_transition(user, task, "send_back", comments,
                             reason=f"rework round {task.rework_round + 1}: {comments}")
            notify(task.requester, Message(f"재작업 요청 ({task.task_id}): {comments}", kind="rework", task=task,
                                           link=task_link(task)))
            if task.category == "CODE_CHANGE":
                _enqueue_execution(task)  # the work agent reworks from the instructions
        else:
            apply_transition(user, task, "require_manual", f"taken over by {user}: {comments}",
                        reason=f"PM took over: {comments}")
    return task


def resume_execution(user, task_id: str) -> OpsTask:
    """Run an APPROVED task again (after rework or once the global stop was released)."""
    with transaction.atomic():
        task = lock_task(task_id=task_id)
        if task.status != Status.APPROVED:
            raise Conflict(f"task {task_id} is {task.status}, not APPROVED")
        if user.pk != task.requester_id and not user.has_perm("governance.use_kill_switch"):
            raise Forbidden("only the requester or a PM resumes a task")
        audit.record(user, "task.resumed", task=task.task_id, payload={"institution": task.system.institution.code})
        _enqueue_execution(task)
    return task


# --- inbox --------------------------------------------------------------------------
def unread_count(user) -> int:
    return Notification.objects.filter(user=user, read_at__isnull=True).count()


def mark_read(user, notification_ids=None) -> int:
    query = Notification.objects.filter(user=user, read_at__isnull=True)
    if notification_ids is not None:
        query = query.filter(pk__in=notification_ids)
    return query.update(read_at=timezone.now())


def targets_in(system: System, server_ids) -> list[Server]:
    servers = list(Server.objects.filter(system=system, server_id__in=list(server_ids)))
    missing = set(server_ids) - {s.server_id for s in servers}
    if missing:
        raise Invalid(f"unknown servers for {system.code}: {', '.join(sorted(missing))}", field="targets")
    return servers


# Read models live in reports.py; re-exported so callers find every governance entry point here.
from .reports import dashboard_counts, statistics, task_timeline  # noqa: E402,F401
