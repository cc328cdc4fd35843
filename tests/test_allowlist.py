"""The client allowlist over HTTP and WebSocket, the trusted-proxy rule for X-Forwarded-For,
and login throttling that follows the same address rule.

The WebSocket tests go through guardia.asgi.application (the stack Daphne serves) with
Channels' WebsocketCommunicator, and once through a real Daphne process.
"""

from __future__ import annotations

import asyncio

import pytest
import websockets
from asgiref.sync import async_to_sync
from axes.models import AccessAttempt
from channels.testing import WebsocketCommunicator
from django.conf import settings
from django.test import Client

from guardia.middleware import resolve_client
from tests.factories import UserFactory
from tests.live import daphne, sqlite_child_env

LOGIN = "/accounts/login/"
BASTION = ["10.10.0.0/16"]
PROXY = "192.0.2.10"


def session_cookie(user) -> str:
    client = Client()
    client.force_login(user)
    return client.cookies[settings.SESSION_COOKIE_NAME].value


def ws_connect(path: str, *, peer: str, session: str = "", forwarded: str = "") -> tuple[bool, int | None]:
    """Open a WebSocket through the project's ASGI application from `peer`; (accepted, close code)."""
    from guardia.asgi import application

    headers = [(b"origin", b"http://localhost"), (b"host", b"localhost")]
    if session:
        headers.append((b"cookie", f"{settings.SESSION_COOKIE_NAME}={session}".encode()))
    if forwarded:
        headers.append((b"x-forwarded-for", forwarded.encode()))

    async def attempt():
        communicator = WebsocketCommunicator(application, path, headers=headers)
        communicator.scope["client"] = (peer, 52000)
        connected, code = await communicator.connect(timeout=5)
        if connected:
            await communicator.disconnect()
        return connected, code

    return async_to_sync(attempt)()


# --- the address rule ------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("peer", "header", "expected"),
    [
        ("172.16.0.1", "10.10.3.4", "172.16.0.1"),  # not a proxy: its header is ignored
        (PROXY, "10.10.3.4", "10.10.3.4"),  # our proxy: the address it appended
        (PROXY, "10.10.3.4, 8.8.8.8", "8.8.8.8"),  # the client forged the left entry; the proxy saw 8.8.8.8
        (PROXY, "8.8.8.8, 192.0.2.11", "8.8.8.8"),  # two proxies of ours in a row
        (PROXY, "not-an-address", ""),  # garbage from a trusted hop: no address at all
        (PROXY, "", PROXY),  # no header: the proxy itself
    ],
)
def test_forwarded_for_is_believed_only_from_trusted_proxies(peer, header, expected):
    from guardia.middleware import parse_networks

    proxies = parse_networks([PROXY, "192.0.2.11/32"], "GUARDIA_TRUSTED_PROXIES")
    assert resolve_client(peer, header, proxies) == expected


# --- HTTP allowlist ---------------------------------------------------------------------------------
def test_http_allowlist_ignores_forwarded_for_from_an_untrusted_peer(db, settings):
    settings.CLIENT_ALLOWLIST = BASTION
    settings.TRUSTED_PROXIES = [PROXY]
    client = Client()
    forged = client.get(LOGIN, REMOTE_ADDR="172.16.0.1", HTTP_X_FORWARDED_FOR="10.10.3.4")
    assert forged.status_code == 403 and b"client network not allowed" in forged.content
    # The same header from our reverse proxy is believed, both ways.
    assert client.get(LOGIN, REMOTE_ADDR=PROXY, HTTP_X_FORWARDED_FOR="10.10.3.4").status_code == 200
    assert client.get(LOGIN, REMOTE_ADDR=PROXY, HTTP_X_FORWARDED_FOR="8.8.8.8").status_code == 403
    # A client behind the proxy cannot smuggle a bastion address in front of its own.
    assert client.get(LOGIN, REMOTE_ADDR=PROXY, HTTP_X_FORWARDED_FOR="10.10.3.4, 8.8.8.8").status_code == 403


def test_without_trusted_proxies_no_forwarded_header_counts(db, settings):
    settings.CLIENT_ALLOWLIST = BASTION
    settings.TRUSTED_PROXIES = []
    client = Client()
    assert client.get(LOGIN, REMOTE_ADDR=PROXY, HTTP_X_FORWARDED_FOR="10.10.3.4").status_code == 403
    assert client.get(LOGIN, REMOTE_ADDR="10.10.0.5", HTTP_X_FORWARDED_FOR="8.8.8.8").status_code == 200


# --- WebSocket allowlist ------------------------------------------------------------------------------
@pytest.mark.django_db(transaction=True)
def test_websocket_from_outside_the_bastion_range_is_refused(settings):
    settings.CLIENT_ALLOWLIST = BASTION
    settings.TRUSTED_PROXIES = [PROXY]
    session = session_cookie(UserFactory(username="lead-ws", role="team_lead"))

    # The same logged-in session: accepted from the bastion, refused from anywhere else.
    assert ws_connect("/ws/live/", peer="10.10.3.4", session=session)[0] is True
    assert ws_connect("/ws/live/", peer="203.0.113.9", session=session)[0] is False
    assert ws_connect("/ws/tasks/OPS-20260101-001/", peer="203.0.113.9", session=session)[0] is False
    # A forged X-Forwarded-For from an outside peer changes nothing ...
    assert ws_connect("/ws/live/", peer="203.0.113.9", session=session, forwarded="10.10.3.4")[0] is False
    # ... while the trusted proxy's header is believed, both ways.
    assert ws_connect("/ws/live/", peer=PROXY, session=session, forwarded="10.10.3.4")[0] is True
    assert ws_connect("/ws/live/", peer=PROXY, session=session, forwarded="203.0.113.9")[0] is False


@pytest.mark.django_db(transaction=True)
@pytest.mark.slow
def test_websocket_allowlist_in_a_real_daphne(tmp_path):
    """Daphne serving guardia.asgi: a browser socket from 127.0.0.1 is refused when loopback is
    not a bastion range, and let through when a trusted proxy on loopback vouches for a bastion address."""
    user = UserFactory(username="lead-daphne", role="team_lead")
    session = session_cookie(user)
    env = sqlite_child_env(GUARDIA_CLIENT_ALLOWLIST="10.10.0.0/16", GUARDIA_TRUSTED_PROXIES="127.0.0.1")

    async def attempt(address: str, forwarded: str = "") -> int:
        headers = {"Cookie": f"{settings.SESSION_COOKIE_NAME}={session}", "Origin": f"http://{address}"}
        if forwarded:
            headers["X-Forwarded-For"] = forwarded
        try:
            async with websockets.connect(f"ws://{address}/ws/live/", additional_headers=headers):
                return 101
        except websockets.exceptions.InvalidStatus as refused:
            return refused.response.status_code

    with daphne(env, tmp_path / "daphne.log") as address:
        direct = asyncio.run(attempt(address))
        vouched = asyncio.run(attempt(address, forwarded="10.10.7.7"))
        outside = asyncio.run(attempt(address, forwarded="203.0.113.9"))
    assert (direct, vouched, outside) == (403, 101, 403)


# --- login throttling -----------------------------------------------------------------------------------
def fail_login(client: Client, username: str, address: str, forwarded: str = ""):
    extra = {"REMOTE_ADDR": address}
    if forwarded:
        extra["HTTP_X_FORWARDED_FOR"] = forwarded
    return client.post(LOGIN, {"username": username, "password": "wrong"}, **extra)


def good_login(username: str, address: str, forwarded: str = "") -> bool:
    client = Client()
    extra = {"REMOTE_ADDR": address}
    if forwarded:
        extra["HTTP_X_FORWARDED_FOR"] = forwarded
    response = client.post(LOGIN, {"username": username, "password": "pw-Guardia-1"}, **extra)
    return response.status_code == 302 and "_auth_user_id" in client.session


@pytest.fixture
def lead_behind_proxy(db, settings):
    """Three failures lock an account; PROXY is the trusted proxy; "lead" is a team lead's account."""
    settings.AXES_FAILURE_LIMIT = 3
    settings.TRUSTED_PROXIES = [PROXY]
    return UserFactory(username="lead", role="team_lead")


def test_throttling_ignores_forwarded_for_from_an_untrusted_peer(lead_behind_proxy):
    """An attacker rotating X-Forwarded-For is still one address: the account locks."""
    client = Client()
    for n in range(3):
        fail_login(client, "lead", "10.0.0.7", forwarded=f"10.0.9.{n}")
    assert not good_login("lead", "10.0.0.7", forwarded="10.0.9.99")
    assert set(AccessAttempt.objects.values_list("ip_address", flat=True)) == {"10.0.0.7"}


def test_throttling_believes_the_trusted_proxy(lead_behind_proxy):
    """Behind our proxy, two people are two addresses: one is locked, the other is not."""
    client = Client()
    for _ in range(3):
        fail_login(client, "lead", PROXY, forwarded="10.10.1.1")
    assert not good_login("lead", PROXY, forwarded="10.10.1.1")
    assert good_login("lead", PROXY, forwarded="10.10.2.2")
    assert set(AccessAttempt.objects.values_list("ip_address", flat=True)) == {"10.10.1.1"}


@pytest.fixture
def victim(db, settings):
    """Five failures lock an account, six an address; "victim" is a team lead's account."""
    settings.AXES_FAILURE_LIMIT = 5
    settings.AXES_ADDRESS_FAILURE_LIMIT = 6
    return UserFactory(username="victim", role="team_lead")


def test_one_address_trying_many_usernames_is_locked_out(victim):
    client = Client()
    # Never more than one failure per username: the per-account limit alone would never trip.
    for n in range(6):
        fail_login(client, f"guess{n}", "10.0.0.66")
    assert not good_login("victim", "10.0.0.66")  # the address is locked, whatever username it tries
    assert good_login("victim", "10.0.0.67")  # the account itself is not


def test_a_few_typos_from_a_shared_address_do_not_lock_it(victim):
    client = Client()
    for n in range(5):
        fail_login(client, f"typo{n}", "10.0.0.66")
    assert good_login("victim", "10.0.0.66")
