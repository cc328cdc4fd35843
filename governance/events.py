"""One helper sends live events to browsers over Channels, with typed payloads.

Groups: ``task.<task_id>`` (task page), ``user.<id>`` (inbox and "my requests"),
``console`` (dashboard tiles, global stop). The worker sends through Redis, so events
reach browsers connected to Daphne in another process.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, is_dataclass
from typing import Any

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django.db import transaction

log = logging.getLogger(__name__)


@dataclass
class LiveEvent:
    # "transition", "step", "server", "group", "execution", "notification", "stop", "ping", and
    # "timeline": data.line is a task-page timeline line rendered by governance.reports.live_line
    kind: str
    task_id: str = ""
    status: str = ""
    message: str = ""
    data: dict[str, Any] = field(default_factory=dict)


def task_group(task_id: str) -> str:
    return f"task.{task_id}"


def user_group(user_id: int) -> str:
    return f"user.{user_id}"


# Every task's transitions: only for people who may see every task (see consumers.py).
CONSOLE_GROUP = "console"
# Kill-switch banner changes: every signed-in user.
BROADCAST_GROUP = "broadcast"


def send(group: str, event: LiveEvent) -> None:
    send_many([(group, event)])


def group_messages(items: list[tuple[str, LiveEvent]]) -> list[tuple[str, dict[str, str]]]:
    """One channel-layer message per group, the group's events in order, encoded here once.

    A transition publishes its timeline line and the transition itself to the task's group
    in the same commit; sent as one message they cost every watching socket one frame
    instead of two. The text is the JSON a browser reads (one event object, or an array of
    events when a group got several), so a consumer forwards it as it is instead of encoding
    it again for each of a thousand sockets. ``task_id`` rides alongside: a task page's socket
    checks it against its own task before forwarding (consumers.LiveConsumer.live_event)."""
    grouped: dict[str, list[dict[str, Any]]] = {}
    for group, event in items:
        grouped.setdefault(group, []).append(_payload(event))
    messages = []
    for group, payloads in grouped.items():
        task_ids = {payload["task_id"] for payload in payloads}
        text = json.dumps(payloads[0] if len(payloads) == 1 else payloads, ensure_ascii=False, default=_encode)
        message = {"type": "live.event", "text": text, "task_id": task_ids.pop() if len(task_ids) == 1 else ""}
        messages.append((group, message))
    return messages


def _payload(event: LiveEvent) -> dict[str, Any]:
    """The event's fields as the JSON object a browser reads. Not dataclasses.asdict: it deep-copies
    ``data`` (a timeline line, the status label) only for the copy to be encoded and dropped, a
    third of the cost of encoding a decision's events."""
    return {"kind": event.kind, "task_id": event.task_id, "status": event.status, "message": event.message,
            "data": event.data}  # fmt: skip


def _encode(value: Any) -> Any:
    """A dataclass inside ``data`` is encoded as its fields, as asdict would have given it."""
    if is_dataclass(value) and not isinstance(value, type):
        return asdict(value)
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


async def deliver(layer, items: list[tuple[str, LiveEvent]]) -> None:
    messages = group_messages(items)
    send_many = getattr(layer, "group_send_many", None)
    if send_many is not None:  # the pub/sub layer: one Redis round trip for all the groups
        await send_many(messages)
        return
    for group, message in messages:
        await layer.group_send(group, message)


def send_many(items: list[tuple[str, LiveEvent]]) -> None:
    """Best effort: a live update that cannot be delivered never fails the operation.

    All events go out in one event-loop hop; each async_to_sync call costs about a
    millisecond of thread hand-off, which a sweep of a thousand steps would feel."""
    layer = get_channel_layer()
    if layer is None or not items:
        return
    try:
        async_to_sync(deliver)(layer, items)
    except Exception:  # Redis down must not break approvals or executions
        log.warning("%d live events not delivered", len(items), exc_info=True)


_outbox = threading.local()


Built = Callable[[], list[tuple[str, LiveEvent]]]


def send_on_commit(group: str, event: LiveEvent) -> None:
    """Queue an event for after the current transaction commits (at once outside one).

    Events of one transaction are flushed together by a single on_commit hook; after a
    rollback Django drops that hook, so the box is re-armed when the hook is missing."""
    _queue((group, event))


def build_on_commit(build: Built) -> None:
    """send_on_commit for the events ``build()`` makes, made after the commit (in their place
    among the transaction's other events): what is rendered there is not done while the
    transaction still holds its locks (the audit chain head's, which every audited change
    waits on). An error in ``build`` loses those events only, as a delivery error does."""
    _queue(build)


def _queue(item: tuple[str, LiveEvent] | Built) -> None:
    connection = transaction.get_connection()
    if not connection.in_atomic_block:
        send_many(_made([item]))
        return
    armed = any(func is _flush for _, func, _ in connection.run_on_commit)
    if not armed:
        _outbox.items = []
        transaction.on_commit(_flush)
    _outbox.items.append(item)


def _made(items: list) -> list[tuple[str, LiveEvent]]:
    made: list[tuple[str, LiveEvent]] = []
    for item in items:
        if not callable(item):
            made.append(item)
            continue
        try:
            made += item()
        except Exception:  # a live update that cannot be made never fails the operation
            log.warning("live events not made", exc_info=True)
    return made


def _flush() -> None:
    items, _outbox.items = getattr(_outbox, "items", None) or [], []
    send_many(_made(items))
