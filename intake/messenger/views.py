"""Messenger entry points: chat-server webhooks (commands in, button callbacks) and the
step-up decision page that a high-risk approval's chat link opens.

Webhooks are csrf-exempt POSTs that prove their sender first (webhooks.py), map the
sender to a GUARDiA user, and hand off to the same command and decision services as the
Matrix bot; a refusal changes nothing and is audited.
"""

from __future__ import annotations

from django.contrib.auth import authenticate
from django.contrib.auth.decorators import login_required
from django.db import transaction
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import render
from django.utils import timezone
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_http_methods, require_POST

import audit
from cmdb import account_audit, otp
from governance import services
from governance.errors import GovernanceError
from governance.models import ApprovalStep

from ..models import ActionToken, MessengerIdentity, OutboxMessage
from . import commands, tokens, webhooks

BUTTON_REJECT_REASON = "메신저 버튼으로 반려"


def _refuse(reason: str, status: int, **payload) -> JsonResponse:
    audit.record("messenger", "messenger.webhook_refused", payload={"reason": reason[:200], **payload})
    return JsonResponse({"detail": reason, "text": reason, "ephemeral_text": reason}, status=status)


@csrf_exempt
@require_POST
def command_hook(request: HttpRequest) -> JsonResponse:
    """Slash command / outgoing webhook: the command runs as the mapped person."""
    try:
        inbound = webhooks.command_request(request)
    except webhooks.NotVerified as exc:
        return _refuse(str(exc), 401, hook="command")
    identity = commands.identity_for_chat(str(inbound.data.get("user_id", "")), inbound.channels)
    if identity is None:
        # 200: the sender is genuine, the person is not mapped; retrying will not help.
        return _refuse("GUARDiA에 연결되지 않은 메신저 사용자입니다", 200, hook="command")
    text = str(inbound.data.get("text", ""))
    trigger = str(inbound.data.get("trigger_word", ""))
    if trigger and text.startswith(trigger):
        text = text[len(trigger) :]
    reply = commands.handle(identity, text[:4000])
    if reply.kind == "status" and reply.task is not None:
        _record_shown(identity, reply)
    return JsonResponse({"response_type": "ephemeral", "text": reply.text})


def _record_shown(identity: MessengerIdentity, reply: commands.Reply) -> None:
    """The plan a status answer showed, so a decision typed next records what was seen."""
    assert reply.task is not None
    OutboxMessage.objects.create(
        user=identity.user,
        channel=identity.channel,
        kind="status",
        text=reply.text,
        task_ref=reply.task.task_id,
        plan_sha256=reply.task.plan_sha256,
        status=OutboxMessage.Status.SENT,
        sent_at=timezone.now(),
        payload={"answered": "inline"},
    )


@csrf_exempt
@require_POST
def action_hook(request: HttpRequest) -> JsonResponse:
    """A decision button: the signed token must be genuine, unspent, unexpired and the
    clicking person's; the decision records the plan hash the message showed."""
    try:
        inbound, chat_user_id, signed = webhooks.action_request(request)
    except webhooks.NotVerified as exc:
        return _refuse(str(exc), 401, hook="action")
    identity = commands.identity_for_chat(chat_user_id, inbound.channels)
    if identity is None:
        return _refuse("GUARDiA에 연결되지 않은 메신저 사용자입니다", 403, hook="action", chat_user=chat_user_id[:64])
    try:
        with transaction.atomic():
            row = tokens.spend(signed, identity.user)
            if row.purpose not in (ActionToken.Purpose.APPROVE, ActionToken.Purpose.REJECT):
                raise tokens.TokenRefused("이 토큰은 재인증 페이지에서만 쓸 수 있습니다")
            comments = BUTTON_REJECT_REASON if row.purpose == ActionToken.Purpose.REJECT else ""
            result = services.decide_step(
                identity.user, row.step_id, row.purpose, comments, plan_sha256=row.plan_sha256
            )
    except GovernanceError as exc:
        return _refuse(str(exc), exc.status_code, hook="action", user=identity.user.get_username())
    word = "승인" if row.purpose == ActionToken.Purpose.APPROVE else "반려"
    text = f"{identity.user}님이 {word}했습니다: {result.task.task_id} (계획 {row.plan_sha256[:12]})"
    return JsonResponse({"update": {"message": text}, "ephemeral_text": text, "text": text})


@login_required
@require_http_methods(["GET", "POST"])
def step_up_decision(request: HttpRequest, signed: str) -> HttpResponse:
    """The page a high-risk approval's chat link opens: the plan, and a decision that asks
    for the password again (and the second factor where the role needs one)."""
    try:
        row = tokens.peek(signed)
        if row.purpose != ActionToken.Purpose.STEP_UP or row.user_id != request.user.pk:
            raise tokens.TokenRefused("이 링크는 다른 승인자에게 발급되었습니다")
    except tokens.TokenRefused as exc:
        audit.record(request.user, "messenger.webhook_refused", payload={"reason": str(exc), "hook": "step_up"})
        return render(request, "messenger/decide.html", {"refused": str(exc)}, status=403)
    step: ApprovalStep = row.step
    context = {
        "step": step,
        "task": step.task,
        "plan": step.task.plan,
        "plan_sha256": step.task.plan_sha256,
        # With second factors on, every high-risk decision asks for a fresh one (governance's
        # STEP_UP_CHECK), whatever the role: the code is asked here with the password.
        "needs_otp": otp.enabled(),
        "signed": signed,
    }
    if request.method == "GET":
        return render(request, "messenger/decide.html", context)
    error = _check_step_up(request, context["needs_otp"])
    if error:
        context["error"] = error
        return render(request, "messenger/decide.html", context, status=400)
    fresh = otp.remember_request(request)
    try:
        with transaction.atomic():
            tokens.spend(signed, request.user)
            result = services.decide_step(
                request.user,
                step.pk,
                request.POST.get("decision", ""),
                request.POST.get("comments", ""),
                plan_sha256=request.POST.get("plan_sha256", ""),
            )
    except GovernanceError as exc:
        context["error"] = str(exc)
        return render(request, "messenger/decide.html", context, status=exc.status_code)
    finally:
        otp.forget_request(fresh)
    context["done"] = result
    return render(request, "messenger/decide.html", context)


def _check_step_up(request: HttpRequest, needs_otp: bool) -> str:
    user = request.user
    if authenticate(request, username=user.get_username(), password=request.POST.get("password", "")) is None:
        audit.record(user, "messenger.step_up_failed", payload={"factor": "password"})
        return "비밀번호가 맞지 않습니다."
    if needs_otp:
        device = otp.match_token(user, request.POST.get("otp_token", "").strip())
        if device is None:
            audit.record(user, "messenger.step_up_failed", payload={"factor": "otp"})
            return "2차 인증 코드가 맞지 않습니다."
        request.session[otp.VERIFIED_AT] = timezone.now().timestamp()
        account_audit.record(
            user, "auth.otp_verified", user.get_username(), {"source": "messenger step-up"}, kind="totp"
        )
    return ""
