"""Signed, single-use, expiring tokens for the decisions a chat message offers: the
approve/reject buttons of a webhook message and the step-up link for high-risk work.

The string that travels (in a button's value, a Mattermost action's context, a link) is
``django.core.signing`` over a random id only; the row behind it binds that id to one
approver, one approval step, the plan hash the message showed and an expiry, and records
when it was used. A forged string fails the signature, a replayed one finds its row used,
an old one is expired, and another person's callback does not match the bound approver.
The buttons of one message share a group: using one spends them all.
"""

from __future__ import annotations

import datetime as dt
import secrets

from django.conf import settings
from django.core import signing
from django.db import transaction
from django.utils import timezone

from governance.errors import Forbidden
from governance.models import ApprovalStep

from ..models import ActionToken

SALT = "guardia.messenger.action"


class TokenRefused(Forbidden):
    """The callback's token is forged, expired, spent or not this person's."""


def issue(user, step: ApprovalStep, purposes: list[str], ttl: dt.timedelta | None = None) -> dict[str, str]:
    """One signed token per purpose, sharing a group: {purpose: signed string}."""
    ttl = ttl or dt.timedelta(minutes=settings.MESSENGER_ACTION_TTL_MINUTES)
    expires = timezone.now() + ttl
    first: ActionToken | None = None
    signed: dict[str, str] = {}
    for purpose in purposes:
        row = ActionToken.objects.create(
            jti=secrets.token_urlsafe(24),
            group=first.group if first else ActionToken._meta.get_field("group").get_default(),
            user=user,
            step=step,
            purpose=purpose,
            plan_sha256=step.task.plan_sha256,
            expires_at=expires,
        )
        first = first or row
        signed[purpose] = signing.dumps({"j": row.jti}, salt=SALT, compress=False)
    return signed


def peek(signed: str) -> ActionToken:
    """The unspent, unexpired token behind a signed string (not consumed)."""
    try:
        jti = signing.loads(signed, salt=SALT)["j"]
    except (signing.BadSignature, KeyError, TypeError) as exc:
        raise TokenRefused("서명이 올바르지 않은 결정 토큰입니다") from exc
    row = ActionToken.objects.select_related("step__task", "user").filter(jti=str(jti)).first()
    if row is None:
        raise TokenRefused("알 수 없는 결정 토큰입니다")
    if row.used_at is not None:
        raise TokenRefused("이미 사용한 결정 토큰입니다")
    if row.expires_at <= timezone.now():
        raise TokenRefused("만료된 결정 토큰입니다")
    return row


def spend(signed: str, user) -> ActionToken:
    """Consume the token for ``user`` (the person the callback or page authenticated):
    the row is locked and marked used with its whole group, so of two racing callbacks one
    wins. Call inside the transaction that makes the decision."""
    row = peek(signed)
    if row.user_id != getattr(user, "pk", None):
        raise TokenRefused("이 결정 토큰은 다른 승인자에게 발급되었습니다")
    with transaction.atomic():
        spent = ActionToken.objects.filter(group=row.group, used_at__isnull=True).update(used_at=timezone.now())
        if not spent:
            raise TokenRefused("이미 사용한 결정 토큰입니다")
    return row
