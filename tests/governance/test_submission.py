"""Filing a request: POST /api/v1/tasks/ (JSON and multipart with files) and the attachment store."""

from __future__ import annotations

import hashlib
import io
import json
from pathlib import Path

import pytest
from django.conf import settings
from rest_framework.test import APIClient

from audit.models import AuditEntry
from execution.services import store_artifact
from governance.attachments import AttachmentTooLarge, attachment_root, store_attachment
from governance.models import OpsTask, Status
from tests.execution import certgen
from tests.factories import attachment_listing, named_file, war_bytes
from tests.task_parameters import war

URL = "/api/v1/tasks/"


def client_for(user) -> APIClient:
    client = APIClient()
    client.force_authenticate(user)
    return client


@pytest.fixture
def post(world, django_capture_on_commit_callbacks):
    def _post(body, user=None, fmt="json"):
        with django_capture_on_commit_callbacks(execute=False):
            return client_for(user or world.requester).post(URL, body, format=fmt)

    return _post


def test_json_request_opens_the_first_approval(world, post):
    response = post(
        {
            "system": "BUDGET",
            "sub_type": "SERVICE_RESTART",
            "title": "WAS 재시작",
            "targets": ["was-1"],
            "sr_number": "SR-2026-0100",
        }
    )
    assert response.status_code == 201, response.json()
    body = response.json()
    assert body["status"] == Status.PENDING_APPROVAL and body["channel"] == "API"
    assert body["targets"] == ["was-1"] and body["sr_number"] == "SR-2026-0100"
    assert [(s["role"], s["assigned_to"]) for s in body["steps"]] == [("owner", "owner")]
    task = OpsTask.objects.get(task_id=body["task_id"])
    assert task.requester == world.requester
    assert AuditEntry.objects.filter(task=task.task_id, action="task.submitted").count() == 1


def test_multipart_deploy_stores_the_artifact_on_the_ticket(world, post):
    content = war_bytes("2.0.0", padding=4096)
    response = post(
        {
            "system": "BUDGET",
            "sub_type": "APP_DEPLOY",
            "title": "배포 2.0.0",
            "targets": ["was-1", "was-2"],
            "parameters": json.dumps({"version": "2.0.0"}),
            "artifact": named_file(content),
        },
        fmt="multipart",
    )
    assert response.status_code == 201, response.json()
    body = response.json()
    sha = hashlib.sha256(content).hexdigest()
    assert body["parameters"]["artifact_sha256"] == sha and body["parameters"]["version"] == "2.0.0"
    assert body["parameters"]["artifact"] == {"sha256": sha, "name": "app-2.0.0.war", "size": len(content)}
    assert body["parameters"]["_meta"]["attachments"][0]["field"] == "artifact"
    assert (attachment_root() / sha).read_bytes() == content
    assert [s["role"] for s in body["steps"]] == ["owner", "pm"]
    assert sorted(body["targets"]) == ["was-1", "was-2"]


def test_ssl_cert_and_key_uploads_fill_their_parameters(world, post):
    params = {"cert_path": "/opt/was/app/conf/site.crt", "key_path": "/opt/was/app/conf/site.key", "https_port": 8443}
    ca, ca_key = certgen.make_ca()
    leaf, leaf_key = certgen.make_leaf(ca, ca_key)
    cert, key = certgen.cert_pem(leaf), certgen.key_pem(leaf_key)
    response = post(
        {
            "system": "BUDGET",
            "sub_type": "SSL_REPLACE",
            "title": "인증서 교체",
            "targets": ["was-1"],
            "parameters": json.dumps(params),
            "cert_file": named_file(cert, "site.crt"),
            "key_file": named_file(key, "site.key"),
        },
        fmt="multipart",
    )
    assert response.status_code == 201, response.json()
    parameters = response.json()["parameters"]
    assert parameters["cert_sha256"] == hashlib.sha256(cert).hexdigest()
    assert parameters["key_sha256"] == hashlib.sha256(key).hexdigest()
    assert [s["role"] for s in response.json()["steps"]] == ["owner", "pm", "security_officer"]


@pytest.mark.parametrize(
    ("body", "field", "text"),
    [
        ({"sub_type": "APP_DEPLOY", "title": "x", "targets": ["was-1"]}, "parameters.artifact_sha256", "필수"),
        (
            {"sub_type": "APP_DEPLOY", "title": "x", "parameters": {"artifact_sha256": "a" * 64}},
            "parameters",
            "저장된 첨부 파일이 없습니다 (artifact_sha256)",
        ),
        ({"sub_type": "SERVICE_RESTART", "title": "x", "parameters": {"rm": "-rf"}}, "parameters.rm", "unknown"),
        ({"sub_type": "SERVICE_RESTART", "title": "x", "parameters": ["not", "an", "object"]}, "parameters", "객체"),
        ({"sub_type": "SERVICE_RESTART", "title": "x", "targets": ["was-9"]}, "targets", "was-9"),
        ({"sub_type": "REBOOT_ALL", "title": "x"}, "sub_type", "REBOOT_ALL"),
        ({"sub_type": "SERVICE_RESTART"}, "title", "필수"),  # DRF answers in the site language
        ({"system": "NOPE", "sub_type": "SERVICE_RESTART", "title": "x"}, "system", "NOPE"),
    ],
)
def test_bad_requests_name_the_field_and_create_nothing(world, post, body, field, text):
    response = post({"system": "BUDGET", **body})
    assert response.status_code == 400
    assert field in response.json(), response.json()
    assert text in " ".join(map(str, response.json()[field]))
    assert not OpsTask.objects.exists()


def test_callers_who_may_not_file_get_403_and_store_nothing(world, post):
    before = attachment_listing()
    # The auditor may not file at all (403); a lead of another system is told the system is
    # unknown, exactly as for a code that does not exist (400 naming the field).
    for user, status, key in ((world.outsider, 400, "system"), (world.auditor, 403, "detail")):
        response = post(
            {
                "system": "BUDGET",
                "sub_type": "APP_DEPLOY",
                "title": "x",
                "targets": ["was-1"],
                "artifact": named_file(b"version=9\n"),
            },
            user=user,
            fmt="multipart",
        )
        assert response.status_code == status, response.json()
        assert key in response.json()
    assert attachment_listing() == before
    assert not OpsTask.objects.exists()
    assert APIClient().post(URL, {}, format="json").status_code in (401, 403)


def test_outside_the_deploy_window_needs_emergency(world, post):
    world.system.window_start, world.system.window_end = _closed_window()
    world.system.save()
    artifact = war()["sha256"]
    body = {
        "system": "BUDGET",
        "sub_type": "APP_DEPLOY",
        "title": "x",
        "targets": ["was-1"],
        "parameters": {"artifact_sha256": artifact},
    }
    refused = post(body)
    assert refused.status_code == 400 and "emergency" in refused.json()
    accepted = post({**body, "emergency": True})
    assert accepted.status_code == 201
    assert [s["role"] for s in accepted.json()["steps"]] == ["owner", "pm", "supervisor"]


def _closed_window():
    import datetime as dt

    from django.utils import timezone

    now = timezone.localtime()
    start = (now + dt.timedelta(hours=2)).time().replace(microsecond=0)
    end = (now + dt.timedelta(hours=3)).time().replace(microsecond=0)
    return start, end


def test_oversized_attachment_is_refused_and_leaves_nothing(world, post, settings):
    settings.GUARDIA_MAX_ATTACHMENT_MB = 1
    before = attachment_listing()
    big = named_file(b"x" * (1024 * 1024 + 1))
    response = post({"system": "BUDGET", "sub_type": "APP_DEPLOY", "title": "x", "artifact": big}, fmt="multipart")
    assert response.status_code == 400 and "GUARDIA_MAX_ATTACHMENT_MB" in response.json()["artifact"][0]
    assert attachment_listing() == before  # no half-written temporary file either
    with pytest.raises(AttachmentTooLarge):
        store_attachment(b"y" * (1024 * 1024 + 1), "big.war")


def test_one_store_for_governance_and_execution(db):
    class Stream(io.RawIOBase):
        """A file object that only supports read(): the store must stream, not slurp."""

        def __init__(self, total: int):
            self.left, self.reads = total, 0

        def read(self, size=-1):
            assert 0 < size <= 1 << 20, "read in bounded chunks"
            self.reads += 1
            n = min(size, self.left)
            self.left -= n
            return b"z" * n

    stream = Stream(3 * (1 << 20) + 5)
    stored = store_attachment(stream, "../../etc/passwd")
    assert stream.reads >= 4 and stored["size"] == 3 * (1 << 20) + 5
    assert stored["name"] == "passwd" and Path(stored["path"]).parent == attachment_root()
    assert Path(stored["path"]) == Path(settings.MEDIA_ROOT) / "artifacts" / stored["sha256"]
    again = store_artifact(b"z" * (3 * (1 << 20) + 5), "app.war")
    assert again["sha256"] == stored["sha256"] and again["path"] == stored["path"]


def test_submission_is_in_the_openapi_schema(world):
    response = client_for(world.admin).get("/api/v1/schema/", {"format": "json"})
    assert response.status_code == 200
    operation = response.json()["paths"]["/api/v1/tasks/"]["post"]
    assert {"multipart/form-data", "application/json"} <= set(operation["requestBody"]["content"])
    assert "201" in operation["responses"]
