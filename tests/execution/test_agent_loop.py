"""The AI work agent's whole loop on the sshd testbed: a CODE_FIX request → approvals → the
agent's round in a git worktree → the PM sees the highlighted diff with build and test results →
sends it back with an instruction → round 2 has the instruction in context.md → the PM accepts
→ the built WAR is filed as an APP_DEPLOY with its own plan and approvals → the rolling engine
deploys it to real sshd servers → the changed page is served over HTTP.

Real parts: the demo application in a real git repository, the reference agent (the
deterministic stand-in for a coding agent), python3 builds and tests, OpenSSH servers, the
console through the Django test client as the PM."""

from __future__ import annotations

import urllib.request
from pathlib import Path

import pytest
from django.test import Client

from audit.models import AuditEntry
from cmdb.models import HealthCriteria, Institution, SystemOwner, SystemSource
from execution import tasks
from execution.agent import demo
from execution.services import run_task
from governance import services
from governance.models import OpsTask, Status
from governance.results import ResultPackage
from tests.execution.test_agent_rounds import run_second_round
from tests.factories import UserFactory

pytestmark = pytest.mark.testbed

CHANGE = {
    "description": "민원 안내 페이지의 운영 시간을 20시까지로 바꿔 주세요",
    "file": "src/index.html",
    "find": "평일 09:00-18:00",
    "replace": "평일 09:00-20:00",
}
INSTRUCTION = '목요일 야간 민원을 반영하세요.\n바꾸기: "평일 09:00-20:00" -> "평일 09:00-21:00 (목요일 야간 민원)"'


def page(server) -> str:
    url = server.health_url.rsplit("/", 1)[0] + "/index.html"  # the WAS answers where its health URL points
    with urllib.request.urlopen(url, timeout=5) as response:
        return response.read().decode("utf-8")


def approve_all(task: OpsTask) -> OpsTask:
    """Every open approval step decided by its assignee, as the console would."""
    task.refresh_from_db()
    while task.status == Status.PENDING_APPROVAL:
        step = task.steps.filter(status="P", activated_at__isnull=False).get()
        services.decide_step(step.assigned_to, step.pk, "APPROVED", "확인", plan_sha256=task.plan_sha256)
        task.refresh_from_db()
    assert task.status == Status.APPROVED
    return task


def test_code_change_reworked_then_deployed_and_served(
    testbed_cmdb, tmp_path, settings, django_capture_on_commit_callbacks
):
    settings.AGENT_WORK_ROOT = tmp_path / "agent"
    settings.AGENT_OS_USER = ""
    servers = sorted(testbed_cmdb, key=lambda s: s.server_id)[:2]
    system = servers[0].system
    HealthCriteria.objects.filter(system=system).update(port_wait_seconds=10)
    pm = UserFactory(username="agent-pm", role="pm")
    Institution.objects.filter(pk=system.institution_id).update(pm=pm)
    owner = UserFactory(username="agent-owner", role="team_lead")
    SystemOwner.objects.create(
        system=system, owner=owner, supervisor=UserFactory(username="agent-sup", role="supervisor")
    )
    requester = UserFactory(username="agent-field", role="site_manager")
    system.institution.site_managers.add(requester)
    repository = demo.create_demo_repository(tmp_path / "repo")
    SystemSource.objects.create(system=system, repository=str(repository), **demo.DEMO_SOURCE)
    assert not _serves_page(servers[0]), "the testbed's initial app has no page yet"

    # Filed and approved like any high-risk request; the plan shows the agent, build and test.
    task = services.submit_task(
        requester,
        system=system,
        sub_type="CODE_FIX",
        title="운영 시간 안내 변경",
        targets=servers,
        parameters=CHANGE,
        raw_request="민원 안내 페이지 운영 시간을 20시로 바꿔 주세요",
    )
    assert task.category == "CODE_CHANGE"
    assert {step["name"] for step in task.plan["step_sets"][0]["steps"]} >= {"agent", "build", "test", "deploy"}
    approve_all(task)

    # Round 1: the worker runs the agent; the PM sees the diff, highlighted per file, and the tests.
    run_task(task.pk)
    task.refresh_from_db()
    assert task.status == Status.PENDING_PM_VALIDATION, task.failure_reason
    console = Client()
    console.force_login(pm)
    shown = console.get(f"/console/tasks/{task.task_id}/validate/")
    assert shown.status_code == 200
    html = shown.content.decode()
    assert 'id="code-change"' in html and 'data-path="src/index.html"' in html
    assert '<span class="line add">' in html and "20:00" in html and "css/code-diff.css" in html
    assert 'data-step="build"' in html and 'data-step="test"' in html

    # The PM sends it back with an instruction: round 2 reads it from context.md.
    with django_capture_on_commit_callbacks(execute=False) as queued:
        sent = console.post(
            f"/console/tasks/{task.task_id}/validate/",
            {"verdict": "rework", "comments": INSTRUCTION, "plan_sha256": task.plan_sha256},
        )
    assert sent.status_code == 302
    assert any("run_task" in str(getattr(cb, "args", "")) for cb in queued), "round 2 is queued for the worker"
    second = run_second_round(task)
    context = (Path(second.worktree) / ".guardia" / "context.md").read_text()
    assert all(line in context for line in INSTRUCTION.splitlines())
    change = ResultPackage.from_json(task.result_package).code_change
    assert change is not None and change.round == 2 and change.artifact["sha256"]

    # The PM accepts: the worker files the artifact as an APP_DEPLOY through the approval policy.
    with django_capture_on_commit_callbacks(execute=False) as queued:
        console.post(
            f"/console/tasks/{task.task_id}/validate/",
            {"verdict": "approve", "comments": "배포하세요", "plan_sha256": task.plan_sha256},
        )
    task.refresh_from_db()
    assert task.status == Status.COMPLETED
    assert any("deploy_code_change" in str(getattr(cb, "args", "")) for cb in queued)
    deploy_id = tasks.deploy_code_change(task.pk, pm.pk)
    deploy = OpsTask.objects.get(task_id=deploy_id)
    assert deploy.sub_type == "APP_DEPLOY" and deploy.requester == requester
    assert deploy.status == Status.PENDING_APPROVAL and deploy.steps.count() == 2  # owner + PM, as any deploy
    assert {u["sha256"] for u in deploy.plan["uploads"]} == {change.artifact["sha256"]}
    assert deploy.parameters["version"] == change.artifact["version"]
    assert AuditEntry.objects.filter(action="agent.deploy_filed", task=task.task_id).exists()
    shown = console.get(f"/console/tasks/{deploy.task_id}/")
    assert change.artifact["sha256"] in shown.content.decode(), "its plan is shown as for any deploy"

    # Approved and deployed by the rolling engine: the changed page is served over HTTP.
    approve_all(deploy)
    assert run_task(deploy.pk) == "SUCCEEDED"
    deploy.refresh_from_db()
    assert deploy.status == Status.PENDING_PM_VALIDATION, deploy.failure_reason
    for server in servers:
        served = page(server)
        assert "평일 09:00-21:00 (목요일 야간 민원)" in served
    untouched = sorted(testbed_cmdb, key=lambda s: s.server_id)[2]
    assert not _serves_page(untouched), "only the task's servers got the new WAR"


def _serves_page(server) -> bool:
    try:
        page(server)
    except OSError:
        return False
    return True
