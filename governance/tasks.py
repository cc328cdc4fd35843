"""django-q2 entry points for governance: thin wrappers around services."""

from __future__ import annotations

import audit

from . import attachments, events
from .escalation import escalate_overdue_steps


def announce(group: str, message: str) -> str:
    """Send a ping event to a live group: the live-path self-test (worker -> Redis -> browser)."""
    events.send(group, events.LiveEvent(kind="ping", message=message))
    return message


def sweep_escalations() -> dict[str, int]:
    return escalate_overdue_steps()


def sweep_attachments() -> dict:
    """Remove stored attachments no task refers to once their grace period is over; the
    audit entry lists every file removed (name = SHA-256, size, age)."""
    result = attachments.sweep_unreferenced()
    audit.record("system", "attachments.swept", result_code=str(len(result["removed"])), payload=result)
    return result
