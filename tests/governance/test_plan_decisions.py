"""The plan is what is approved: it is rendered at filing, shown on every decision surface,
and every decision records the hash of the plan it saw.

The plans come from the real renderer (settings.PLAN_RENDERER); nothing is mocked.
"""

from __future__ import annotations

import html

import pytest
from django.core.management import call_command
from django.test import Client
from django.urls import reverse
from rest_framework.test import APIClient

from audit.models import AuditEntry
from governance import control, plans, services
from governance.errors import Conflict, Invalid, NotFound
from governance.models import ApprovalStep, Notification, OpsTask, Status, StepStatus
from tests.factories import InstitutionFactory, ServerFactory, SystemFactory, SystemOwnerFactory, UserFactory
from tests.task_parameters import valid_parameters

DECIDE = "/api/v1/approval/process"


def api(user) -> APIClient:
    client = APIClient()
    client.force_authenticate(user)
    return client


def console(user) -> Client:
    client = Client()
    client.force_login(user, backend="django.contrib.auth.backends.ModelBackend")
    return client


def commands_of(plan: dict) -> list[str]:
    return [
        step["command"]
        for step_set in plan["step_sets"]
        for step in [*step_set["steps"], *step_set["rollback"]]
        if step.get("command")
    ]


def snapshot(task: OpsTask) -> tuple:
    task.refresh_from_db()
    return (
        task.status,
        task.playbook_version,
        task.plan_sha256,
        [(s.status, s.actual_approver_id, s.comments) for s in task.steps.order_by("step_order")],
        AuditEntry.objects.filter(action="approval.decided").count(),
    )


# --- filing ------------------------------------------------------------------------
def test_filing_stores_the_rendered_plan_and_its_hash(world, submit):
    task = submit("APP_DEPLOY")
    assert task.plan["playbook"] == "APP_DEPLOY"
    assert task.plan_sha256 == plans.plan_sha256(task.plan) and len(task.plan_sha256) == 64
    assert task.playbook_version == task.plan["playbook_version"] != ""
    # Deterministic: the same parameters on the same CMDB rows for the same task render the same plan.
    again = plans.render_plan(
        task.sub_type, task.parameters, task.system, list(task.targets.all()), task_ref=task.task_id
    )
    assert plans.plan_sha256(again) == task.plan_sha256
    servers = {s for step_set in task.plan["step_sets"] for s in step_set["servers"]}
    assert servers == {"was-1", "was-2"}
    assert commands_of(task.plan), "a deploy plan shows the command lines it will run"
    # The approver's notification (inbox and messenger) names the plan it asks about.
    asked = Notification.objects.get(user=world.owner, task=task, kind="approval")
    assert task.plan_sha256[:12] in asked.message and "명령" in asked.message
    filed = AuditEntry.objects.get(action="task.submitted", task=task.task_id)
    assert filed.payload["plan_sha256"] == task.plan_sha256
    assert filed.payload["playbook_version"] == task.playbook_version


def test_auto_approved_tasks_get_their_plan_too(world, submit):
    world.inst.tier = 3
    world.inst.save()
    task = submit("MEMORY_CHECK", title="메모리 점검")
    assert task.status == Status.APPROVED
    assert task.plan["playbook"] == "MEMORY_CHECK" and task.plan_sha256 == plans.plan_sha256(task.plan)
    assert task.playbook_version == task.plan["playbook_version"]


def test_bad_parameters_are_400_naming_every_field_before_anyone_is_asked(world):
    response = api(world.requester).post(
        "/api/v1/tasks/",
        {
            "system": "BUDGET",
            "sub_type": "APP_DEPLOY",
            "title": "배포",
            "targets": ["was-1"],
            "parameters": {"version": "1.0 ; rm -rf /"},
        },
        format="json",
    )
    assert response.status_code == 400, response.content
    body = response.json()
    assert "parameters.artifact_sha256" in body and "parameters.version" in body, body
    assert not OpsTask.objects.exists()
    assert not Notification.objects.exists()  # no approver was asked


def test_the_console_form_shows_each_parameter_error_next_to_its_field(world):
    page = console(world.requester).post(
        "/console/requests/new/",
        {
            "system": world.system.pk,
            "sub_type": "APP_DEPLOY",
            "title": "배포",
            "targets": [world.servers[0].pk],
            "version": "1.0 ; rm -rf /",
            "parameters_json": '{"rollout": {"drain_flag": "/etc/passwd"}}',
        },
    )
    assert page.status_code == 200
    errors = page.context["form"].errors
    assert "artifact" in errors and "version" in errors, errors  # the typed fields that feed the parameters
    assert "rollout" in str(errors.get("parameters_json", "")), errors
    assert not OpsTask.objects.exists()


def test_a_request_that_can_render_no_plan_is_refused(world):
    response = api(world.requester).post(
        "/api/v1/tasks/",
        {
            "system": "BUDGET",
            "sub_type": "APP_DEPLOY",
            "title": "대상 없는 배포",
            "parameters": valid_parameters("APP_DEPLOY"),
        },
        format="json",
    )
    assert response.status_code == 400, response.content
    assert not OpsTask.objects.exists()


# --- showing the plan ----------------------------------------------------------------
def test_rest_detail_and_history_show_plan_parameters_artifact_and_targets(world, submit):
    task = submit("APP_DEPLOY")
    # A secret-named value in the parameters is never answered back.
    OpsTask.objects.filter(pk=task.pk).update(parameters={**task.parameters, "db_password": "hunter2-secret"})
    for url in (f"/api/v1/tasks/{task.task_id}/", f"/api/v1/task/history/{task.task_id}"):
        response = api(world.owner).get(url)
        assert response.status_code == 200, response.content
        body = response.json()
        detail = body.get("task", body)
        assert detail["plan"] == task.plan
        assert detail["plan_sha256"] == task.plan_sha256
        assert detail["playbook_version"] == task.plan["playbook_version"]
        assert detail["parameters"]["db_password"] == "****"
        assert "hunter2-secret" not in response.content.decode()
        assert detail["parameters"]["version"] == "1.0.1"
        assert detail["artifact"]["sha256"] == task.parameters["artifact_sha256"]
        assert detail["artifact"]["version"] == "1.0.1"
        assert [s["server_id"] for s in detail["target_servers"]] == ["was-1", "was-2"]
        assert detail["targets"] == ["was-1", "was-2"]


def test_approvals_page_and_task_page_show_the_exact_commands_and_the_form_carries_the_hash(world, submit):
    task = submit("APP_DEPLOY")
    commands = commands_of(task.plan)
    for url in ("/console/approvals/", f"/console/tasks/{task.task_id}/"):
        page = console(world.owner).get(url)
        assert page.status_code == 200
        text = page.content.decode()
        for command in commands:
            assert html.escape(command) in text, (url, command)
        assert f'name="plan_sha256" value="{task.plan_sha256}"' in text
        assert task.plan_sha256[:12] in text
        assert task.parameters["artifact_sha256"] in text  # the artifact's hash
        assert "실행 계획" in text and "was-1" in text and "was-2" in text
        assert "백업" in text and "사후 점검" in text  # step names carry Korean labels
        # The restart's steps sent as one chain say so beside each of them.
        assert "다음 단계와 함께 한 번에 서버로 보냄: swap, startup." in text
        assert "shutdown 단계가 성공하면 서버에서 바로 이어서 실행" in text
    # Someone who may see the task but decides nothing still sees the plan, without a form.
    page = console(world.auditor).get(f"/console/tasks/{task.task_id}/").content.decode()
    assert html.escape(commands[0]) in page and 'name="plan_sha256"' not in page


def test_a_plan_for_a_thousand_servers_stays_readable_and_complete(world, submit):
    servers = ServerFactory.create_batch(1000, system=world.system)
    task = submit("APP_DEPLOY", targets=servers)
    sets = task.plan["step_sets"]
    assert len(sets) < 10  # servers with identical steps share one set: commands are listed once per set
    text = console(world.owner).get("/console/approvals/").content.decode()
    assert len(text) < 1_500_000
    for server in servers:
        assert server.server_id in text
    for command in commands_of(task.plan):
        assert html.escape(command) in text
    first = html.escape(commands_of(task.plan)[0])
    assert text.count(first) <= 2 * len(sets)
    assert len(task.plan["rollout"]["groups"]) > 5
    assert '<details class="plan-groups">' in text  # many rollout groups: collapsed
    assert text.count('<details class="plan-set"') == len(sets)


# --- deciding -----------------------------------------------------------------------
def test_a_decision_on_a_stale_plan_hash_is_409_and_changes_nothing(world, submit):
    task = submit("APP_DEPLOY")
    step = task.steps.get(step_order=1)
    before = snapshot(task)
    stale = "0" * 64
    response = api(world.owner).post(
        DECIDE, {"step_id": step.pk, "decision": "APPROVED", "plan_sha256": stale}, format="json"
    )
    assert response.status_code == 409, response.content
    assert "계획이 바뀌었습니다" in str(response.json())
    assert snapshot(task) == before
    # The console form posting a stale hash is refused the same way.
    page = console(world.owner).post(
        f"/console/approvals/{step.pk}/decide/", {"decision": "APPROVED", "plan_sha256": stale}, follow=True
    )
    assert "계획이 바뀌었습니다" in page.content.decode()
    assert snapshot(task) == before


def test_a_plan_changed_in_the_database_after_filing_cannot_be_approved(world, submit):
    task = submit("APP_DEPLOY")
    tampered = dict(task.plan, warnings=["(changed behind the approver's back)"])
    OpsTask.objects.filter(pk=task.pk).update(plan=tampered)
    before = snapshot(task)
    with pytest.raises(Conflict, match="계획이 바뀌었습니다"):
        services.decide_step(
            world.owner, task.steps.get(step_order=1).pk, "APPROVED", "ok", plan_sha256=task.plan_sha256
        )
    assert snapshot(task) == before


def test_each_decision_records_the_plan_hash_and_playbook_version_and_approval_pins_the_version(world, submit):
    task = submit("APP_DEPLOY")
    version = task.plan["playbook_version"]
    OpsTask.objects.filter(pk=task.pk).update(playbook_version="")  # pinned from the plan at final approval
    owner_step, pm_step = task.steps.order_by("step_order")
    response = api(world.owner).post(
        DECIDE, {"step_id": owner_step.pk, "decision": "APPROVED", "plan_sha256": task.plan_sha256}, format="json"
    )
    assert response.status_code == 200, response.content
    page = console(world.pm).post(
        f"/console/approvals/{pm_step.pk}/decide/",
        {"decision": "APPROVED", "comments": "", "plan_sha256": task.plan_sha256},
    )
    assert page.status_code == 302
    task.refresh_from_db()
    assert task.status == Status.APPROVED
    assert task.playbook_version == version
    decided = list(AuditEntry.objects.filter(action="approval.decided", task=task.task_id).order_by("seq"))
    assert [e.payload["plan_sha256"] for e in decided] == [task.plan_sha256, task.plan_sha256]
    assert [e.payload["playbook_version"] for e in decided] == [version, version]


def test_a_rejection_needs_a_comment(world, submit):
    task = submit("APP_DEPLOY")
    step = task.steps.get(step_order=1)
    before = snapshot(task)
    response = api(world.owner).post(
        DECIDE, {"step_id": step.pk, "decision": "REJECTED", "comments": "  "}, format="json"
    )
    assert response.status_code == 400 and "comments" in response.json(), response.content
    page = console(world.owner).post(f"/console/approvals/{step.pk}/decide/", {"decision": "REJECTED"}, follow=True)
    assert "반려하려면 사유" in page.content.decode()
    with pytest.raises(Invalid) as refused:
        services.decide_step(world.owner, step.pk, "REJECTED", "")
    assert refused.value.field == "comments"
    assert snapshot(task) == before
    services.decide_step(world.owner, step.pk, "REJECTED", "배포 시간 외", plan_sha256=task.plan_sha256)
    task.refresh_from_db()
    assert task.status == Status.REJECTED


@pytest.fixture
def foreign_task(world, submit, django_capture_on_commit_callbacks):
    """Another institution's task whose approval step was already decided (so a state
    conflict would be there to leak)."""
    inst = InstitutionFactory(code="MOIS", name="행정안전부", tier=2, pm=world.pm)
    system = SystemFactory(code="RESIDENT", name="주민시스템", institution=inst)
    ownership = SystemOwnerFactory(system=system, owner=UserFactory(username="mois-lead", role="team_lead"))
    requester = UserFactory(username="mois-field", role="site_manager")
    inst.site_managers.add(requester)
    servers = [ServerFactory(system=system, server_id=f"mois-{i}") for i in (1, 2)]
    task = submit("SERVICE_RESTART", requester=requester, system=system, targets=servers, title="재시작")
    with django_capture_on_commit_callbacks(execute=False):
        services.decide_step(ownership.owner, task.steps.get().pk, "REJECTED", "기밀: 주민시스템 점검 중")
    return task


def test_a_foreign_approval_step_is_404_not_409_on_rest_and_console(world, foreign_task):
    step = foreign_task.steps.get()
    before = snapshot(foreign_task)
    for user in (world.owner, world.outsider, world.supervisor):
        for decision, comments in (("APPROVED", ""), ("REJECTED", "x")):
            response = api(user).post(
                DECIDE, {"step_id": step.pk, "decision": decision, "comments": comments}, format="json"
            )
            assert response.status_code == 404, (user, response.content)
            assert foreign_task.task_id not in response.content.decode()
            assert "기밀" not in response.content.decode()
            page = console(user).post(
                f"/console/approvals/{step.pk}/decide/", {"decision": decision, "comments": comments}
            )
            assert page.status_code == 404, user
            assert foreign_task.task_id not in page.content.decode()
        with pytest.raises(NotFound):
            services.decide_step(user, step.pk, "APPROVED")
    assert snapshot(foreign_task) == before


def test_pm_validation_with_a_stale_plan_hash_is_409(world, submit):
    task = submit("SERVICE_RESTART")
    services.decide_step(world.owner, task.steps.get().pk, "APPROVED")
    control.execution_started(task.pk)
    control.execution_finished(task.pk, {"log": "ok"})
    response = api(world.pm).post(
        f"/api/v1/tasks/{task.task_id}/validate/", {"verdict": "approve", "plan_sha256": "f" * 64}, format="json"
    )
    assert response.status_code == 409 and "계획이 바뀌었습니다" in str(response.json())
    task.refresh_from_db()
    assert task.status == Status.PENDING_PM_VALIDATION
    response = api(world.pm).post(
        f"/api/v1/tasks/{task.task_id}/validate/",
        {"verdict": "approve", "plan_sha256": task.plan_sha256},
        format="json",
    )
    assert response.status_code == 200, response.content
    entry = AuditEntry.objects.get(action="validation.decided", task=task.task_id)
    assert entry.payload["plan_sha256"] == task.plan_sha256
    assert entry.payload["playbook_version"] == task.plan["playbook_version"]


def test_the_pm_page_posts_the_plan_hash_it_showed(world, submit, client):
    task = submit("SERVICE_RESTART")
    services.decide_step(world.owner, task.steps.get().pk, "APPROVED")
    control.execution_started(task.pk)
    control.execution_finished(task.pk, {"log": "ok"})
    client.force_login(world.pm)
    url = reverse("console:validate", args=[task.task_id])
    page = client.get(url).content.decode()
    assert f'name="plan_sha256" value="{task.plan_sha256}"' in page
    client.post(url, {"verdict": "approve", "plan_sha256": "f" * 64})  # a page showing another plan
    task.refresh_from_db()
    assert task.status == Status.PENDING_PM_VALIDATION
    client.post(url, {"verdict": "approve", "plan_sha256": task.plan_sha256})
    task.refresh_from_db()
    assert task.status == Status.COMPLETED
    entry = AuditEntry.objects.get(action="validation.decided", task=task.task_id)
    assert entry.payload["plan_sha256"] == task.plan_sha256


# --- the engine's alarm -------------------------------------------------------------
def test_alert_plan_changed_audits_and_notifies_the_owner_and_the_pms(world, submit):
    task = submit("APP_DEPLOY")
    other_pm = UserFactory(username="pm2", role="pm")
    current = "e" * 64
    plans.alert_plan_changed(task, task.plan_sha256, current)
    entry = AuditEntry.objects.get(action="execution.plan_mismatch", task=task.task_id)
    assert entry.payload["approved_sha256"] == task.plan_sha256
    assert entry.payload["current_sha256"] == current
    told = set(Notification.objects.filter(task=task, kind="alert").values_list("user__username", flat=True))
    assert {world.owner.username, world.pm.username, other_pm.username} <= told
    assert world.requester.username not in told and world.auditor.username not in told
    note = Notification.objects.filter(task=task, kind="alert", user=world.owner).get()
    assert task.task_id in note.message and "계획" in note.message


# --- the schema ---------------------------------------------------------------------
def test_the_openapi_schema_documents_the_plan_and_validates(world):
    call_command("spectacular", "--validate", "--fail-on-warn", "--file", "/dev/null")
    schema = api(world.admin).get("/api/v1/schema/", {"format": "json"}).json()
    components = schema["components"]["schemas"]
    detail = components["TaskDetail"]["properties"]
    for field in ("plan", "plan_sha256", "playbook_version", "parameters", "artifact", "target_servers"):
        assert field in detail, field
    assert "plan_sha256" in components["ApprovalDecision"]["properties"]
    assert "plan_sha256" in components["Validation"]["properties"]


def test_steps_never_decided_keep_their_status(world, submit):
    """A refused decision leaves the step open for the right decider."""
    task = submit("APP_DEPLOY")
    step = task.steps.get(step_order=1)
    with pytest.raises(Conflict):
        services.decide_step(world.owner, step.pk, "APPROVED", plan_sha256="1" * 64)
    step = ApprovalStep.objects.get(pk=step.pk)
    assert step.status == StepStatus.PENDING and step.assigned_to == world.owner
