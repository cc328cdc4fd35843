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
from functools import cache, partial

from django.conf import settings
from django.utils.module_loading import import_string

from . import events
from .compiled import insert_row
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
        insert_row(note)  # compiled once: one inbox row per notification, the decision's hot path
        _push([note])
        return note


def _push(notes: list[Notification]) -> None:
    """Each note to its person's channel and, for a task's, to the task page's timeline (the same
    line live as after a reload), made after the commit (events.build_on_commit)."""
    events.build_on_commit(partial(_note_events, notes))


def _note_events(notes: list[Notification]) -> list[tuple[str, events.LiveEvent]]:
    from .reports import live_lines  # reports imports this module

    made = []
    lines = iter(live_lines([note for note in notes if note.task is not None]))
    for note in notes:
        task_id = note.task.task_id if note.task else ""
        data = {"id": note.pk, "link": note.link, "kind": note.kind}
        made.append(
            (
                events.user_group(note.user_id),
                events.LiveEvent("notification", task_id, message=note.message, data=data),
            )
        )
        if note.task is not None:
            line = next(lines)
            data = {"action": "notification", "line": line}
            made.append(
                (events.task_group(task_id), events.LiveEvent("timeline", task_id, message=line["text"], data=data))
            )
    return made


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
