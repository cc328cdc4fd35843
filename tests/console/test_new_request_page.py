"""The console's "새 요청" page: pickers scoped to the user, typed template fields, field errors
from the service, redirect to the new task."""

from __future__ import annotations

import hashlib

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client

from audit.models import AuditEntry
from governance.attachments import attachment_root
from governance.models import OpsTask, Status
from tests.factories import ServerFactory, SystemFactory, UserFactory, war_bytes

URL = "/console/requests/new/"


@pytest.fixture
def field(console_world, django_capture_on_commit_callbacks):
    client = Client()
    client.force_login(console_world.requester)
    return client


@pytest.fixture
def post(field, console_world, django_capture_on_commit_callbacks):
    def _post(**fields):
        """The form's fields (files among them) over the world's system and a title."""
        with django_capture_on_commit_callbacks(execute=False):
            return field.post(URL, {"system": console_world.system.pk, "title": "요청", **fields})

    return _post


def test_pickers_offer_only_the_users_systems_and_that_systems_servers(field, console_world):
    foreign = SystemFactory(code="OTHER", name="다른기관시스템")
    ServerFactory(system=foreign, server_id="other-1")
    page = field.get(URL).content.decode()
    assert "예산시스템 (BUDGET)" in page and "OTHER" not in page
    assert 'id="new-request-form"' not in page  # servers come with a chosen system
    page = field.get(URL, {"system": console_world.system.pk}).content.decode()
    assert 'value="was-1"' not in page  # ids are primary keys, labels are server ids
    assert "was-1" in page and "was-2" in page and "other-1" not in page
    assert 'enctype="multipart/form-data"' in page
    # A system the user may not file for is not offered even by URL.
    page = field.get(URL, {"system": foreign.pk}).content.decode()
    assert 'id="new-request-form"' not in page


def test_deploy_with_upload_redirects_to_the_new_task(post, console_world):
    content = war_bytes("2.0.0", padding=2048)
    response = post(
        sub_type="APP_DEPLOY",
        version="2.0.0",
        sr_number="SR-7",
        targets=[s.pk for s in console_world.servers],
        parameters_json='{"rollout": {"canary_share": 0}}',
        artifact=SimpleUploadedFile("app-2.0.0.war", content),
    )
    task = OpsTask.objects.get()
    assert response.status_code == 302 and response["Location"] == f"/console/tasks/{task.task_id}/"
    sha = hashlib.sha256(content).hexdigest()
    assert task.parameters["artifact_sha256"] == sha and task.parameters["version"] == "2.0.0"
    assert task.parameters["rollout"] == {"canary_share": 0}
    assert (attachment_root() / sha).read_bytes() == content
    assert task.channel == "WEB" and task.sr_number == "SR-7" and task.status == Status.PENDING_APPROVAL
    assert set(task.targets.all()) == set(console_world.servers)
    assert [s.role for s in task.steps.order_by("step_order")] == ["owner", "pm"]
    assert AuditEntry.objects.filter(task=task.task_id, action="task.submitted").exists()


def test_data_cleanup_and_restart_templates(post, console_world):
    first = [console_world.servers[0].pk]
    post(
        sub_type="DATA_CLEANUP",
        script="purge-sessions",
        table="TB_SESSION",
        condition="created_at < '2026-01-01'",
        targets=first,
    )
    post(sub_type="SERVICE_RESTART", targets=first)
    cleanup, restart = OpsTask.objects.order_by("created_at", "pk")
    assert cleanup.parameters == {"script": "purge-sessions", "args": ["TB_SESSION", "created_at < '2026-01-01'"]}
    assert restart.parameters == {}
    assert cleanup.sub_type == "DATA_CLEANUP" and restart.sub_type == "SERVICE_RESTART"


def test_service_errors_show_next_to_their_fields_and_nothing_is_filed(post, console_world):
    missing = post(sub_type="APP_DEPLOY", version="2.0.0", targets=[console_world.servers[0].pk])
    assert missing.status_code == 200
    assert "필수 항목" in str(missing.context["form"].errors["artifact"])
    bad_json = post(sub_type="SERVICE_RESTART", parameters_json="{not json")
    assert "parameters_json" in bad_json.context["form"].errors
    unknown = post(sub_type="SERVICE_RESTART", parameters_json='{"rm": "-rf /"}')
    assert "rm: 알 수 없는 파라미터" in str(unknown.context["form"].errors["parameters_json"])
    page = unknown.content.decode()
    assert "rm: 알 수 없는 파라미터" in page and "-rf /" in page  # the user's input is kept
    foreign = SystemFactory(code="OTHER")
    refused = post(system=foreign.pk, sub_type="SERVICE_RESTART")
    assert "system" in refused.context["form"].errors
    assert not OpsTask.objects.exists()


def test_only_submitters_see_and_use_the_page(console_world):
    auditor = Client()
    auditor.force_login(UserFactory(username="auditor", role="auditor"))
    assert auditor.get(URL).status_code == 403
    assert URL not in auditor.get("/console/").content.decode()
    requester = Client()
    requester.force_login(console_world.requester)
    assert URL in requester.get("/console/").content.decode()
