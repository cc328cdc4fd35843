"""The whole chain across real processes: a requester files an APP_DEPLOY with an
artifact over REST, the owner and the PM approve over REST, a qcluster worker deploys it over
SSH to real sshd servers, a browser-side WebSocket on Daphne sees the worker's live events,
the PM validates, and the audit chain verifies.

Processes: the sshd testbed, redis-server, Daphne and `manage.py qcluster`, all sharing the
pytest-django transactional test database (a SQLite file) through GUARDIA_DATABASE_URL.
"""

from __future__ import annotations

import asyncio
import json
import time
import urllib.request

import pytest
import requests
import websockets
from django.conf import settings
from django.contrib.auth.models import Group
from django.test import Client
from rest_framework.authtoken.models import Token

from audit.models import AuditEntry
from audit.verify import verify_chain
from cmdb.models import HealthCriteria, Institution, SystemOwner
from governance.models import OpsTask, Status
from testbed.register import register_testbed
from tests.execution.conftest import clean_testbed, testbed  # noqa: F401 - the session sshd testbed fixtures
from tests.execution.engine_helpers import SETTLED
from tests.factories import UserFactory, war_bytes
from tests.live import daphne, qcluster, redis_server, service_env

pytestmark = [pytest.mark.testbed, pytest.mark.django_db(transaction=True)]

ARTIFACT = war_bytes("2.0.0", padding=8192)  # a real WAR: uploads are checked to be one


def people(servers):
    """The testbed system's owner, its institution's PM, and a site manager who files requests."""
    system = servers[0].system
    pm = UserFactory(username="e2e-pm", role="pm")
    Institution.objects.filter(pk=system.institution_id).update(pm=pm)
    owner = UserFactory(username="e2e-owner", role="team_lead")
    supervisor = UserFactory(username="e2e-sup", role="supervisor")
    SystemOwner.objects.create(system=system, owner=owner, supervisor=supervisor)
    requester = UserFactory(username="e2e-field", role="site_manager")
    system.institution.site_managers.add(requester)
    assert Group.objects.get(name="site_manager").permissions.filter(codename="submit_task").exists()
    return requester, owner, pm


def version_served(server) -> str:
    with urllib.request.urlopen(server.health_url, timeout=3) as response:
        body = response.read().decode()
    return body.rsplit("version=", 1)[1].strip() if "version=" in body else ""


def test_request_to_validated_deployment_across_processes(clean_testbed, tmp_path):  # noqa: F811
    started = time.monotonic()
    servers = sorted(register_testbed(clean_testbed.manifest), key=lambda s: s.server_id)
    HealthCriteria.objects.filter(system=servers[0].system).update(port_wait_seconds=10)
    targets, bystander = servers[:3], servers[-1]
    requester, owner, pm = people(servers)
    tokens = {user: Token.objects.create(user=user).key for user in (requester, owner, pm)}
    browser = Client()
    browser.force_login(requester)  # the requester watches their own task page
    session = browser.cookies[settings.SESSION_COOKIE_NAME].value
    db_url = f"sqlite:///{settings.DATABASES['default']['NAME']}"

    with redis_server() as redis_url:
        env = service_env(db_url, redis_url)
        with daphne(env, tmp_path / "daphne.log") as address, qcluster(env, tmp_path / "qcluster.log"):
            base = f"http://{address}/api/v1"

            def api(user, path: str, **kwargs) -> requests.Response:
                return requests.post(
                    f"{base}{path}", headers={"Authorization": f"Token {tokens[user]}"}, timeout=20, **kwargs
                )

            # 1. File the request: multipart with the artifact, like a PWA or a script would.
            filed = api(
                requester,
                "/tasks/",
                data={
                    "system": targets[0].system.code,
                    "sub_type": "APP_DEPLOY",
                    "title": "WAS 2.0.0 배포",
                    "targets": [s.server_id for s in targets],
                    "sr_number": "SR-E2E-1",
                    "parameters": json.dumps({"version": "2.0.0", "rollout": {"canary_share": 0, "max_parallel": 4}}),
                },
                files={"artifact": ("app-2.0.0.war", ARTIFACT)},
            )
            assert filed.status_code == 201, filed.text
            task_id = filed.json()["task_id"]
            first_step = filed.json()["steps"][0]
            assert filed.json()["status"] == Status.PENDING_APPROVAL and first_step["assigned_to"] == owner.username

            def approve_all() -> dict:
                decided = api(
                    owner,
                    "/approval/process",
                    json={"step_id": first_step["id"], "decision": "APPROVED", "comments": "owner ok"},
                )
                assert decided.status_code == 200, decided.text
                assert decided.json()["result"] == "NEXT_STEP"
                assert decided.json()["next_step"]["assigned_to"] == pm.username
                final = api(
                    pm,
                    "/approval/process",
                    json={"step_id": decided.json()["next_step"]["id"], "decision": "APPROVED", "comments": "pm ok"},
                )
                assert final.status_code == 200, final.text
                return final.json()

            async def watch() -> tuple[dict, list[dict]]:
                headers = {"Cookie": f"{settings.SESSION_COOKIE_NAME}={session}", "Origin": f"http://{address}"}
                seen: list[dict] = []
                async with websockets.connect(f"ws://{address}/ws/tasks/{task_id}/", additional_headers=headers) as ws:

                    async def read_until_settled() -> None:
                        async for raw in ws:
                            frame = json.loads(raw)  # one event, or an array of one commit's events
                            batch = frame if isinstance(frame, list) else [frame]
                            seen.extend(batch)
                            if any(e["kind"] == "transition" and e["status"] in SETTLED for e in batch):
                                return

                    reader = asyncio.create_task(read_until_settled())
                    decision = await asyncio.to_thread(approve_all)  # the socket is open before anyone decides
                    await asyncio.wait_for(reader, timeout=45)
                return decision, seen

            decision, seen = asyncio.run(watch())
            assert decision["result"] == "APPROVED", decision

            # 2. The worker's progress reached the browser socket through Redis and Daphne.
            target_ids = {s.server_id for s in targets}
            server_events = [e for e in seen if e["kind"] == "server"]
            step_events = [e for e in seen if e["kind"] == "step" and "phase" in e.get("data", {})]
            assert {e["data"]["server"] for e in server_events if e["status"] == "SUCCEEDED"} == target_ids
            assert {"upload", "startup", "http"} <= {e["data"]["step"] for e in step_events}
            transitions = [e["status"] for e in seen if e["kind"] == "transition"]
            assert transitions[-3:] == [Status.APPROVED, Status.EXECUTING, Status.PENDING_PM_VALIDATION], transitions

            # 3. The servers really serve 2.0.0; a server that was not a target was not touched.
            task = OpsTask.objects.get(task_id=task_id)
            assert task.status == Status.PENDING_PM_VALIDATION, task.failure_reason
            assert {s.server_id: version_served(s) for s in targets} == dict.fromkeys(target_ids, "2.0.0")
            assert version_served(bystander) == "1.0.0"

            # 4. The PM validates the result package: COMPLETED.
            validated = api(pm, f"/tasks/{task_id}/validate/", json={"verdict": "approve", "comments": "확인"})
            assert validated.status_code == 200, validated.text
            assert validated.json()["status"] == Status.COMPLETED

    # 5. One hash chain holds the whole story, and it verifies.
    report = verify_chain()
    assert report.ok, report.summary
    actions = list(AuditEntry.objects.filter(task=task_id).values_list("action", flat=True))
    assert actions.count("task.submitted") == 1
    assert actions.count("approval.decided") == 2
    assert actions.count("execution.step") >= 3 * 6  # every remote command on every target
    assert "validation.decided" in actions
    decided = AuditEntry.objects.filter(task=task_id, action="approval.decided").order_by("seq")
    assert [e.actor for e in decided] == [owner.username, pm.username]
    assert time.monotonic() - started < 90  # budget ~60 s on a 2-core VM shared with other runs
