"""The live-status path every later feature uses: a django-q2 task running in the real
qcluster process sends an event that a WebSocket client connected to Daphne receives."""

from __future__ import annotations

import asyncio
import json

import pytest
import websockets
from django.conf import settings
from django.test import Client
from django_q.tasks import async_task

from tests.factories import UserFactory
from tests.live import daphne, qcluster, redis_server, service_env


@pytest.mark.django_db(transaction=True)
@pytest.mark.slow
def test_worker_event_reaches_browser_socket(tmp_path):
    user = UserFactory(username="watcher", role="team_lead")
    client = Client()
    client.force_login(user)
    session = client.cookies[settings.SESSION_COOKIE_NAME].value
    db_url = f"sqlite:///{settings.DATABASES['default']['NAME']}"

    with redis_server() as redis_url:
        env = service_env(db_url, redis_url)
        with daphne(env, tmp_path / "daphne.log") as address, qcluster(env, tmp_path / "qcluster.log"):

            async def listen() -> dict:
                headers = {"Cookie": f"{settings.SESSION_COOKIE_NAME}={session}", "Origin": f"http://{address}"}
                async with websockets.connect(f"ws://{address}/ws/live/", additional_headers=headers) as sock:
                    # Enqueued only once the socket has joined its groups, through the ORM broker.
                    await asyncio.to_thread(async_task, "governance.tasks.announce", f"user.{user.pk}", "배포 시작")
                    return json.loads(await asyncio.wait_for(sock.recv(), timeout=30))

            event = asyncio.run(listen())
    assert event["kind"] == "ping"
    assert event["message"] == "배포 시작"


@pytest.mark.django_db(transaction=True)
@pytest.mark.slow
def test_socket_refuses_anonymous(tmp_path):
    with redis_server() as redis_url:
        env = service_env(f"sqlite:///{settings.DATABASES['default']['NAME']}", redis_url)
        with daphne(env, tmp_path / "daphne.log") as address:

            async def attempt() -> int:
                try:
                    async with websockets.connect(
                        f"ws://{address}/ws/live/", additional_headers={"Origin": f"http://{address}"}
                    ):
                        return 101
                except websockets.exceptions.InvalidStatus as refused:
                    return refused.response.status_code

            status = asyncio.run(attempt())
    assert status == 403  # closed before accept: the handshake is refused
