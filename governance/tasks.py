"""django-q2 entry points for governance: thin wrappers around services."""

from __future__ import annotations

from . import events
from .escalation import escalate_overdue_steps


def announce(group: str, message: str) -> str:
    """Send a ping event to a live group: the live-path self-test (worker -> Redis -> browser)."""
    events.send(group, events.LiveEvent(kind="ping", message=message))
    return message


def sweep_escalations() -> dict[str, int]:
    return escalate_overdue_steps()
