"""What a person types to the GUARDiA bot, whichever messenger carried it.

The caller has already authenticated the sender (the homeserver signs nothing but
authenticates every event's sender; a webhook request is checked by token or HMAC) and
mapped it to a GUARDiA user; only then does ``handle`` run. Every command goes through the
same governance services as the console, so the same permissions, scopes and four-eyes
rules apply; a refusal comes back as a Korean sentence and is audited.
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass

from django.conf import settings
from django.contrib.auth import get_user_model
from django.utils import timezone

import audit
from cmdb.models import SystemOwner
from governance import control, plans, services
from governance.errors import Conflict, Forbidden, GovernanceError, Invalid
from governance.models import ApprovalStep, OpsTask, Risk, StepStatus
from governance.queries import visible_task
from governance.transitions import task_link

from .. import services as intake_services
from ..models import IntakeRequest, MessengerIdentity, OutboxMessage
from . import outbox

HELP = """GUARDiA 봇 명령
• 자유 문장: 작업 요청 접수 (예: 기재부 예산시스템 WAS1번 재시작해 주세요). 확인 질문에는 이 대화방에서 답하세요.
• 상태 OPS-…: 작업 상태와 실행 계획
• 승인 OPS-… / 반려 OPS-… 사유: 배정된 승인 (위험도 낮음·보통). 높음·치명은 재인증 링크로 답합니다.
• 정지 OPS-… [사유] / 정지 전체 [사유]: 킬 스위치 (권한이 있는 사람만)
• 대리 지정 @사용자 / 대리 해제: 내 시스템의 대리 승인자
• 부재 on|off: 부재 중이면 승인 요청이 대리 승인자에게 갑니다
• 도움말: 이 안내"""

TASK_ID = re.compile(r"^OPS-[0-9A-Z][0-9A-Z-]{2,40}$")
DRAFT_MINUTES = 60  # a question asked back longer ago than this is not answered by new text


@dataclass(frozen=True)
class Reply:
    text: str
    kind: str = "reply"
    task: OpsTask | None = None
    ok: bool = True


def identity_for_matrix(sender: str) -> MessengerIdentity | None:
    return (
        MessengerIdentity.objects.select_related("user", "webhook")
        .filter(matrix_id=sender, enabled=True, user__is_active=True)
        .first()
    )


def identity_for_chat(chat_user_id: str, channels) -> MessengerIdentity | None:
    return (
        MessengerIdentity.objects.select_related("user", "webhook")
        .filter(chat_user_id=chat_user_id, channel__in=list(channels), enabled=True, user__is_active=True)
        .exclude(chat_user_id="")
        .first()
    )


def handle(identity: MessengerIdentity, text: str) -> Reply:
    user = identity.user
    words = text.strip().split()
    command = words[0] if words else ""
    audit.record(
        user,
        "messenger.command",
        payload={
            "channel": identity.channel,
            "command": command if command in COMMANDS else "요청",
            "args": words[1:2],
        },
    )
    try:
        if command in COMMANDS:
            return COMMANDS[command](user, words[1:])
        return _request(user, text.strip())
    except (GovernanceError, intake_services.Refused) as exc:
        audit.record(
            user,
            "messenger.refused",
            payload={"channel": identity.channel, "command": command, "reason": str(exc)[:200]},
        )
        return Reply(f"처리할 수 없습니다: {exc}", ok=False)


def _task_id(args: list[str]) -> str:
    if not args or not TASK_ID.match(args[0].upper()):
        raise Invalid("작업 번호(OPS-…)를 함께 보내 주세요", field="task_id")
    return args[0].upper()


def _help(user, args: list[str]) -> Reply:
    return Reply(HELP)


def _status(user, args: list[str]) -> Reply:
    task = visible_task(user, _task_id(args))
    steps = " → ".join(
        f"{s.step_order}:{services.ROLE_LABEL.get(s.role, s.role)} {s.get_status_display()}"
        f"{f' ({s.assigned_to})' if s.assigned_to_id and s.status == StepStatus.PENDING else ''}"
        for s in task.steps.select_related("assigned_to").order_by("step_order")
    )
    plan_line = plans.summary(task.plan, task.plan_sha256)
    text = (
        f"[{task.task_id}] {task.title}\n상태 {task.get_status_display()} · 위험도 {task.get_risk_display()}"
        + (f"\n승인 {steps}" if steps else "")
        + (f"\n{plan_line}" if plan_line else "")
        + (f"\n중지 사유: {task.stop_reason}" if task.stop_reason else "")
        + f"\n{task_link(task)}"
    )
    return Reply(text, kind="status", task=task)


def _open_step(user, task: OpsTask) -> ApprovalStep:
    steps = task.steps.filter(status=StepStatus.PENDING, activated_at__isnull=False)
    step = steps.filter(assigned_to=user).first() or steps.first()
    if step is None:
        raise Conflict(f"{task.task_id}에는 승인 대기 중인 단계가 없습니다")
    return step


def _decide(user, args: list[str], decision: str) -> Reply:
    task = visible_task(user, _task_id(args))
    step = _open_step(user, task)
    comments = " ".join(args[1:])
    if task.risk in (Risk.HIGH, Risk.CRITICAL):
        if step.assigned_to_id != user.pk or not user.has_perm("governance.decide_step"):
            raise Forbidden(f"승인 단계 {step.pk}은(는) 다른 사람에게 배정되어 있습니다")
        link = outbox.step_up_link(user, step)
        audit.record(user, "messenger.step_up_link", task=task.task_id, payload={"step": step.step_order})
        return Reply(
            f"{task.task_id}은(는) 위험도 {task.get_risk_display()} 작업이라 채팅에서 결정하지 않습니다.\n"
            "아래 링크에서 비밀번호를 다시 입력하고 결정하세요 "
            f"(1회용, {settings.MESSENGER_STEP_UP_TTL_MINUTES}분 유효):\n"
            f"{link}",
            task=task,
        )
    # The decision records the plan this person was shown in the chat.
    shown = (
        OutboxMessage.objects.filter(user=user, task_ref=task.task_id, status=OutboxMessage.Status.SENT)
        .exclude(plan_sha256="")
        .order_by("-sent_at", "-pk")
        .first()
    )
    if shown is None:
        raise Conflict(
            f"이 대화에서 {task.task_id}의 실행 계획을 받지 않았습니다: '상태 {task.task_id}'로 확인한 뒤 결정하세요"
        )
    result = services.decide_step(user, step.pk, decision, comments, plan_sha256=shown.plan_sha256)
    word = "승인" if decision == "APPROVED" else "반려"
    follow = {
        "APPROVED": "모든 승인 완료, 실행 대기",
        "NEXT_STEP": "다음 승인 단계로 넘어갔습니다",
        "REJECTED": "반려됨",
    }
    return Reply(
        f"{word} 처리했습니다: {task.task_id} (계획 {shown.plan_sha256[:12]}) — {follow[result.result]}", task=task
    )


def _approve(user, args: list[str]) -> Reply:
    return _decide(user, args, "APPROVED")


def _reject(user, args: list[str]) -> Reply:
    if len(args) < 2:
        raise Invalid("반려 사유를 함께 보내 주세요: 반려 OPS-… 사유", field="comments")
    return _decide(user, args, "REJECTED")


def _stop(user, args: list[str]) -> Reply:
    if args and args[0] == "전체":
        reason = " ".join(args[1:]) or "메신저에서 전체 정지"
        control.engage_global_stop(user, reason)
        return Reply(f"전체 정지를 켰습니다: {reason}. 새 실행은 시작되지 않습니다.")
    task_id = _task_id(args)
    reason = " ".join(args[1:]) or "메신저에서 정지"
    task = control.stop_task(user, task_id, reason)
    return Reply(f"정지 요청: {task.task_id} ({task.get_status_display()}) — {reason}", task=task)


def _owned(user) -> list[SystemOwner]:
    owned = list(SystemOwner.objects.select_related("system__institution").filter(owner=user))
    if not owned:
        raise Forbidden("담당(소유) 시스템이 없어 대리 승인자와 부재 상태를 설정할 수 없습니다")
    return owned


def _person(name: str):
    name = name.strip()
    identity = MessengerIdentity.objects.select_related("user").filter(matrix_id=name).first() if ":" in name else None
    if identity is not None:
        return identity.user
    person = get_user_model().objects.filter(username=name.lstrip("@"), is_active=True).first()
    if person is None:
        raise Invalid(f"사용자 {name}을(를) 찾을 수 없습니다", field="deputy")
    return person


def _deputy(user, args: list[str]) -> Reply:
    if args[:1] == ["해제"]:
        for ownership in _owned(user):
            services.set_owner_presence(user, ownership.system, clear_deputy=True)
        return Reply("대리 승인자를 해제했습니다.")
    if args[:1] != ["지정"] or len(args) < 2:
        raise Invalid("대리 지정 @사용자 또는 대리 해제", field="deputy")
    deputy = _person(args[1])
    names = []
    for ownership in _owned(user):
        services.set_owner_presence(user, ownership.system, deputy=deputy)
        names.append(ownership.system.code)
    return Reply(f"대리 승인자를 {deputy}(으)로 지정했습니다: {', '.join(names)}")


def _away(user, args: list[str]) -> Reply:
    if args[:1] not in (["on"], ["off"]):
        raise Invalid("부재 on 또는 부재 off", field="owner_is_active")
    away = args[0] == "on"
    for ownership in _owned(user):
        services.set_owner_presence(user, ownership.system, owner_is_active=not away)
    return Reply("부재로 설정했습니다: 승인 요청은 대리 승인자에게 갑니다." if away else "복귀로 설정했습니다.")


def _request(user, text: str) -> Reply:
    if not text:
        return Reply(HELP)
    recent = timezone.now() - dt.timedelta(minutes=DRAFT_MINUTES)
    draft = (
        IntakeRequest.objects.for_user(user)
        .filter(status=IntakeRequest.Status.NEEDS_CLARIFICATION, channel="MESSENGER", updated_at__gte=recent)
        .order_by("-updated_at")
        .first()
    )
    data = intake_services.IntakeInput(
        raw_request=text, channel="MESSENGER", draft_id=str(draft.draft_id) if draft else ""
    )
    outcome = intake_services.intake(user, data)
    if outcome.task is not None:
        task = outcome.task
        return Reply(
            f"접수했습니다: {task.task_id} {task.title}\n상태 {task.get_status_display()} · 위험도 "
            f"{task.get_risk_display()}\n{task_link(task)}",
            task=task,
        )
    question = outcome.clarification
    choices = ", ".join(c.get("label") or c.get("value", "") for c in (question.choices if question else [])[:8])
    return Reply(
        f"확인이 필요합니다: {question.question if question else ''}" + (f"\n선택지: {choices}" if choices else "")
    )


COMMANDS = {
    "도움말": _help,
    "help": _help,
    "상태": _status,
    "승인": _approve,
    "반려": _reject,
    "정지": _stop,
    "대리": _deputy,
    "부재": _away,
}
