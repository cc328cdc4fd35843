"""Requests from Mattermost/Slack-compatible chat servers: who sent them, checked before
anything is read from them.

- Slack-style signing: ``X-Slack-Signature: v0=HMAC-SHA256(secret, "v0:{ts}:{body}")`` with
  ``X-Slack-Request-Timestamp`` inside a replay window; an exact replay inside the window
  is refused too (its signature was seen).
- Mattermost and generic JSON senders: the shared token (form field ``token`` or an
  ``Authorization: Token …`` header), compared in constant time.
Action callbacks (buttons) need neither: the signed single-use token they carry is the
proof (Mattermost does not sign callbacks, so it rides in the action's context), bound to
the approver the message was for.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from dataclasses import dataclass

from django.conf import settings
from django.core.cache import cache
from django.http import HttpRequest

from ..models import ChatChannel

SLACK_SIGNATURE = "HTTP_X_SLACK_SIGNATURE"
SLACK_TIMESTAMP = "HTTP_X_SLACK_REQUEST_TIMESTAMP"


class NotVerified(Exception):
    """The request does not prove it comes from the configured chat server."""


@dataclass
class Inbound:
    channels: tuple[str, ...]  # identity channels a sender id may be looked up in
    data: dict


def _form_or_json(request: HttpRequest) -> dict:
    if request.content_type == "application/json":
        try:
            data = json.loads(request.body or b"{}")
        except ValueError as exc:
            raise NotVerified("본문이 JSON이 아닙니다") from exc
        return data if isinstance(data, dict) else {}
    return {key: request.POST.get(key, "") for key in request.POST}


def verify_slack(request: HttpRequest) -> None:
    secret = settings.MESSENGER_SLACK_SIGNING_SECRET
    signature = request.META.get(SLACK_SIGNATURE, "")
    stamp = request.META.get(SLACK_TIMESTAMP, "")
    if not secret:
        raise NotVerified("서명 비밀키가 설정되지 않았습니다")
    try:
        age = abs(time.time() - int(stamp))
    except ValueError as exc:
        raise NotVerified("타임스탬프가 없습니다") from exc
    if age > settings.MESSENGER_SIGNATURE_WINDOW_SECONDS:
        raise NotVerified("허용 시간 밖의 요청입니다 (재전송 의심)")
    base = b"v0:" + stamp.encode() + b":" + request.body
    expected = "v0=" + hmac.new(secret.encode(), base, hashlib.sha256).hexdigest()
    if not hmac.compare_digest(expected, signature):
        raise NotVerified("서명이 맞지 않습니다")
    if not cache.add(f"messenger-sig:{signature}", 1, settings.MESSENGER_SIGNATURE_WINDOW_SECONDS + 5):
        raise NotVerified("이미 받은 요청입니다 (재전송)")


def verify_token(request: HttpRequest, data: dict) -> None:
    expected = settings.MESSENGER_WEBHOOK_TOKEN
    header = request.META.get("HTTP_AUTHORIZATION", "")
    given = header[6:].strip() if header.startswith("Token ") else str(data.get("token", ""))
    if not expected or not hmac.compare_digest(expected.encode(), given.encode()):
        raise NotVerified("웹훅 토큰이 맞지 않습니다")


def command_request(request: HttpRequest) -> Inbound:
    """A slash command or outgoing webhook, verified; its sender's channels to look up."""
    if SLACK_SIGNATURE in request.META:
        verify_slack(request)
        return Inbound((ChatChannel.SLACK,), _form_or_json(request))
    data = _form_or_json(request)
    verify_token(request, data)
    return Inbound((ChatChannel.MATTERMOST, ChatChannel.WEBHOOK), data)


def action_request(request: HttpRequest) -> tuple[Inbound, str, str]:
    """A button callback: (inbound, the sender's chat user id, the signed decision token)."""
    if SLACK_SIGNATURE in request.META:
        verify_slack(request)
        try:
            payload = json.loads(request.POST.get("payload", "{}"))
            user_id = str(payload["user"]["id"])
            token = str(payload["actions"][0]["value"])
        except (ValueError, KeyError, IndexError, TypeError) as exc:
            raise NotVerified("Slack 동작 본문을 읽을 수 없습니다") from exc
        return Inbound((ChatChannel.SLACK,), payload), user_id, token
    data = _form_or_json(request)
    context = data.get("context")
    context = context if isinstance(context, dict) else {}
    token = str(context.get("token") or data.get("token") or "")
    return Inbound((ChatChannel.MATTERMOST, ChatChannel.WEBHOOK), data), str(data.get("user_id", "")), token
