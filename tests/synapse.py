"""A real Synapse for the messenger tests: one per session on loopback (SQLite, client API
only), started by the first test that asks for it and stopped at the end; people on it
are driven over the plain client-server API (a stand-in for Element, which is a browser
app), and the GUARDiA bot runs in a thread of its own as it would in its process.
"""

from __future__ import annotations

import asyncio
import itertools
import threading
import urllib.parse

import pytest
import requests

from intake.messenger import homeserver
from intake.messenger.bot import MatrixBot
from tests.waiting import wait_until

BOT_PASSWORD = "bot-password-for-tests"  # a throwaway homeserver on loopback
_txn = itertools.count(1)


@pytest.fixture(scope="session")
def synapse(tmp_path_factory):
    if not homeserver.installed():
        pytest.fail(f"Synapse is not installed in {homeserver.VENV}: run scripts/setup.sh")
    server = homeserver.Homeserver(tmp_path_factory.mktemp("synapse"))
    server.start()
    server.register("guardia", BOT_PASSWORD)
    yield server
    server.stop()


class Person:
    """Someone on the homeserver with a chat client: joins what they are invited to, reads
    every message the bot sends them, types commands."""

    def __init__(self, server: homeserver.Homeserver, localpart: str, password: str = "person-password-1"):
        self.server = server
        self.matrix_id = server.register(localpart, password)
        response = requests.post(
            f"{server.url}/_matrix/client/v3/login",
            json={
                "type": "m.login.password",
                "identifier": {"type": "m.id.user", "user": localpart},
                "password": password,
            },
            timeout=10,
        )
        response.raise_for_status()
        self.token = response.json()["access_token"]
        self.since = ""
        self.received: list[dict] = []  # {"room", "sender", "body", "event_id"}
        self.rooms: set[str] = set()

    def _call(self, method: str, path: str, **kwargs) -> dict:
        response = requests.request(
            method,
            f"{self.server.url}/_matrix/client/v3{path}",
            headers={"Authorization": f"Bearer {self.token}"},
            timeout=30,
            **kwargs,
        )
        response.raise_for_status()
        return response.json()

    def sync(self, timeout_ms: int = 0) -> None:
        # A high timeline limit: an incremental sync over many messages is not cut short.
        params = {"timeout": str(timeout_ms), "filter": '{"room": {"timeline": {"limit": 1000}}}'}
        if self.since:
            params["since"] = self.since
        data = self._call("GET", "/sync", params=params)
        self.since = data["next_batch"]
        for room_id in data.get("rooms", {}).get("invite", {}):
            self._call("POST", f"/join/{urllib.parse.quote(room_id)}", json={})
            self.rooms.add(room_id)
        for room_id, room in data.get("rooms", {}).get("join", {}).items():
            self.rooms.add(room_id)
            for event in room.get("timeline", {}).get("events", []):
                if event.get("type") == "m.room.message" and event.get("sender") != self.matrix_id:
                    self.received.append(
                        {
                            "room": room_id,
                            "sender": event["sender"],
                            "body": event["content"].get("body", ""),
                            "event_id": event["event_id"],
                            "ts": event.get("origin_server_ts", 0),
                        }
                    )

    @property
    def direct_room(self) -> str:
        """The room the bot opened with this person (or they opened with the bot)."""
        return next(iter(sorted(self.rooms)))

    def open_direct_room(self, bot_id: str) -> str:
        """Join the bot's direct room if it opened one; else open one and wait for the bot."""
        self.sync()
        if not self.rooms:
            room_id = self._call(
                "POST", "/createRoom", json={"invite": [bot_id], "is_direct": True, "preset": "trusted_private_chat"}
            )["room_id"]
            self.rooms.add(room_id)
            wait_until(
                lambda: bot_id in self._call("GET", f"/rooms/{urllib.parse.quote(room_id)}/joined_members")["joined"],
                20,
                message=f"{bot_id} did not join {room_id}",
            )
        return self.direct_room

    def invite(self, matrix_id: str) -> None:
        self._call("POST", f"/rooms/{urllib.parse.quote(self.direct_room)}/invite", json={"user_id": matrix_id})

    def say(self, text: str, room_id: str | None = None) -> None:
        room_id = room_id or self.direct_room
        self._call(
            "PUT",
            f"/rooms/{urllib.parse.quote(room_id)}/send/m.room.message/t{next(_txn)}",
            json={"msgtype": "m.text", "body": text},
        )

    def wait_for(self, needle: str, timeout: float = 20.0, after: int = 0) -> dict:
        """The first message (from index ``after``) whose text contains ``needle``."""

        def found():
            self.sync(timeout_ms=200)
            return next((m for m in self.received[after:] if needle in m["body"]), None)

        try:
            return wait_until(found, timeout, interval=0.01)
        except AssertionError:
            got = [m["body"][:160] for m in self.received[after:]]
            raise AssertionError(f"{self.matrix_id} never received {needle!r}; got {got}") from None

    def bodies(self, needle: str) -> list[str]:
        return [m["body"] for m in self.received if needle in m["body"]]


class BotThread:
    """``manage.py messenger_bot`` in a thread: the same MatrixBot.run loop, stopped cleanly."""

    def __init__(self, server: homeserver.Homeserver, **options):
        self.bot = MatrixBot(
            server.url,
            f"@guardia:{server.server_name}",
            password=BOT_PASSWORD,
            sync_timeout_ms=500,
            poll_seconds=0.05,
            **options,
        )
        self.loop: asyncio.AbstractEventLoop | None = None
        self.stop_event: asyncio.Event | None = None
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        async def main() -> None:
            self.loop = asyncio.get_running_loop()
            self.stop_event = asyncio.Event()
            try:
                await self.bot.run(self.stop_event)
            finally:
                await self.bot.close()

        try:
            asyncio.run(main())
        except BaseException as exc:  # reported by stop()
            self.error = exc
        finally:
            from django.db import connections

            connections.close_all()

    @property
    def user_id(self) -> str:
        return self.bot.user_id

    def __enter__(self) -> BotThread:
        self.thread.start()
        wait_until(lambda: self.bot.started or self.error, 30, message="the bot did not log in")
        if self.error:
            raise self.error
        return self

    def __exit__(self, *exc_info) -> None:
        if self.loop is not None and self.stop_event is not None:
            self.loop.call_soon_threadsafe(self.stop_event.set)
        self.thread.join(30)
        assert not self.thread.is_alive(), "the bot did not stop"
