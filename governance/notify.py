"""notify(user, message, actions): one service, pluggable adapters.

The in-app inbox is the embedded default and always stores the notification; further
adapters (Mattermost/Slack, added by the intake layer) are listed in
settings.NOTIFY_ADAPTERS by dotted path, so governance never imports intake.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from functools import cache

from django.conf import settings
from django.db import transaction
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


class InboxAdapter:
    """Store in TB_NOTIFICATION and push to the user's live channel after commit."""

    def deliver(self, user, message: Message) -> Notification:
        note = Notification.objects.create(
            user=user,
            task=message.task,
            kind=message.kind,
            message=message.text,
            link=message.link,
            actions=[a.as_dict() for a in message.actions],
        )
        event = events.LiveEvent(
            kind="notification",
            task_id=message.task.task_id if message.task else "",
            message=message.text,
            data={"id": note.pk, "link": message.link, "kind": message.kind},
        )
        transaction.on_commit(lambda: events.send(events.user_group(user.pk), event))
        return note


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
