"""Thin consumers: authenticate, check the user may see the object, forward events."""

from __future__ import annotations

from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncJsonWebsocketConsumer

from . import events
from .models import sees_all_tasks
from .queries import visible_tasks


class LiveConsumer(AsyncJsonWebsocketConsumer):
    """ws/live/ (own inbox + console) and ws/tasks/<task_id>/ (one task's timeline)."""

    task_id = ""  # the task a task page's socket was allowed to watch (checked on connect)
    # Group messages that came before the socket was accepted, sent right after it; None once open.
    held: list[dict] | None = None

    async def connect(self) -> None:
        user = self.scope.get("user")
        if user is None or not user.is_authenticated:
            await self.close(code=4401)
            return
        task_id = self.scope["url_route"]["kwargs"].get("task_id")
        if task_id:
            if not await self.can_see(user, task_id):
                await self.close(code=4403)
                return
            self.task_id = task_id
            self.groups_joined = [events.task_group(task_id)]
        else:
            self.groups_joined = [events.user_group(user.pk), events.BROADCAST_GROUP]
            if await self.sees_everything(user):
                self.groups_joined.append(events.CONSOLE_GROUP)
        # With the pub/sub layer (guardia.channel_layer) the process's one fan-out task hands
        # this socket its groups' events directly (hand_over): no queue, task or decoding per
        # socket. Attached before joining, so every group message takes that one path, in order.
        attach = getattr(self.channel_layer, "attach", None)
        if attach is not None:
            self.held = []
            attach(self.channel_name, self.hand_over)
        for group in self.groups_joined:
            await self.channel_layer.group_add(group, self.channel_name)
        await self.accept()
        while self.held:
            await self.live_event(self.held.pop(0))
        self.held = None

    async def hand_over(self, message: dict) -> bool:
        """Called by the layer's fan-out task with a group message (the same dict for every
        socket of the process): sent at once, or held until the socket is accepted."""
        if message["type"] != "live.event":
            return False  # anything else takes Channels' ordinary path through dispatch
        if self.held is not None:
            self.held.append(message)
        else:
            await self.live_event(message)
        return True

    async def disconnect(self, code: int) -> None:
        for group in getattr(self, "groups_joined", []):
            await self.channel_layer.group_discard(group, self.channel_name)
        # The pub/sub layer's own channel goes too (guardia.channel_layer), not only when
        # Channels happens to cancel this consumer's receive.
        release = getattr(self.channel_layer, "release_channel", None)
        if release is not None:
            await release(self.channel_name)

    async def dispatch(self, message: dict) -> None:
        # Forwarding an event touches no database, so it skips the base class's per-message
        # close_old_connections: that is a hop to the one thread every consumer's database work
        # shares, per socket per event, which queued a thousand watchers of one task behind
        # each other. Connecting still goes through database_sync_to_async, which tidies up.
        if message["type"] == "live.event":
            await self.live_event(message)
        else:
            await super().dispatch(message)

    async def live_event(self, message: dict) -> None:
        """Forward a group's events. The socket joined only groups its user may see (checked on
        connect); a task page's socket also drops anything not about its own task. The text
        was encoded once for every socket (events.group_messages) and goes out as it is."""
        if self.task_id and message.get("task_id") != self.task_id:
            return
        await self.send(text_data=message["text"])

    @database_sync_to_async
    def sees_everything(self, user) -> bool:
        # The same rule as OpsTask.objects.visible_to: a site manager must not receive
        # other institutions' task events on the shared console group.
        return sees_all_tasks(user)

    @database_sync_to_async
    def can_see(self, user, task_id: str) -> bool:
        return visible_tasks(user).filter(task_id=task_id).exists()
