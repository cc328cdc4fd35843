"""Login and failed-login auditing (connected in AuditConfig.ready)."""

from __future__ import annotations

from typing import Any

from . import services


def _client(request: Any) -> dict[str, str]:
    if request is None:
        return {}
    meta = getattr(request, "META", {})
    return {"ip": meta.get("REMOTE_ADDR", ""), "user_agent": meta.get("HTTP_USER_AGENT", "")[:200]}


def login_succeeded(sender, request=None, user=None, **kwargs) -> None:
    services.record(user, "auth.login", payload=_client(request))


def login_failed(sender, credentials=None, request=None, **kwargs) -> None:
    # Only the username is kept: Django already masks the password in `credentials`,
    # and nothing else from that dict is copied so no secret can ride along.
    username = str((credentials or {}).get("username", ""))[:150]
    services.record(None, "auth.login_failed", target=username, payload={"username": username, **_client(request)})
