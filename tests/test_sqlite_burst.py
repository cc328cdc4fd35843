"""A burst of 500 approvals and filings over two Daphne processes sharing one SQLite file:
no 5xx, and every accepted request is in the audit chain exactly once.

Processes: two Daphne servers (the ASGI app, writes through guardia.db_sqlite's write queue)
on the pytest-django transactional test database; 25 keep-alive clients spread over both.
"""

from __future__ import annotations

import http.client
import json
import threading
from collections import Counter
from contextlib import ExitStack

import pytest
from rest_framework.authtoken.models import Token

from audit.models import AuditEntry
from audit.verify import verify_chain
from governance.models import OpsTask, Status
from tests.approval_work import pending_owner_approvals
from tests.factories import ServerFactory, UserFactory, governance_world
from tests.live import daphne, sqlite_child_env

pytestmark = pytest.mark.django_db(transaction=True)

APPROVERS, APPROVALS_EACH = 20, 20  # 400 approvals
FILERS, FILINGS_EACH = 5, 20  # 100 filings


def approval_work(world) -> list[tuple[str, list[int]]]:
    return [
        pending_owner_approvals(
            owner=UserFactory(username=f"burst-owner{c}", role="team_lead"),
            supervisor=world.supervisor,
            requester=world.requester,
            institution=world.inst,
            code=f"BURST{c:02d}",
            name=f"버스트{c}",
            count=APPROVALS_EACH,
            title="burst",
        )
        for c in range(APPROVERS)
    ]


def client(address: str, token: str, requests: list[tuple[str, str, dict]], answers: list) -> None:
    host, port = address.split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=60)
    headers = {"Authorization": f"Token {token}", "Content-Type": "application/json"}
    for method, path, body in requests:
        try:
            conn.request(method, path, json.dumps(body), headers)
            response = conn.getresponse()
            payload = response.read()
            answers.append((path, body, response.status, payload[:300], response.getheader("Retry-After")))
        except (OSError, http.client.HTTPException) as exc:
            answers.append((path, body, 0, repr(exc).encode(), None))
            conn.close()
            conn = http.client.HTTPConnection(host, int(port), timeout=60)
    conn.close()


@pytest.mark.slow
def test_burst_over_two_web_processes_has_no_5xx_and_every_accepted_request_once(tmp_path):
    world = governance_world()
    ServerFactory(system=world.system, server_id="was-3")
    approvals = approval_work(world)
    filer_token = Token.objects.create(user=world.requester).key
    env = sqlite_child_env(GUARDIA_LOG_LEVEL="WARNING")
    jobs: list[tuple[str, list[tuple[str, str, dict]]]] = [
        (
            token,
            [
                ("POST", "/api/v1/approval/process", {"step_id": s, "decision": "APPROVED", "comments": "burst"})
                for s in steps
            ],
        )
        for token, steps in approvals
    ]
    for f in range(FILERS):
        jobs.append(
            (
                filer_token,
                [
                    (
                        "POST",
                        "/api/v1/tasks/",
                        {
                            "system": world.system.code,
                            "sub_type": "SERVICE_RESTART",
                            "title": f"burst filing {f}-{i}",
                            "targets": ["was-1"],
                            "raw_request": f"burst-{f}-{i}",
                        },
                    )
                    for i in range(FILINGS_EACH)
                ],
            )
        )
    answers: list = []
    with ExitStack() as stack:
        addresses = [stack.enter_context(daphne(env, tmp_path / f"daphne{i}.log")) for i in range(2)]
        threads = [
            threading.Thread(target=client, args=(addresses[i % 2], token, requests, answers))
            for i, (token, requests) in enumerate(jobs)
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    assert len(answers) == APPROVERS * APPROVALS_EACH + FILERS * FILINGS_EACH == 500
    statuses = Counter(status for _p, _b, status, _payload, _retry in answers)
    failures = [(p, status, payload) for p, _b, status, payload, _r in answers if status >= 500 or status == 0]
    assert not failures, (statuses, failures[:3])
    assert statuses == {200: 400, 201: 100}, (statuses, [a for a in answers if a[2] not in (200, 201)][:3])
    # Every accepted approval and filing is in the chain exactly once.
    decided = Counter(AuditEntry.objects.filter(action="approval.decided").values_list("task", flat=True))
    approved_tasks = set(OpsTask.objects.filter(task_id__startswith="OPS-BURST").values_list("task_id", flat=True))
    assert {t: decided[t] for t in approved_tasks} == {t: 1 for t in approved_tasks}
    assert OpsTask.objects.filter(task_id__startswith="OPS-BURST", status=Status.APPROVED).count() == 400
    filed = OpsTask.objects.filter(title__startswith="burst filing ")
    assert filed.count() == 100
    submitted = Counter(AuditEntry.objects.filter(action="task.submitted").values_list("task", flat=True))
    assert {t.task_id: submitted[t.task_id] for t in filed} == {t.task_id: 1 for t in filed}
    assert verify_chain().ok
