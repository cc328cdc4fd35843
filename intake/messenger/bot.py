"""The GUARDiA bot on a Matrix homeserver (matrix-nio), run by ``manage.py messenger_bot``.

Two loops share one client: ``listen`` long-polls ``/sync`` and answers what mapped people
type (their sender id is authenticated by the homeserver; anyone else is refused and
audited), and ``deliver`` sends the outbox's due Matrix rows, each with its row key as the
transaction id, so a send repeated after a crash or a lost answer shows once. A homeserver
that is down fails one row (audited, retried with backoff) and ends the round; the rest
wait their turn. Replies go through the outbox too, so they are kept and retried as well.

The Django parts run through ``sync_to_async`` (thread-sensitive: one database thread).
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field

from aiohttp import ClientError
from asgiref.sync import sync_to_async
from django.conf import settings
from nio import (  # type: ignore[import-untyped]  # matrix-nio ships no type information
    AsyncClient,
    AsyncClientConfig,
    InviteMemberEvent,
    LoginResponse,
    RoomCreateError,
    RoomMessageText,
    RoomPreset,
    RoomSendResponse,
    SyncResponse,
)

import audit

from ..models import ChatChannel, MessengerIdentity, OutboxMessage
from . import commands, outbox

log = logging.getLogger(__name__)


class Unreachable(Exception):
    """The homeserver did not take the message (down, refused, or answered an error)."""


@dataclass
class MatrixBot:
    homeserver: str
    user_id: str
    password: str = ""
    token: str = ""
    device_id: str = "GUARDIABOT"
    poll_seconds: float = 0.2
    sync_timeout_ms: int = 5000
    client: AsyncClient = field(init=False)
    handled: int = 0
    started: bool = False

    def __post_init__(self) -> None:
        config = AsyncClientConfig(
            max_timeouts=0,  # the outbox retries, not the client
            max_limit_exceeded=0,
            request_timeout=max(30, self.sync_timeout_ms / 1000 + 10),
            encryption_enabled=False,
            store_sync_tokens=False,
        )
        self.client = AsyncClient(self.homeserver, self.user_id, device_id=self.device_id, config=config)

    @classmethod
    def from_settings(cls) -> MatrixBot:
        if not (settings.MATRIX_HOMESERVER and settings.MATRIX_BOT_USER):
            raise RuntimeError("GUARDIA_MATRIX_HOMESERVER and GUARDIA_MATRIX_BOT_USER must be set")
        return cls(
            settings.MATRIX_HOMESERVER,
            settings.MATRIX_BOT_USER,
            password=settings.MATRIX_BOT_PASSWORD,
            token=settings.MATRIX_BOT_TOKEN,
            device_id=settings.MATRIX_BOT_DEVICE,
            poll_seconds=settings.MESSENGER_POLL_SECONDS,
        )

    async def start(self) -> None:
        """Log in (the same device every time: transaction ids are kept per device) and skip
        what was said while the bot was away (a stale command is not replayed)."""
        if self.token:
            self.client.restore_login(self.user_id, self.device_id, self.token)
        else:
            response = await self.client.login(self.password, device_name="GUARDiA bot")
            if not isinstance(response, LoginResponse):
                raise Unreachable(f"login failed: {response}")
        first = await self.client.sync(timeout=0, full_state=False)
        if isinstance(first, SyncResponse):
            await self._join_invites(first)

    async def close(self) -> None:
        await self.client.close()

    # --- in ------------------------------------------------------------------------
    async def listen_once(self, timeout_ms: int | None = None) -> int:
        response = await self.client.sync(
            timeout=self.sync_timeout_ms if timeout_ms is None else timeout_ms, sync_filter=self._filter()
        )
        if not isinstance(response, SyncResponse):
            raise Unreachable(str(response))
        await self._join_invites(response)
        handled = 0
        for room_id, room in response.rooms.join.items():
            for event in room.timeline.events:
                if isinstance(event, RoomMessageText) and event.sender != self.client.user_id:
                    refusal = await sync_to_async(self.answer)(event.sender, room_id, event.body)
                    if refusal:
                        await self.client.room_send(room_id, "m.room.message", {"msgtype": "m.notice", "body": refusal})
                    handled += 1
        self.handled += handled
        return handled

    def _filter(self) -> dict:
        """Only what people type: the bot's own messages (a burst of notifications) must not
        fill the timeline and push a command out of an incremental sync."""
        timeline = {"limit": 200, "types": ["m.room.message"], "not_senders": [self.client.user_id]}
        return {"room": {"timeline": timeline}, "presence": {"types": []}, "account_data": {"types": []}}

    async def _join_invites(self, response: SyncResponse) -> None:
        for room_id, room in response.rooms.invite.items():
            inviter = next(
                (e.sender for e in room.invite_state if isinstance(e, InviteMemberEvent) and e.membership == "invite"),
                "",
            )
            if await sync_to_async(commands.identity_for_matrix)(inviter) is not None:
                await self.client.join(room_id)

    def answer(self, sender: str, room_id: str, body: str) -> str | None:
        """Obey a mapped sender (the reply is queued in the outbox); return the refusal to
        send at once to anyone else (they have no outbox: no GUARDiA account)."""
        identity = commands.identity_for_matrix(sender)
        if identity is None:
            audit.record(
                "messenger",
                "messenger.refused",
                target=sender[:200],
                payload={"channel": "MATRIX", "reason": "unmapped"},
            )
            return UNMAPPED
        if not identity.room_id:
            MessengerIdentity.objects.filter(pk=identity.pk, room_id="").update(room_id=room_id)
        reply = commands.handle(identity, body)
        outbox.enqueue(identity, reply.text, kind=reply.kind, task=reply.task, room_id=room_id)
        return None

    # --- out -----------------------------------------------------------------------
    async def deliver_once(self) -> int:
        """Send the due Matrix rows: rooms side by side, each room's rows in order; a room
        stops at the first row the homeserver does not take (the rest wait their turn).
        The round's outcomes are recorded (and audited) in one transaction."""
        rooms: dict[str, list[OutboxMessage]] = {}
        for row in await sync_to_async(outbox.due)([ChatChannel.MATRIX]):
            rooms.setdefault(row.payload.get("room_id") or f"user:{row.user_id}", []).append(row)
        outcomes = await asyncio.gather(*(self._send_in_order(rows) for rows in rooms.values()))
        sent = [pair for done, _failed in outcomes for pair in done]
        failed = [pair for _done, failures in outcomes for pair in failures]
        if sent or failed:
            await sync_to_async(outbox.record_round)(sent, failed)
        return len(sent)

    async def _send_in_order(self, rows: list[OutboxMessage]) -> tuple[list, list]:
        done: list[tuple[OutboxMessage, str]] = []
        for row in rows:
            try:
                done.append((row, await self._send(row)))
            except Unreachable as exc:
                return done, [(row, str(exc))]
        return done, []

    async def _send(self, row: OutboxMessage) -> str:
        try:
            room_id = row.payload.get("room_id") or await self._room_for(row.user_id)
            text = row.text + (f"\n{row.link}" if row.link else "")
            response = await self.client.room_send(
                room_id,
                "m.room.message",
                {"msgtype": "m.text", "body": text},
                tx_id=str(row.key),
            )
        except (TimeoutError, OSError, ClientError) as exc:
            raise Unreachable(f"{type(exc).__name__}: {exc}") from exc
        if not isinstance(response, RoomSendResponse):
            if getattr(response, "status_code", "") == "M_FORBIDDEN" and not row.payload.get("room_id"):
                # The person left the direct room: open a new one on the next try.
                await sync_to_async(MessengerIdentity.objects.filter(user_id=row.user_id).update)(room_id="")
            raise Unreachable(f"{getattr(response, 'status_code', '')} {getattr(response, 'message', response)}")
        return response.event_id

    async def _room_for(self, user_id: int) -> str:
        identity = await sync_to_async(MessengerIdentity.objects.get)(user_id=user_id)
        if identity.room_id:
            return identity.room_id
        response = await self.client.room_create(
            is_direct=True, invite=[identity.matrix_id], preset=RoomPreset.trusted_private_chat, name="GUARDiA"
        )
        if isinstance(response, RoomCreateError):
            raise Unreachable(f"{response.status_code} {response.message}")
        await sync_to_async(MessengerIdentity.objects.filter(pk=identity.pk).update)(room_id=response.room_id)
        return response.room_id

    # --- the process ---------------------------------------------------------------
    async def run(self, stop: asyncio.Event) -> None:
        """Until ``stop`` is set: log in (retrying while the homeserver is down), then
        listen and deliver side by side."""
        failures = 0
        while not stop.is_set() and not self.started:
            try:
                await self.start()
                self.started = True
            except (TimeoutError, Unreachable, OSError, ClientError) as exc:
                failures += 1
                log.warning("homeserver login failed (%s); retrying", exc)
                await _sleep_or_stop(stop, min(10.0, 0.5 * 2**failures))
        loops = [asyncio.create_task(self._listen_forever(stop)), asyncio.create_task(self._deliver_forever(stop))]
        await stop.wait()
        for loop in loops:
            loop.cancel()
        await asyncio.gather(*loops, return_exceptions=True)

    async def _listen_forever(self, stop: asyncio.Event) -> None:
        failures = 0
        while not stop.is_set():
            try:
                await self.listen_once()
                failures = 0
            except (TimeoutError, Unreachable, OSError, ClientError) as exc:
                failures += 1
                log.warning("sync failed (%s); retrying", exc)
                await _sleep_or_stop(stop, min(5.0, 0.25 * 2**failures))
            except Exception:  # a command that broke must not end the listening
                failures += 1
                log.exception("answering a message failed")
                await _sleep_or_stop(stop, min(5.0, 0.25 * 2**failures))

    async def _deliver_forever(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            try:
                await self.deliver_once()
                await sync_to_async(outbox.deliver_webhooks)()
            except Exception:  # the loop must outlive one bad row; the row stays queued
                log.exception("outbox round failed")
            await _sleep_or_stop(stop, self.poll_seconds)


async def deliver_webhooks_forever(stop: asyncio.Event, poll_seconds: float) -> None:
    """The outbox for sites without a Matrix homeserver (Mattermost/Slack webhooks only)."""
    while not stop.is_set():
        try:
            await sync_to_async(outbox.deliver_webhooks)()
        except Exception:  # the loop must outlive one bad row; the row stays queued
            log.exception("outbox round failed")
        await _sleep_or_stop(stop, poll_seconds)


UNMAPPED = "GUARDiA에 연결되지 않은 메신저 계정입니다. 관리자에게 메신저 계정 등록을 요청하세요."


async def _sleep_or_stop(stop: asyncio.Event, seconds: float) -> None:
    try:
        await asyncio.wait_for(stop.wait(), seconds)
    except TimeoutError:
        pass
