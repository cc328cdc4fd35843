"""The outbox: every notification for a person with a messenger identity becomes one
OutboxMessage row, written in the transaction that caused it, and is sent by the bot
process (``manage.py messenger_bot``) with retries and capped exponential backoff.

Nothing is lost: a messenger that is down leaves the rows PENDING (the admin's outbox
list is the backlog) and they go out once it answers. Nothing is sent twice: each row's
``key`` travels as the Matrix transaction id (the homeserver answers a repeated
transaction with the first event) and as the webhook's Idempotency-Key header. Every
delivery and every failure is an audit entry.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import urllib.error
import urllib.request

from django.conf import settings
from django.db import transaction
from django.utils import timezone

import audit
from governance.compiled import CompiledSelect
from governance.models import ApprovalStep, Risk

from ..models import ChatChannel, MessengerIdentity, OutboxMessage
from . import tokens

log = logging.getLogger(__name__)
WEBHOOK_CHANNELS = (ChatChannel.MATTERMOST, ChatChannel.SLACK, ChatChannel.WEBHOOK)
LOW_RISK = (Risk.LOW, Risk.MEDIUM)


# The person's messenger identity (the first enabled one, with its webhook), asked on every
# notification: compiled once (see governance.compiled.CompiledSelect).
_IDENTITY = CompiledSelect(
    lambda user: MessengerIdentity.objects.select_related("webhook").filter(user=user, enabled=True).order_by("pk"),
    "user",
)


class OutboxAdapter:
    """The notify() adapter (settings.NOTIFY_ADAPTERS): queue for the person's messenger."""

    def deliver(self, user, message) -> OutboxMessage | None:
        identity = _IDENTITY.first(user=user.pk)
        if identity is None:
            return None
        actions = [a.as_dict() for a in message.actions]
        # A savepoint: a failure here is logged by notify() and must not poison the
        # transaction of the decision that caused the notification.
        with transaction.atomic():
            return enqueue(
                identity, message.text, kind=message.kind, task=message.task, link=message.link, actions=actions
            )


def enqueue(
    identity: MessengerIdentity,
    text: str,
    *,
    kind: str = "info",
    task=None,
    link: str = "",
    actions=(),
    room_id: str = "",
) -> OutboxMessage:
    payload: dict = {}
    if room_id:
        payload["room_id"] = room_id
    step_id = next((a.get("step_id") for a in actions if a.get("kind") in ("approve", "reject")), None)
    if step_id and identity.channel in WEBHOOK_CHANNELS:
        payload["buttons"] = _buttons(identity, step_id)
    elif step_id and task is not None:
        if task.risk in LOW_RISK:
            text += f"\n채팅으로 결정: '승인 {task.task_id}' 또는 '반려 {task.task_id} 사유'"
        else:
            text += f"\n위험도 {task.get_risk_display()}: '승인 {task.task_id}'에 재인증 링크로 답합니다."
    return OutboxMessage.objects.create(
        user=identity.user,
        channel=identity.channel,
        kind=kind,
        text=text,
        link=link,
        task_ref=task.task_id if task is not None else "",
        plan_sha256=task.plan_sha256 if task is not None and kind in ("approval", "status") else "",
        payload=payload,
    )


def _buttons(identity: MessengerIdentity, step_id: int) -> list[dict]:
    """Approve/reject for low and medium risk; a step-up link for high and critical risk."""
    step = ApprovalStep.objects.select_related("task").get(pk=step_id)
    if step.task.risk in LOW_RISK:
        signed = tokens.issue(identity.user, step, ["APPROVED", "REJECTED"])
        return [
            {"label": "승인", "decision": "APPROVED", "token": signed["APPROVED"]},
            {"label": "반려", "decision": "REJECTED", "token": signed["REJECTED"]},
        ]
    return [{"label": "재인증 후 결정", "url": step_up_link(identity.user, step)}]


def step_up_link(user, step: ApprovalStep) -> str:
    signed = tokens.issue(user, step, ["STEP_UP"], ttl=dt.timedelta(minutes=settings.MESSENGER_STEP_UP_TTL_MINUTES))[
        "STEP_UP"
    ]
    return f"{settings.BASE_URL}/messenger/decide/{signed}/"


def backoff(attempts: int) -> dt.timedelta:
    seconds = settings.MESSENGER_RETRY_BASE_SECONDS * (2 ** max(0, attempts - 1))
    return dt.timedelta(seconds=min(seconds, settings.MESSENGER_RETRY_MAX_SECONDS))


def due(channels, limit: int = 100) -> list[OutboxMessage]:
    return list(
        OutboxMessage.objects.due(timezone.now()).filter(channel__in=list(channels)).select_related("user")[:limit]
    )


def _audit(row: OutboxMessage, action: str, attempts: int, **more: str) -> None:
    audit.record(
        "messenger",
        action,
        task=row.task_ref or None,
        target=row.user.get_username(),
        payload={"key": str(row.key), "channel": row.channel, "kind": row.kind, "attempts": attempts, **more},
    )


def mark_sent(row: OutboxMessage, detail: str = "") -> None:
    with transaction.atomic():
        updated = OutboxMessage.objects.filter(pk=row.pk, status=OutboxMessage.Status.PENDING).update(
            status=OutboxMessage.Status.SENT, sent_at=timezone.now(), attempts=row.attempts + 1, last_error=""
        )
        if updated:
            _audit(row, "messenger.delivered", row.attempts + 1, event=detail[:120])


def mark_failed(row: OutboxMessage, error: str) -> None:
    attempts = row.attempts + 1
    with transaction.atomic():
        OutboxMessage.objects.filter(pk=row.pk, status=OutboxMessage.Status.PENDING).update(
            attempts=attempts, next_attempt_at=timezone.now() + backoff(attempts), last_error=error[:300]
        )
        _audit(row, "messenger.failed", attempts, error=error[:200])


def record_round(sent: list[tuple[OutboxMessage, str]], failed: list[tuple[OutboxMessage, str]]) -> None:
    """One delivery round's outcomes in one transaction (one commit, not one per message)."""
    with transaction.atomic():
        for row, detail in sent:
            mark_sent(row, detail)
        for row, error in failed:
            mark_failed(row, error)


# --- webhooks out ---------------------------------------------------------------------
def callback_url() -> str:
    return f"{settings.BASE_URL}/messenger/hooks/action/"


def webhook_body(row: OutboxMessage) -> dict:
    """The incoming-webhook payload in the receiving server's format."""
    text = row.text + (f"\n{row.link}" if row.link else "")
    buttons = row.payload.get("buttons") or []
    if row.channel == ChatChannel.MATTERMOST:
        # Mattermost does not sign action callbacks: the signed token rides in the context.
        actions = [
            {
                "id": b["decision"].lower(),
                "name": b["label"],
                "integration": {"url": callback_url(), "context": {"token": b["token"]}},
            }
            if "token" in b
            else {"id": "stepup", "name": b["label"], "type": "button", "integration": {"url": b["url"]}}
            for b in buttons
        ]
        return {"text": text, "attachments": [{"text": row.kind, "actions": actions}] if actions else []}
    if row.channel == ChatChannel.SLACK:
        blocks: list[dict] = [{"type": "section", "text": {"type": "mrkdwn", "text": text}}]
        if buttons:
            blocks.append(
                {
                    "type": "actions",
                    "elements": [
                        {
                            "type": "button",
                            "text": {"type": "plain_text", "text": b["label"]},
                            "action_id": b["decision"].lower(),
                            "value": b["token"],
                        }
                        if "token" in b
                        else {
                            "type": "button",
                            "text": {"type": "plain_text", "text": b["label"]},
                            "action_id": "stepup",
                            "url": b["url"],
                        }
                        for b in buttons
                    ],
                }
            )
        return {"text": text, "blocks": blocks}
    return {
        "key": str(row.key),
        "kind": row.kind,
        "task": row.task_ref,
        "text": row.text,
        "link": row.link,
        "callback": callback_url() if any("token" in b for b in buttons) else "",
        "actions": buttons,
    }


def post_webhook(row: OutboxMessage) -> str:
    identity = MessengerIdentity.objects.select_related("webhook").get(user=row.user)
    if identity.webhook is None or not identity.webhook.enabled:
        raise RuntimeError("웹훅이 지정되지 않았거나 꺼져 있습니다")
    request = urllib.request.Request(
        identity.webhook.url,
        data=json.dumps(webhook_body(row), ensure_ascii=False).encode(),
        headers={"Content-Type": "application/json", "Idempotency-Key": str(row.key)},
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=settings.MESSENGER_WEBHOOK_TIMEOUT) as response:
        return f"HTTP {response.status}"


def deliver_webhooks(limit: int = 100) -> int:
    """Send the due webhook rows; returns how many went out. A receiver that does not answer
    ends the round for its URL (the rest wait for their retry instead of all failing)."""
    sent = 0
    down: set[str] = set()
    for row in due(WEBHOOK_CHANNELS, limit):
        identity = MessengerIdentity.objects.select_related("webhook").filter(user=row.user).first()
        url = identity.webhook.url if identity and identity.webhook else ""
        if url in down:
            continue
        try:
            detail = post_webhook(row)
        except (OSError, urllib.error.URLError, RuntimeError, MessengerIdentity.DoesNotExist) as exc:
            down.add(url)
            mark_failed(row, f"{type(exc).__name__}: {exc}")
            continue
        mark_sent(row, detail)
        sent += 1
    return sent
