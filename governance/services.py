"""Governance services: every operation on tasks, steps, owners and the kill switch."""

from __future__ import annotations

from .models import GlobalStop, Notification


def global_stop_state() -> GlobalStop | None:
    stop = GlobalStop.objects.filter(id=1, engaged=True).first()
    return stop


def unread_count(user) -> int:
    return Notification.objects.filter(user=user, read_at__isnull=True).count()
