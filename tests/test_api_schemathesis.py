"""Schemathesis against GUARDiA's own OpenAPI schema, in process, with a token of each role.

The schema is the one /api/v1/schema/ serves (drf-spectacular); every documented
operation gets generated requests (valid ones, and invalid ones for the error paths),
each sent once per role, on the demo world plus a task, a step, an execution and a
server run of our own. A response must never be a 5xx and must match what the schema
documents: the status code, the content type and the body.
"""

from __future__ import annotations

import io
from datetime import timedelta

import pytest
import schemathesis
from django.core import signals
from django.core.handlers.wsgi import WSGIHandler
from django.core.management import call_command
from django.db import close_old_connections
from django.utils import timezone
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis.errors import Unsatisfiable
from rest_framework.authtoken.models import Token
from schemathesis import GenerationMode
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from cmdb.management.commands.seed_demo import USERS
from cmdb.models import Server, System
from governance import services
from intake.models import PhotoReading

pytestmark = [pytest.mark.django_db, pytest.mark.timeout(300)]

EXAMPLES = 8  # generated requests per operation and mode; each is sent once per role
CHECKS = [schemathesis.checks.not_a_server_error, status_code_conformance, content_type_conformance,
          response_schema_conformance]  # fmt: skip


@pytest.fixture
def in_process_app():
    """Django's WSGI handler called in this thread, inside the test's transaction.

    Like django.test.Client, keep the request signals from closing the connection (which
    would end the test transaction and lose the seeded world)."""
    signals.request_started.disconnect(close_old_connections)
    signals.request_finished.disconnect(close_old_connections)
    try:
        yield WSGIHandler()
    finally:
        signals.request_started.connect(close_old_connections)
        signals.request_finished.connect(close_old_connections)


@pytest.fixture
def world(settings, tmp_path, django_capture_on_commit_callbacks):
    """The demo CMDB and users (one per role, each with a token), one task with a pending
    step, and one finished execution with a server run and a step."""
    from execution.models import Execution, ServerRun, StepResult

    settings.TESTBED_DIR = tmp_path / "no-testbed"
    call_command("seed_demo", stdout=io.StringIO())
    system = System.objects.get(code="MOEF-HR")
    servers = list(Server.objects.filter(system=system)[:2])
    requester = Token.objects.get(user__username="sitemgr").user
    with django_capture_on_commit_callbacks(execute=False):
        task = services.submit_task(requester, system=system, sub_type="SERVICE_RESTART", title="WAS 재시작",
                                    targets=servers, parameters={})  # fmt: skip
    now = timezone.now()
    execution = Execution.objects.create(
        task=task, task_ref=task.task_id, playbook="SERVICE_RESTART", playbook_version="1",
        started_at=now - timedelta(minutes=2), finished_at=now,
    )  # fmt: skip
    run = ServerRun.objects.create(
        execution=execution,
        server=servers[0],
        server_ref=servers[0].server_id,
        playbook_version="1",
        started_at=now - timedelta(minutes=1),
        finished_at=now,
    )
    StepResult.objects.create(server_run=run, seq=1, name="restart", command="systemctl restart was", exit_code=0)
    photo = PhotoReading.objects.create(
        requester=requester, status=PhotoReading.Status.DONE, result={"text": "WAS1 오류", "error_codes": []}
    )
    return {
        "tokens": {role: Token.objects.get(user__username=username).key for username, role, _name in USERS},
        "ids": {"task_id": task.task_id, "id": None, "step_id": task.steps.first().pk, "photo_id": str(photo.id)},
        "objects": {
            "executions": execution.pk,
            "server-runs": run.pk,
            "institutions": system.institution_id,
            "systems": system.pk,
            "servers": servers[0].pk,
        },
    }


def load_schema(app, token: str):
    # Through the same in-process app (a django.test.Client would re-connect the
    # connection-closing signal handlers on its way out).
    return schemathesis.openapi.from_wsgi("/api/v1/schema/?format=json", app,
                                          headers={"Authorization": f"Token {token}"})  # fmt: skip


def known_path_parameters(operation, world) -> dict | None:
    """Path parameters naming an object that exists, so detail bodies are checked too."""
    names = {p.name for p in operation.path_parameters}
    if not names:
        return None
    values = {}
    for name in names:
        if name == "id":
            collection = operation.path.strip("/").split("/")[-2]
            values[name] = world["objects"].get(collection)
        else:
            values[name] = world["ids"].get(name)
    return values if all(v is not None for v in values.values()) else None


def exercise(operation, strategy, tokens: dict[str, str], seen: dict, failures: list[str], examples: int) -> None:
    @given(case=strategy)
    @settings(max_examples=examples, deadline=None, database=None, derandomize=True,
              phases=[Phase.explicit, Phase.generate], suppress_health_check=list(HealthCheck))  # fmt: skip
    def send(case):
        for role, token in tokens.items():
            headers = {"Authorization": f"Token {token}"}
            try:
                response = case.call(headers=headers)
                seen.setdefault(operation.label, set()).add((role, response.status_code))
                case.validate_response(response, checks=CHECKS, headers=headers)
            except (Exception, BaseExceptionGroup) as exc:  # a check failed: collect it, explore the rest
                failures.append(f"{operation.label} as {role}: {type(exc).__name__}: {str(exc)[:1500]}")

    try:
        send()
    except Unsatisfiable:
        # Schemathesis found no way to break this operation's inputs (negative mode); the
        # valid requests are still sent.
        pass


@pytest.mark.slow
def test_every_documented_operation_conforms_for_every_role(world, in_process_app):
    tokens = world["tokens"]
    schema = load_schema(in_process_app, tokens["admin"])
    failures: list[str] = []
    seen: dict[str, set[tuple[str, int]]] = {}
    for result in schema.get_all_operations():
        operation = result.ok()
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
            exercise(operation, operation.as_strategy(generation_mode=mode), tokens, seen, failures, EXAMPLES)
        known = known_path_parameters(operation, world)
        if known:
            exercise(operation, operation.as_strategy(path_parameters=known), tokens, seen, failures, 3)
    assert not failures, "\n\n".join(dict.fromkeys(failures))

    # Not vacuous: every operation was reached with every token, no token was refused, and
    # every read answered a success to some role (so success bodies were checked as well).
    assert len(seen) >= 19 and all({role for role, _ in statuses} == set(tokens) for statuses in seen.values())
    assert not [label for label, statuses in seen.items() if any(code == 401 for _, code in statuses)]
    reads_without_success = [
        label for label, statuses in seen.items()
        if label.startswith("GET ") and not any(200 <= code < 300 for _, code in statuses)
    ]  # fmt: skip
    assert not reads_without_success


def test_huge_paging_numbers_answer_a_bounded_page(world, client):
    """Found by the run above: limit=969667340870556772728832 made SQLite overflow (500)."""
    headers = {"HTTP_AUTHORIZATION": f"Token {world['tokens']['admin']}"}
    response = client.get("/api/v1/cmdb/servers/", {"limit": 10**24}, **headers)
    assert response.status_code == 200 and len(response.json()["results"]) == 20  # all of them, capped at 500
    far = client.get("/api/v1/cmdb/servers/", {"limit": 5, "offset": 10**30}, **headers)
    assert far.status_code == 200 and far.json()["results"] == []
