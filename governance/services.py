"""Governance services: filing requests, approval steps, owner settings, the inbox.

Each state change follows one shape (helpers in transitions.py): in one
transaction lock the task row, call the FSM transition, save, write the audit entry, and
schedule notifications, live events and execution with transaction.on_commit. On SQLite
the IMMEDIATE transaction mode serialises writers at BEGIN; on PostgreSQL select_for_update
does; ConcurrentTransitionMixin refuses a save whose state moved underneath. Either way two
approvers cannot both win.

Kill switch, execution hooks and PM validation live in control.py, read models in
reports.py.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Required, TypedDict

from django.conf import settings
from django.db import transaction
from django.utils import timezone
from django.utils.module_loading import import_string

import audit
from cmdb.models import Server, System, SystemOwner

from . import attachments, plans, policy, rollup, routing
from .compiled import CompiledSelect, update_row
from .control import execution_allowed, global_stop_reason, require_step_up
from .errors import Conflict, Forbidden, Invalid, NotFound
from .models import ApprovalStep, Notification, OpsTask, Risk, Status, StepStatus, SubType
from .notify import Action, Message, notify
from .queries import load_permissions
from .transitions import (
    apply_transition,
    audit_task,
    describe,
    enqueue_execution,
    lock_step,
    lock_task,
    next_task_id,
    one_append,
    publish,
    task_link,
    users_in,
)

ROLE_LABEL = {"owner": "시스템 담당자", "pm": "PM", "security_officer": "보안 담당자", "supervisor": "상급자"}


# --- intake -------------------------------------------------------------------------
class Filing(TypedDict, total=False):
    """What a filing says besides its system, type, targets and parameters (submit_task's
    keywords of the same names; governance.submission.file_request passes them on)."""

    title: Required[str]
    raw_request: str
    channel: str
    emergency: bool
    sr_number: str
    parsed: dict | None


def submit_task(
    requester,
    *,
    system: System,
    sub_type: str,
    title: str,
    targets=(),
    parameters=None,
    raw_request: str = "",
    channel: str = "WEB",
    emergency: bool = False,
    sr_number: str = "",
    parsed: dict | None = None,
) -> OpsTask:
    if not requester.has_perm("governance.submit_task"):
        raise Forbidden("요청을 제출할 권한이 없습니다")
    if not System.objects.for_user(requester).filter(pk=system.pk).exists():
        raise Forbidden(f"시스템 {system.code}에 요청을 제출할 권한이 없습니다")
    if sub_type not in SubType.values:
        raise Invalid(f"알 수 없는 작업 유형입니다: {sub_type!r}", field="sub_type")
    if not title.strip():
        raise Invalid("제목을 입력하세요", field="title")
    targets = list(targets)
    foreign = [s.server_id for s in targets if s.system_id != system.pk]
    if foreign:
        raise Invalid(f"시스템 {system.code}에 속하지 않은 서버: {', '.join(foreign)}", field="targets")
    parameters = dict(parameters or {})
    validator = getattr(settings, "PLAYBOOK_VALIDATOR", "")
    if validator:
        try:
            parameters = import_string(validator)(sub_type, parameters)
        except (ValueError, TypeError) as exc:
            raise _parameter_error(exc) from exc
    missing = attachments.missing_attachments(parameters)
    if missing:
        raise Invalid(
            f"저장된 첨부 파일이 없습니다 ({', '.join(missing)}): 요청과 함께 파일을 올리세요", field="parameters"
        )
    plan = policy.plan_for(
        sub_type=sub_type,
        tier=system.institution.tier,
        sensitive=system.sensitive,
        in_window=system.in_window(),
        emergency=emergency,
    )
    if plan.refused:
        audit.record(
            requester,
            "task.refused",
            target=system.code,
            payload={"reason": plan.refused, "sub_type": sub_type, "institution": system.institution.code},
        )
        raise Invalid(f"{plan.refused}; 추가 승인을 받으려면 긴급 변경으로 표시하세요", field="emergency")
    with transaction.atomic():
        task_id = next_task_id()
        # The plan is rendered before anyone is asked: what the approvers see is what runs.
        # A refusal rolls the whole transaction back, task number included.
        execution_plan = _render_plan(sub_type, parameters, system, targets, task_id)
        task = OpsTask.objects.create(
            task_id=task_id,
            category=policy.CATEGORY_BY_SUBTYPE[sub_type],
            sub_type=sub_type,
            title=title.strip()[:200],
            raw_request=raw_request,
            sr_number=sr_number,
            system=system,
            parameters=parameters,
            requester=requester,
            channel=channel,
            risk=plan.risk,
            emergency=emergency,
            playbook=sub_type,
            plan=execution_plan,
            plan_sha256=plans.plan_sha256(execution_plan),
            playbook_version=str(execution_plan.get("playbook_version") or "")[:16],
        )
        task.targets.set(targets)
        task = lock_task(pk=task.pk)  # fresh owner row: the caller's System may carry a stale cached one
        audit_task(
            requester,
            "task.submitted",
            task,
            sub_type=sub_type,
            risk=plan.risk,
            channel=channel,
            targets=[s.server_id for s in targets],
            emergency=emergency,
            plan_sha256=task.plan_sha256,
            playbook_version=task.playbook_version,
        )
        apply_transition(requester, task, "mark_parsed", parsed or {"sub_type": sub_type, "targets": len(targets)})
        for order, role in enumerate(plan.roles, start=1):
            ApprovalStep.objects.create(task=task, step_order=order, role=role)
        if plan.auto_approve:
            apply_transition(
                "policy", task, "approve", reason=f"auto-approved: tier {system.institution.tier}, {plan.risk}"
            )
            enqueue_execution(task)
        else:
            apply_transition(requester, task, "request_approval")
            _activate_next_step(task)
    return task


# Fields a parameter error may name as they are; anything else is a playbook parameter.
SUBMISSION_FIELDS = {"system", "sub_type", "title", "targets", "emergency", "parameters"}


def _parameter_error(exc: Exception) -> Invalid:
    """A playbook's ParameterError ({field: message}) as one Invalid naming every field,
    e.g. ``parameters.log_path``; any other ValueError names ``parameters``."""
    errors = getattr(exc, "errors", None)
    if not isinstance(errors, dict) or not errors:
        return Invalid(str(exc), field="parameters")
    named: dict[str, str] = {}
    for name, message in errors.items():
        name = str(name)
        if name == "playbook":
            name = "sub_type"
        elif name.split(".", 1)[0] not in SUBMISSION_FIELDS:
            name = f"parameters.{name}"
        named[name] = str(message)
    return Invalid.from_fields(named)


def _render_plan(sub_type: str, parameters: dict, system: System, targets: list, task_id: str) -> dict:
    try:
        rendered = plans.render_plan(sub_type, parameters, system, targets, task_ref=task_id)
    except (ValueError, TypeError) as exc:
        raise _parameter_error(exc) from exc
    if not isinstance(rendered, dict) or not rendered.get("step_sets"):
        # Nothing would run (no active target): such a request can only fail after its approvals.
        reason = "; ".join(rendered.get("warnings") or []) if isinstance(rendered, dict) else ""
        raise Invalid(reason or f"이 서버들에 대해 {sub_type} 실행 계획을 만들 수 없습니다", field="targets")
    return rendered


# --- approvals ----------------------------------------------------------------------
# The task's next step to open, in order (compiled once: see compiled.CompiledSelect).
NEXT_STEP = CompiledSelect(
    lambda task: ApprovalStep.objects.filter(
        task_id=task, status=StepStatus.PENDING, activated_at__isnull=True
    ).order_by("step_order"),
    "task",
)


def _activate_next_step(task: OpsTask, now: dt.datetime | None = None) -> ApprovalStep | None:
    step = NEXT_STEP.first(task=task.pk)
    if step is None:
        return None
    assign_step(task, step, routing.assign(task, step.role), now or timezone.now())
    return step


def sla_for(task: OpsTask) -> dt.timedelta:
    ownership = routing.ownership_of(task)
    return dt.timedelta(minutes=ownership.sla_minutes if ownership else 10)


def assign_step(
    task: OpsTask, step: ApprovalStep, assignment: routing.Assignment, now: dt.datetime, escalated_from=None
) -> None:
    step.assigned_to = assignment.user
    if not step.original_owner_id:
        step.original_owner = assignment.original_owner
    was_routing, step.routing = step.routing, assignment.routing
    step.escalation_level = assignment.level
    step.activated_at = step.activated_at or now
    step.sla_deadline = now + sla_for(task)
    step.reminded_at = None
    step.save(
        update_fields=[
            "assigned_to",
            "original_owner",
            "routing",
            "escalation_level",
            "activated_at",
            "sla_deadline",
            "reminded_at",
        ]
    )
    task.current_approver = assignment.user
    task.save(update_fields=["current_approver", "urgent", "updated_at"])
    rollup.on_step_routed(task, step, was_routing)
    action = "approval.escalated" if escalated_from else "approval.assigned"
    audit_task(
        "system",
        action,
        task,
        step=step.step_order,
        role=step.role,
        routing=step.routing,
        original_owner=str(step.original_owner or ""),
        assigned_to=str(assignment.user or ""),
        escalated_from=str(escalated_from or ""),
    )
    if assignment.user is None:
        for pm in users_in("pm", "admin"):
            notify(
                pm,
                Message(
                    f"승인자를 찾을 수 없습니다: {task.task_id} ({ROLE_LABEL.get(step.role)})",
                    kind="alert",
                    task=task,
                    link=task_link(task),
                ),
            )
        return
    prefix = "[긴급] " if task.urgent else ""
    plan_line = plans.summary(task.plan, task.plan_sha256)
    notify(
        assignment.user,
        Message(
            f"{prefix}승인 요청 ({ROLE_LABEL.get(step.role, step.role)}, {step.get_routing_display()})\n"
            + describe(task)
            + (f"\n{plan_line}" if plan_line else ""),
            kind="approval",
            task=task,
            link=task_link(task),
            actions=[
                Action("승인", "approve", step.pk),
                Action("반려", "reject", step.pk),
                Action("열기", "open", url=task_link(task)),
            ],
        ),
    )
    publish(task, "step", f"step {step.step_order} → {assignment.user}", step=step.pk)


@dataclass
class Decision:
    result: str  # "APPROVED" (task fully approved), "REJECTED", "NEXT_STEP"
    task: OpsTask
    next_step: ApprovalStep | None


def decide_step(user, step_id, decision: str, comments: str = "", plan_sha256: str = "") -> Decision:
    if decision not in ("APPROVED", "REJECTED"):
        raise Invalid("결정은 APPROVED 또는 REJECTED여야 합니다", field="decision")
    comments = (comments or "").strip()
    if decision == "REJECTED" and not comments:
        raise Invalid("반려 사유(의견)를 입력하세요.", field="comments")
    # The caller's permissions are read before the write transaction (one compiled query, cached
    # on the user object for the checks inside it), so SQLite's write turn is not held for them.
    load_permissions(user)
    # One audit append at the end of the transaction for the decision, the transition and
    # the next step's assignment (transitions.one_append).
    with transaction.atomic(), one_append():
        # Authorisation first: a step on a task the user may not see is "not found", before
        # any state (decided, stopped, ...) could be told about it.
        step = lock_step(user, step_id)
        task = step.task
        if user.pk == task.requester_id:
            raise Forbidden("자신의 요청은 승인할 수 없습니다 (4-eyes 원칙)")
        if user.pk != step.assigned_to_id or not user.has_perm("governance.decide_step"):
            raise Forbidden(f"승인 단계 {step.pk}은(는) 다른 사람에게 배정되어 있습니다")
        if task.stop_requested or task.status == Status.ABORTED:
            raise Conflict(f"{task.task_id}은(는) 킬 스위치로 중지되었습니다: {task.stop_reason or '중지'}")
        if step.status != StepStatus.PENDING:
            raise Conflict(f"승인 단계 {step.pk}은(는) 이미 결정되었습니다 ({step.get_status_display()})")
        if task.status != Status.PENDING_APPROVAL:
            raise Conflict(
                f"{task.task_id}은(는) {task.get_status_display()} 상태({task.status})로 승인 대기 중이 아닙니다"
            )
        if step.activated_at is None:
            raise Conflict(f"승인 단계 {step.pk}은(는) 아직 열리지 않았습니다")
        if task.risk in (Risk.HIGH, Risk.CRITICAL):
            require_step_up(user, "approval.decided")
        plans.check_plan(task, plan_sha256)
        playbook_version = str(task.plan.get("playbook_version") or task.playbook_version)
        step.status = StepStatus.APPROVED if decision == "APPROVED" else StepStatus.REJECTED
        step.actual_approver, step.comments, step.decided_at = user, comments, timezone.now()
        update_row(step, ("status", "actual_approver", "comments", "decided_at"))  # the row is locked
        audit_task(
            user,
            "approval.decided",
            task,
            step=step.step_order,
            role=step.role,
            decision=decision,
            comments=comments,
            routing=step.routing,
            # The owner usually decides their own step: no second read of the same user row.
            original_owner=str((user if step.original_owner_id == user.pk else step.original_owner) or ""),
            actual_approver=user.get_username(),
            plan_sha256=task.plan_sha256,
            playbook_version=playbook_version,
        )
        if decision == "REJECTED":
            task.steps.filter(status=StepStatus.PENDING).update(status=StepStatus.SKIPPED)
            apply_transition(user, task, "reject", reason=comments, changed=())
            notify(
                task.requester,
                Message(
                    f"반려되었습니다: {task.task_id} — {comments}", kind="rejected", task=task, link=task_link(task)
                ),
            )
            return Decision("REJECTED", task, None)
        next_step = _activate_next_step(task)
        if next_step is not None:
            return Decision("NEXT_STEP", task, next_step)
        if not execution_allowed():
            raise Conflict(f"전체 중지가 켜져 있습니다: {global_stop_reason()}")
        # The approved playbook version is the one that must run: the engine refuses another.
        task.playbook_version = playbook_version[:16]
        apply_transition(
            user,
            task,
            "approve",
            reason=f"all approval steps approved (plan {task.plan_sha256[:12]}, "
            f"playbook {task.playbook} v{task.playbook_version})",
            changed=("playbook_version",),
        )
        notify(
            task.requester,
            Message(f"승인 완료, 실행 대기: {task.task_id}", kind="approved", task=task, link=task_link(task)),
        )
        enqueue_execution(task, with_change=True)
        return Decision("APPROVED", task, None)


def my_approvals(user):
    return (
        ApprovalStep.objects.open()
        .filter(assigned_to=user, task__status=Status.PENDING_APPROVAL)
        .select_related("task__system__institution", "task__requester")
        .order_by("sla_deadline")
    )


# --- owner settings -----------------------------------------------------------------
def set_owner_presence(
    user, system: System, *, deputy=None, owner_is_active: bool | None = None, clear_deputy: bool = False
) -> SystemOwner:
    """Only the owner sets their own deputy and away status; open steps follow the change."""
    with transaction.atomic():
        try:
            ownership = SystemOwner.objects.select_for_update().get(system=system)
        except SystemOwner.DoesNotExist as exc:
            raise NotFound(f"시스템 {system.code}에 담당자 정보가 없습니다") from exc
        if ownership.owner_id != user.pk:
            raise Forbidden("대리 승인자와 부재 상태는 시스템 담당자만 설정합니다")
        changed: dict[str, list] = {}
        if deputy is not None or clear_deputy:
            if deputy is not None and deputy.pk == user.pk:
                raise Invalid("대리 승인자는 담당자가 아닌 다른 사람이어야 합니다", field="deputy")
            if deputy is not None and not deputy.has_perm("governance.decide_step"):
                raise Invalid(f"{deputy}은(는) 요청을 승인할 수 없습니다", field="deputy")
            changed["deputy"] = [str(ownership.deputy or ""), str(deputy or "")]
            ownership.deputy = deputy
        if owner_is_active is not None and owner_is_active != ownership.owner_is_active:
            changed["owner_is_active"] = [ownership.owner_is_active, owner_is_active]
            ownership.owner_is_active = owner_is_active
        if not changed:
            return ownership
        ownership.save()
        audit.record(
            user,
            "owner.presence",
            target=system.code,
            payload={"changed": changed, "institution": system.institution.code},
        )
        if not ownership.owner_is_active:
            _reroute_open_owner_steps(system, user)
    return ownership


def _reroute_open_owner_steps(system: System, away_owner) -> None:
    steps = ApprovalStep.objects.open().filter(
        task__system=system, role="owner", assigned_to=away_owner, task__status=Status.PENDING_APPROVAL
    )
    for step in steps.select_related("task"):
        task = lock_task(pk=step.task_id)
        assign_step(task, step, routing.assign(task, "owner"), timezone.now(), escalated_from=away_owner)


def reroute_steps_of_inactive_user(user) -> int:
    """An account that may no longer act (disabled in the directory): each open step
    waiting on it goes to the next person on its ladder, as for an away owner. Returns
    how many steps moved."""
    moved = 0
    with transaction.atomic():
        steps = ApprovalStep.objects.open().filter(assigned_to=user, task__status=Status.PENDING_APPROVAL)
        for step in steps.select_related("task"):
            task = lock_task(pk=step.task_id)
            assign_step(task, step, routing.assign(task, step.role), timezone.now(), escalated_from=user)
            moved += 1
    return moved


def cancel_task(user, task_id: str, reason: str = "") -> OpsTask:
    """The requester withdraws a request that has not been approved yet."""
    with transaction.atomic():
        task = lock_task(task_id=task_id)
        task.steps.filter(status=StepStatus.PENDING).update(status=StepStatus.SKIPPED)
        apply_transition(user, task, "cancel", reason=reason or "withdrawn by the requester")
        for step in task.steps.exclude(assigned_to=None).select_related("assigned_to"):
            notify(
                step.assigned_to, Message(f"요청 취소: {task.task_id}", kind="info", task=task, link=task_link(task))
            )
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
        raise Invalid(f"시스템 {system.code}에 없는 서버: {', '.join(sorted(missing))}", field="targets")
    return servers
