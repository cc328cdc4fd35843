"""Live events handed to sockets by the pub/sub layer's per-process fan-out (guardia.channel_layer):
the project's ASGI application in process, real Channels consumers, the production layer on a
real Redis, transitions committed through the product's path.

What the fan-out must keep: a socket joins only what its user may see, a task socket forwards
only its task, one frame per transition, each socket's frames in publication order (also for
events that arrive while its handshake is still under way), and a closed socket leaves the
layer's registry and its Redis subscriptions at once.
"""

from __future__ import annotations

import asyncio

import pytest
from asgiref.sync import async_to_sync, sync_to_async
from channels.layers import channel_layers, get_channel_layer
from channels.testing import WebsocketCommunicator
from django.conf import settings

from governance import events
from governance.models import OpsTask
from tests.factories import InstitutionFactory, UserFactory, governance_world
from tests.governance.test_live_fanout import executing_task, frame_events, lose_contact, session_of, subscribed
from tests.live import redis_server
from tests.waiting import wait_until


@pytest.fixture
def pubsub_layer(settings):
    """The production channel layer (guardia.channel_layer.PubSubChannelLayer) on a throwaway Redis."""
    with redis_server() as redis_url:
        settings.CHANNEL_LAYERS = {
            "default": {
                "BACKEND": "guardia.channel_layer.PubSubChannelLayer",
                "CONFIG": {"hosts": [{"address": redis_url}]},
            }
        }
        channel_layers.backends.clear()
        try:
            yield redis_url
        finally:
            channel_layers.backends.clear()


async def open_socket(user, path: str) -> tuple[WebsocketCommunicator, int | None]:
    from guardia.asgi import application

    cookie = f"{settings.SESSION_COOKIE_NAME}={await sync_to_async(session_of)(user)}".encode()
    headers = [(b"origin", b"http://localhost"), (b"host", b"localhost"), (b"cookie", cookie)]
    socket = WebsocketCommunicator(application, path, headers=headers)
    socket.scope["client"] = ("127.0.0.1", 52000)
    connected, code = await socket.connect(timeout=10)
    return socket, None if connected else code


async def frames(socket: WebsocketCommunicator) -> list[list[dict]]:
    """Every frame the socket got until it went quiet, each as its list of events."""
    got = []
    while not await socket.receive_nothing(timeout=0.3):
        got.append(frame_events(await socket.receive_from(5)))
    return got


@pytest.mark.django_db(transaction=True)
def test_fanned_out_transitions_reach_only_allowed_sockets_one_frame_each(pubsub_layer):
    world = governance_world()
    mine, other = executing_task(world), executing_task(world)
    stranger = UserFactory(username="farmanager", role="site_manager")
    InstitutionFactory(code="FAR", name="먼기관", tier=2).site_managers.add(stranger)

    async def scenario():
        watchers = [(await open_socket(world.auditor, f"/ws/tasks/{mine.task_id}/"))[0] for _ in range(20)]
        other_page, _ = await open_socket(world.auditor, f"/ws/tasks/{other.task_id}/")
        console, _ = await open_socket(world.auditor, "/ws/live/")
        strangers_live, _ = await open_socket(stranger, "/ws/live/")
        _, refused = await open_socket(stranger, f"/ws/tasks/{mine.task_id}/")
        for task in (mine, other, mine):
            await sync_to_async(lose_contact)(task)
            await sync_to_async(OpsTask.objects.filter(pk=task.pk).update)(status="EXECUTING")
        *watched, other_got, console_got, stranger_got = await asyncio.gather(
            *(frames(s) for s in [*watchers, other_page, console, strangers_live])
        )
        seen = {"watchers": watched, "other": other_got, "console": console_got, "stranger": stranger_got}
        for socket in [*watchers, other_page, console, strangers_live]:
            await socket.disconnect()
        return refused, seen, get_channel_layer()._get_layer()

    refused, seen, layer = async_to_sync(scenario)()
    assert refused == 4403  # another institution's site manager may not watch the task

    def transitions(got: list[list[dict]]) -> list[tuple[str, str]]:
        return [(e["task_id"], e["status"]) for frame in got for e in frame if e["kind"] == "transition"]

    # Each watcher of the task: one frame per transition (its timeline line in the same frame),
    # only its own task's.
    for got in seen["watchers"]:
        assert [[e["kind"] for e in frame] for frame in got] == [["timeline", "transition"]] * 2
        assert transitions(got) == [(mine.task_id, "STATE_UNCERTAIN")] * 2
    assert transitions(seen["other"]) == [(other.task_id, "STATE_UNCERTAIN")]
    # The console (an auditor sees every task) in commit order; the stranger's inbox nothing.
    assert [task for task, _ in transitions(seen["console"])] == [mine.task_id, other.task_id, mine.task_id]
    assert seen["stranger"] == []
    # Every closed socket left the fan-out's registry, and the layer's channels.
    assert layer._handlers == {} and layer.channels == {}


@pytest.mark.django_db(transaction=True)
def test_each_socket_gets_the_events_in_order_even_while_its_handshake_is_under_way(pubsub_layer):
    """Sockets connect while events stream to their group: each gets an unbroken, increasing
    run ending with the last event (those that came before its accept were held and sent
    right after it); when all have closed, no subscription is left in Redis."""
    world = governance_world()
    task = executing_task(world)
    group = events.task_group(task.task_id)
    count = 200

    async def scenario() -> list[list[int]]:
        layer = get_channel_layer()

        async def publish(numbers: range) -> None:
            for n in numbers:
                event = events.LiveEvent(kind="step", task_id=task.task_id, data={"n": n})
                await events.deliver(layer, [(group, event)])
                await asyncio.sleep(0.002)

        first, _ = await open_socket(world.auditor, f"/ws/tasks/{task.task_id}/")
        publishing = asyncio.ensure_future(publish(range(count)))
        sockets = [first]
        while not publishing.done():  # ten handshakes at a time: they queue for the layer's lock
            opened = await asyncio.gather(
                *(open_socket(world.auditor, f"/ws/tasks/{task.task_id}/") for _ in range(10))
            )
            sockets += [socket for socket, _ in opened]
        await publish(range(count, count + 1))  # one more, once every socket is open
        received = await asyncio.gather(*(frames(s) for s in sockets))
        got = [[e["data"]["n"] for frame in framed for e in frame] for framed in received]
        for socket in sockets:
            await socket.disconnect()
        return got

    got = async_to_sync(scenario)()
    assert len(got) > 2 and got[0] == list(range(count + 1))
    for numbers in got:
        assert numbers and numbers == list(range(numbers[0], count + 1)), numbers
    assert any(numbers[0] > 0 for numbers in got)  # some joined mid-stream
    wait_until(lambda: not subscribed(pubsub_layer), timeout=10, message="subscriptions left in Redis")
