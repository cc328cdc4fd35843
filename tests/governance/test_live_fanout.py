"""Live status fan-out: one committed transition reaches every socket subscribed to its task,
and what each socket costs on the way is no database work at all.

The first test runs the project's ASGI application in process (in-memory layer) and counts
the statements of a transition published to one socket and to 200 (the same number), and
the database hops made for the 200 recipients (none). The
second opens 300 browser-like sockets on a real Daphne with the production layer (Redis
pub/sub) and commits the transition in this process.
"""

from __future__ import annotations

import asyncio
import json

import pytest
import websockets
from asgiref.sync import async_to_sync, sync_to_async
from channels.layers import channel_layers
from channels.testing import WebsocketCommunicator
from django.conf import settings
from django.db import connection, transaction
from django.test import Client
from django.test.utils import CaptureQueriesContext

from governance.models import OpsTask, Status
from governance.transitions import apply_transition, lock_task
from tests.factories import file_task, governance_world
from tests.live import daphne, redis_server, service_env


def session_of(user) -> str:
    client = Client()
    client.force_login(user)
    return client.cookies[settings.SESSION_COOKIE_NAME].value


def executing_task(world) -> OpsTask:
    task = file_task(world)
    OpsTask.objects.filter(pk=task.pk).update(status=Status.EXECUTING)
    return task


def lose_contact(task: OpsTask) -> int:
    """Commit EXECUTING → STATE_UNCERTAIN (events go out after commit); the statements it took,
    counting whatever ran on this thread until every hook had run."""
    with CaptureQueriesContext(connection) as statements:
        with transaction.atomic():
            apply_transition("worker", lock_task(pk=task.pk), "lose_contact", "ssh lost", reason="ssh lost")
    return len(statements)


@pytest.mark.django_db(transaction=True)
def test_one_transition_reaches_200_sockets_with_no_statement_per_socket(monkeypatch):
    import channels.consumer

    from guardia.asgi import application

    # Channels tidies database connections before every handler it dispatches: a hop to the
    # one thread all consumers' database work shares. Counted (the real function still runs).
    hops = []
    tidy = channels.consumer.aclose_old_connections

    async def counted_tidy():
        hops.append(1)
        return await tidy()

    monkeypatch.setattr(channels.consumer, "aclose_old_connections", counted_tidy)

    world = governance_world()
    lone, crowded = executing_task(world), executing_task(world)
    cookie = f"{settings.SESSION_COOKIE_NAME}={session_of(world.auditor)}".encode()
    headers = [(b"origin", b"http://localhost"), (b"host", b"localhost"), (b"cookie", cookie)]

    async def open_sockets(task: OpsTask, count: int) -> list[WebsocketCommunicator]:
        sockets = []
        for _ in range(count):
            socket = WebsocketCommunicator(application, f"/ws/tasks/{task.task_id}/", headers=headers)
            socket.scope["client"] = ("127.0.0.1", 52000)
            connected, code = await socket.connect(timeout=5)
            assert connected, code
            sockets.append(socket)
        return sockets

    async def transitions_seen(sockets: list[WebsocketCommunicator]) -> list[str]:
        seen = []
        for socket in sockets:
            while (event := await socket.receive_json_from(timeout=5))["kind"] != "transition":
                pass
            seen.append(event["status"])
        return seen

    async def scenario() -> tuple[int, int, list[str]]:
        # Database work runs on this test's thread (thread-sensitive), where the counting happens.
        one, many = await open_sockets(lone, 1), await open_sockets(crowded, 200)
        to_one = await sync_to_async(lose_contact)(lone)
        await transitions_seen(one)
        hops.clear()
        to_many = await sync_to_async(lose_contact)(crowded)
        seen = await transitions_seen(many)
        assert hops == []  # no database hop for any of the 200 recipients
        for socket in one + many:
            await socket.disconnect()
        return to_one, to_many, seen

    to_one, to_many, seen = async_to_sync(scenario)()
    assert seen == [Status.STATE_UNCERTAIN] * 200
    assert to_one > 0 and to_many == to_one  # the same statements for 200 sockets as for one
    assert OpsTask.objects.get(pk=crowded.pk).status == Status.STATE_UNCERTAIN


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_300_sockets_on_one_daphne_get_a_transition_through_redis_pubsub(tmp_path, settings):
    world = governance_world()
    task = executing_task(world)
    cookie = f"{settings.SESSION_COOKIE_NAME}={session_of(world.auditor)}"
    db_url = f"sqlite:///{settings.DATABASES['default']['NAME']}"
    with redis_server() as redis_url:
        env = service_env(db_url, redis_url, GUARDIA_CHANNEL_LAYER="redis", GUARDIA_LOG_LEVEL="WARNING")
        with daphne(env, tmp_path / "daphne.log") as address:
            # This process publishes the way the worker does: through the same Redis, pub/sub.
            settings.CHANNEL_LAYERS = {
                "default": {
                    "BACKEND": "channels_redis.pubsub.RedisPubSubChannelLayer",
                    "CONFIG": {"hosts": [{"address": redis_url}]},
                }
            }
            channel_layers.backends.clear()

            async def scenario() -> tuple[list[str], list[str]]:
                headers = {"Cookie": cookie, "Origin": f"http://{address}"}
                url = f"ws://{address}/ws/tasks/{task.task_id}/"
                gate = asyncio.Semaphore(20)  # handshakes in flight: each reads the session and the task

                async def open_socket():
                    async with gate:
                        return await websockets.connect(url, additional_headers=headers, open_timeout=60)

                sockets = await asyncio.gather(*(open_socket() for _ in range(300)))

                async def first_transition(sock) -> str:
                    while (event := json.loads(await sock.recv()))["kind"] != "transition":
                        pass
                    return event["status"]

                waiting = [asyncio.ensure_future(asyncio.wait_for(first_transition(s), 30)) for s in sockets]
                await asyncio.to_thread(lose_contact, task)
                seen = await asyncio.gather(*waiting, return_exceptions=True)
                await asyncio.gather(*(s.close() for s in sockets))
                codes = [str(s.close_code) for s in sockets if s.close_code != 1000]
                return [str(x) for x in seen], codes

            try:
                seen, bad_closes = asyncio.run(scenario())
            finally:
                channel_layers.backends.clear()
    log = (tmp_path / "daphne.log").read_text(errors="replace")
    assert seen == [Status.STATE_UNCERTAIN] * 300
    assert bad_closes == []
    # No consumer failed (a socket that is slow to shut down under load is not a failure here).
    assert "Exception inside application" not in log and "Too many connections" not in log, log[-2000:]
