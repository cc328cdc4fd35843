"""One helper sends live events to browsers over Channels, with typed payloads.

Groups: ``task.<task_id>`` (task page), ``user.<id>`` (inbox and "my requests"),
``console`` (dashboard tiles, global stop). The worker sends through Redis, so events
reach browsers connected to Daphne in another process.
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass, field
from typing import Any

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer

log = logging.getLogger(__name__)


@dataclass
class LiveEvent:
    kind: str  # "transition", "step", "server", "notification", "stop", "ping"
    task_id: str = ""
    status: str = ""
    message: str = ""
    data: dict[str, Any] = field(default_factory=dict)


def task_group(task_id: str) -> str:
    return f"task.{task_id}"


def user_group(user_id: int) -> str:
    return f"user.{user_id}"


CONSOLE_GROUP = "console"


def send(group: str, event: LiveEvent) -> None:
    """Best effort: a live update that cannot be delivered never fails the operation."""
    layer = get_channel_layer()
    if layer is None:
        return
    try:
        async_to_sync(layer.group_send)(group, {"type": "live.event", "event": asdict(event)})
    except Exception:  # Redis down must not break approvals or executions
        log.warning("live event to %s not delivered", group, exc_info=True)
