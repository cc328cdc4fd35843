"""The request signals and the answer's closing in the request's own thread under the ASGI
application Daphne serves (guardia.handler): no thread of its own per request for Django's
request signals, and a streamed answer still made, closed and stopped as Django's handler does."""

from __future__ import annotations

import asyncio
import threading

import pytest
from django.core import signals
from django.test import Client
from rest_framework.authtoken.models import Token

from audit.models import AuditEntry
from tests.audit.test_export_streaming import _asgi_get, _more
from tests.factories import UserFactory
from tests.governance.test_asgi_decision import URL, _asgi

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def signal_threads():
    """The thread each request_started / request_finished signal was received in."""
    got: list[tuple[str, str]] = []

    def started(**_):
        got.append(("started", threading.current_thread().name))

    def finished(**_):
        got.append(("finished", threading.current_thread().name))

    signals.request_started.connect(started)
    signals.request_finished.connect(finished)
    yield got
    signals.request_started.disconnect(started)
    signals.request_finished.disconnect(finished)


def test_an_answer_in_memory_starts_no_thread_and_signals_in_the_request_thread(world, monkeypatch, signal_threads):
    token = Token.objects.create(user=world.owner).key
    assert asyncio.run(_asgi("GET", URL, token))[0] == 405  # the request threads exist from here on
    started = []
    original = threading.Thread.start
    monkeypatch.setattr(threading.Thread, "start", lambda thread: (started.append(thread.name), original(thread))[1])
    signal_threads.clear()
    for _ in range(5):
        status, _body = asyncio.run(_asgi("GET", URL, token))
        assert status == 405
    # Django's handler started a thread for every request's signals (asgiref's per-request context);
    # the kept pool of request threads may still grow, up to its bound.
    assert [name for name in started if not name.startswith("request")] == []
    assert [kind for kind, _ in signal_threads] == ["started", "finished"] * 5
    assert {name.split("_")[0] for _, name in signal_threads} == {"request"}


def _auditor_cookie(username: str) -> str:
    client = Client()
    client.force_login(UserFactory(username=username, role="auditor"))
    return f"sessionid={client.cookies['sessionid'].value}"


def test_a_streamed_export_on_the_server_path_is_made_closed_and_stopped_as_before(roles, signal_threads):
    """As under Daphne (an event loop of its own): the export leaves in several blocks, is closed
    once after the last (request_finished, then its audit entry, complete); a client that goes
    away after the first block stops it, and it is audited as partial."""
    _more(400)
    cookie = _auditor_cookie("auditor5")
    status, _, bodies = asyncio.run(_asgi_get("/audit/export/", "format=jsonl", cookie))
    assert status == 200 and len(bodies) > 3 and b'"type":"trailer"' in b"".join(bodies[-2:])
    assert [kind for kind, _ in signal_threads] == ["started", "finished"]
    # The blocks and the closing share one thread, not one of the request threads.
    assert not signal_threads[1][1].startswith("request")
    run = AuditEntry.objects.filter(action="audit.export").get()
    assert (run.actor, run.payload["complete"]) == ("auditor5", True)

    status, _, bodies = asyncio.run(_asgi_get("/audit/export/", "format=jsonl", cookie, leave_after=1))
    assert status == 200 and len(bodies) == 1
    partial = AuditEntry.objects.filter(action="audit.export").exclude(pk=run.pk).get()
    assert partial.payload["complete"] is False and 0 < partial.payload["count"] < AuditEntry.objects.count() - 1
