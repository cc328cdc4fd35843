"""notify(user, message, actions): one service, pluggable adapters.

The in-app inbox is the embedded default and always stores the notification; further
adapters are listed in settings.NOTIFY_ADAPTERS by dotted path, so governance never imports
intake. The messenger's adapter (intake.messenger.outbox.OutboxAdapter) writes an outbox row
in the caller's transaction, so a notification of a decision that rolls back is never sent,
and one of a decision that commits is sent by the bot process even if the messenger is down
right now (retries, idempotency keys).
"""

from __future__ import annotations

import logging
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from functools import cache

from django.conf import settings
from django.utils.module_loading import import_string

from . import events
from .models import Notification, OpsTask

log = logging.getLogger(__name__)


@dataclass
class Action:
    """A button on the notification: approve/reject a step, open a page."""

    label: str
    kind: str  # "approve", "reject", "open"
    step_id: int | None = None
    url: str = ""

    def as_dict(self) -> dict:
        return {"label": self.label, "kind": self.kind, "step_id": self.step_id, "url": self.url}


@dataclass
class Message:
    text: str
    kind: str = "info"
    task: OpsTask | None = None
    link: str = ""
    actions: list[Action] = field(default_factory=list)


# Inside `batched()`, inbox rows are collected and written with one bulk insert at the
# end (the SLA sweep notifies a thousand people in one run).
_pending: ContextVar[list | None] = ContextVar("guardia_notify_pending", default=None)


class InboxAdapter:
    """Store in TB_NOTIFICATION and push to the user's live channel after commit."""

    def deliver(self, user, message: Message) -> Notification:
        note = Notification(
            user=user,
            task=message.task,
            kind=message.kind,
            message=message.text,
            link=message.link,
            actions=[a.as_dict() for a in message.actions],
        )
        pending = _pending.get()
        if pending is not None:
            pending.append(note)
            return note
        note.save()
        _push([note])
        return note


def _push(notes: list[Notification]) -> None:
    for note in notes:
        events.send_on_commit(
            events.user_group(note.user_id),
            events.LiveEvent(
                kind="notification",
                task_id=note.task.task_id if note.task else "",
                message=note.message,
                data={"id": note.pk, "link": note.link, "kind": note.kind},
            ),
        )
        if note.task is not None:
            # The task page's timeline shows notifications too: the same line live as after a reload.
            from .reports import live_line  # reports imports this module

            line = live_line(note)
            events.send_on_commit(
                events.task_group(note.task.task_id),
                events.LiveEvent(
                    kind="timeline",
                    task_id=note.task.task_id,
                    message=line["text"],
                    data={"action": "notification", "line": line},
                ),
            )


@contextmanager
def batched():
    notes: list[Notification] = []
    token = _pending.set(notes)
    try:
        yield
    finally:
        _pending.reset(token)
    Notification.objects.bulk_create(notes)
    _push(notes)


@cache
def adapters() -> list:
    return [import_string(path)() for path in settings.NOTIFY_ADAPTERS]


def notify(user, message: Message) -> None:
    for adapter in adapters():
        try:
            adapter.deliver(user, message)
        except Exception:  # one broken messenger must not block the inbox or the approval
            if isinstance(adapter, InboxAdapter):
                raise
            log.exception("notification adapter %s failed", type(adapter).__name__)
