"""channels_redis's pub/sub layer, with unsubscribing that a closing socket cannot interrupt.

Every consumer subscribes its own channel in Redis when it starts. channels_redis unsubscribes
it when the consumer's receive is cancelled (the socket closed), from inside that cancelled
task, one UNSUBSCRIBE at a time behind one lock per Redis connection. When a thousand sockets
close at once the last ones wait seconds for that lock, and a second cancellation (Daphne
killing an application that took too long to shut down, or stopping) lands while they wait:
channels_redis logs "Unexpected exception while cleaning-up channel" with a CancelledError,
and the channel stays subscribed in Redis for the life of the process.

Here a cancelled receive only forgets the channel (no await, so nothing to interrupt) and
hands its name to one sweeper task per process, which unsubscribes everything handed to it
meanwhile in one UNSUBSCRIBE. A group left empty by group_discard goes the same way; the
sweeper skips a group that someone joined again before it got to it.

Group messages fan out in the process without a queue per socket: channels_redis puts each
group message into every member channel's queue, and every consumer's task wakes, decodes its
own copy and dispatches it. A consumer that registers a handler (``attach``) instead has it
called with the message, decoded once, by one fan-out task per process that goes through the
group's members in turn; messages leave in the order Redis delivered them, so each socket's
frames keep that order. A member without a handler, or whose handler declines the message,
gets it in its queue as before. A channel's handler goes with the channel: released on the
consumer's disconnect, or its receive cancelled.

The sending side publishes a commit's messages for several groups in one pipeline per Redis
shard (``group_send_many``): one round trip instead of one per group.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Awaitable, Callable

from channels_redis.pubsub import RedisPubSubChannelLayer, RedisPubSubLoopLayer, RedisSingleShardConnection
from channels_redis.utils import _wrap_close

log = logging.getLogger(__name__)

# Sockets handed a message between two turns of the event loop: Twisted writes a frame on the
# loop turn after it is queued, so the first sockets' frames leave while the rest are prepared.
FAN_OUT_SLICE = 100

# Called with a decoded group message; False hands it to the channel's queue instead.
Handler = Callable[[dict], Awaitable[bool]]


class _Shard(RedisSingleShardConnection):
    def _receive_message(self, message) -> None:
        if message is not None and self.channel_layer.fan_out_later(message):
            return
        super()._receive_message(message)


class PubSubLoopLayer(RedisPubSubLoopLayer):
    """One event loop's layer (channels_redis keeps one per loop)."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self._leaving: set[str] = set()  # channel and group-channel names to unsubscribe
        self._sweeper: asyncio.Task | None = None
        self._shards: list[RedisSingleShardConnection] = [_Shard(shard.host, self) for shard in self._shards]
        self._handlers: dict[str, Handler] = {}  # channel name → its consumer's handler
        self._fanning: deque[tuple[str, bytes]] = deque()  # group messages not yet fanned out
        self._fanner: asyncio.Task | None = None

    def attach(self, channel: str, handler: Handler) -> None:
        if channel in self.channels:
            self._handlers[channel] = handler

    def fan_out_later(self, message: dict) -> bool:
        """From the Redis reader: a group message goes to the fan-out task, in order."""
        name = message["channel"]
        name = name.decode() if isinstance(name, bytes) else name
        if name not in self.groups:
            return False
        self._fanning.append((name, message["data"]))
        if self._fanner is None or self._fanner.done():
            self._fanner = asyncio.ensure_future(self._fan_out())
        return True

    async def _fan_out(self) -> None:
        while self._fanning:
            group_channel, data = self._fanning.popleft()
            try:
                message = self.channel_layer.deserialize(data)
            except Exception:  # a consumer would have died on it: nobody gets it
                log.warning("undecodable message for %s dropped", group_channel, exc_info=True)
                continue
            for number, channel in enumerate(list(self.groups.get(group_channel, ()))):
                if number and not number % FAN_OUT_SLICE:
                    await asyncio.sleep(0)  # the frames queued so far go out on this loop turn
                handler = self._handlers.get(channel)
                if handler is not None:
                    try:
                        if await handler(message):
                            continue
                    except Exception:  # one socket's failure is not the others'
                        log.warning("live message not handed to %s", channel, exc_info=True)
                        continue
                if channel in self.channels:
                    self.channels[channel].put_nowait(data)

    async def receive(self, channel: str):
        if channel not in self.channels:
            await self._subscribe_to_channel(channel)
        try:
            message = await self.channels[channel].get()
        except (TimeoutError, asyncio.CancelledError, GeneratorExit):
            self._forget(channel)
            raise
        return self.channel_layer.deserialize(message)

    async def group_send_many(self, messages: list[tuple[str, dict]]) -> None:
        """Publish several group messages in one Redis round trip per shard, in the given order
        (Redis delivers a connection's publications in the order it received them)."""
        by_shard: dict[RedisSingleShardConnection, list[tuple[str, bytes]]] = {}
        for group, message in messages:
            name = self._get_group_channel_name(group)
            by_shard.setdefault(self._get_shard(name), []).append((name, self.channel_layer.serialize(message)))
        for shard, publications in by_shard.items():
            async with shard._lock:
                shard._ensure_redis()
                pipe = shard._redis.pipeline(transaction=False)
                for name, data in publications:
                    pipe.publish(name, data)
                await pipe.execute()

    async def release_channel(self, channel: str) -> None:
        """The consumer is leaving: forget its channel now. Its receive may never be cancelled
        (Channels does not cancel one that had just got a message when the socket closed)."""
        self._forget(channel)

    def _forget(self, channel: str) -> None:
        self._handlers.pop(channel, None)
        if self.channels.pop(channel, None) is not None:
            self._leave(channel)

    async def group_discard(self, group: str, channel: str) -> None:
        group_channel = self._get_group_channel_name(group)
        members = self.groups.get(group_channel)
        if members is None or channel not in members:
            return
        members.remove(channel)
        if not members:
            del self.groups[group_channel]
            self._leave(group_channel)

    async def flush(self) -> None:
        self._leaving.clear()
        self._handlers.clear()
        if self._fanner is not None:
            self._fanner.cancel()
            self._fanner = None
        self._fanning.clear()
        if self._sweeper is not None:
            self._sweeper.cancel()
            self._sweeper = None
        await super().flush()

    def _leave(self, name: str) -> None:
        self._leaving.add(name)
        if self._sweeper is None or self._sweeper.done():
            self._sweeper = asyncio.ensure_future(self._sweep())

    def _still_wanted(self, name: str) -> bool:
        return name in self.channels or name in self.groups

    async def _sweep(self) -> None:
        while self._leaving:
            names, self._leaving = self._leaving, set()
            for shard in self._shards:
                mine = [name for name in names if self._get_shard(name) is shard]
                try:
                    async with shard._lock:
                        # Under the lock that subscribe takes: a group joined again meanwhile stays.
                        gone = [n for n in mine if n in shard._subscribed_to and not self._still_wanted(n)]
                        if gone:
                            await shard._pubsub.unsubscribe(*gone)
                            shard._subscribed_to.difference_update(gone)
                except Exception:  # Redis away: its end of the subscriptions went with the connection
                    log.warning("could not unsubscribe %d channels", len(mine), exc_info=True)


class PubSubChannelLayer(RedisPubSubChannelLayer):
    """GUARDIA_CHANNEL_LAYER=redis: channels_redis.pubsub.RedisPubSubChannelLayer with the above."""

    async def release_channel(self, channel: str) -> None:
        await self._get_layer().release_channel(channel)

    async def group_send_many(self, messages: list[tuple[str, dict]]) -> None:
        await self._get_layer().group_send_many(messages)

    def attach(self, channel: str, handler: Handler) -> None:
        """Group messages for ``channel`` go to ``handler`` (decoded once per message for all
        local members) instead of its queue; the handler returns False to have one queued."""
        self._get_layer().attach(channel, handler)

    def _get_layer(self) -> PubSubLoopLayer:
        loop = asyncio.get_running_loop()
        layer = self._layers.get(loop)
        if layer is None:
            layer = self._layers[loop] = PubSubLoopLayer(*self._args, **self._kwargs, channel_layer=self)
            _wrap_close(self, loop)
        return layer
