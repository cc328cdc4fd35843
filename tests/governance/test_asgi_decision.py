"""A decision through the ASGI application Daphne serves (guardia.asgi.application), whose
middleware and view run as one synchronous stack in the request's thread: the same answers,
refusals and guarantees as through Django's own handler."""

from __future__ import annotations

import asyncio
import json
from asyncio import iscoroutinefunction

import pytest
from rest_framework.authtoken.models import Token

from audit.models import AuditEntry
from audit.verify import verify_chain
from governance.models import OpsTask, StepStatus
from guardia import handler

pytestmark = pytest.mark.django_db(transaction=True)
URL = "/api/v1/approval/process"


async def _asgi(method: str, path: str, token: str, body: dict | None = None, peer: str = "127.0.0.1"):
    from guardia.asgi import application

    payload = json.dumps(body).encode() if body is not None else b""
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": method,
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "root_path": "",
        "headers": [
            (b"host", b"localhost"),
            (b"authorization", f"Token {token}".encode()),
            (b"content-type", b"application/json"),
            (b"content-length", str(len(payload)).encode()),
        ],
        "client": (peer, 50000),
        "server": ("127.0.0.1", 8000),
    }
    sent: list[dict] = []
    asked = asyncio.Event()

    async def receive():
        if not asked.is_set():
            asked.set()
            return {"type": "http.request", "body": payload, "more_body": False}
        await asyncio.Event().wait()  # no disconnect while the answer is made

    async def send(message):
        sent.append(message)

    await application(scope, receive, send)
    return sent[0]["status"], b"".join(m.get("body", b"") for m in sent[1:])


def test_the_http_stack_is_built_synchronous():
    from guardia.asgi import django_asgi_app

    assert not iscoroutinefunction(django_asgi_app._middleware_chain)


def run_in_server_loop(coroutine):
    """As under Daphne: an event loop of its own, no synchronous caller above it."""
    return asyncio.run(coroutine)


def test_a_decision_and_its_refusals_through_the_asgi_application(world, submit, settings):
    task = submit("SERVICE_RESTART", targets=world.servers[:1])
    step = task.steps.get(step_order=1)
    owner, outsider = (Token.objects.create(user=u).key for u in (world.owner, world.outsider))
    before = AuditEntry.objects.count()

    # Not the outsider's step: 404, nothing decided.
    status, body = run_in_server_loop(_asgi("POST", URL, outsider, {"step_id": step.pk, "decision": "APPROVED"}))
    assert status == 404, body
    # A bad decision names the field.
    status, body = run_in_server_loop(_asgi("POST", URL, owner, {"step_id": step.pk, "decision": "MAYBE"}))
    assert status == 400 and "decision" in json.loads(body)
    # From outside the bastion ranges: refused before anything else.
    settings.CLIENT_ALLOWLIST = ["10.9.0.0/16"]
    status, _ = run_in_server_loop(_asgi("POST", URL, owner, {"step_id": step.pk, "decision": "APPROVED"}, "192.0.2.7"))
    assert status == 403
    settings.CLIENT_ALLOWLIST = []
    step.refresh_from_db()
    assert step.status == StepStatus.PENDING and AuditEntry.objects.count() == before

    status, body = run_in_server_loop(_asgi("POST", URL, owner, {"step_id": step.pk, "decision": "APPROVED"}))
    assert status == 200, body
    assert json.loads(body)["task_status"] == "APPROVED"
    assert OpsTask.objects.get(pk=task.pk).status == "APPROVED"
    assert AuditEntry.objects.count() == before + 2 and verify_chain().ok  # decision + transition, one append
    # The floor the benchmark measures: the same URL, authenticated, 405 before any view code.
    status, _ = run_in_server_loop(_asgi("GET", URL, owner))
    assert status == 405
    # Every request ran on the kept request threads, which keep their connections.
    assert {t.name.split("_")[0] for t in handler._pool()._threads} == {"request"}
