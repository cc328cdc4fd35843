"""django-q2 entry points for governance: thin wrappers around services."""

from __future__ import annotations

from . import events


def announce(group: str, message: str) -> str:
    """Send a ping event to a live group. Used by the live-path self-test (and tests)."""
    events.send(group, events.LiveEvent(kind="ping", message=message))
    return message
