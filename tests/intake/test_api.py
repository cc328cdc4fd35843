"""The intake API through its public interface: a token, JSON bodies, and the rows it leaves."""

from __future__ import annotations

import base64
import io
import json

import pytest
from PIL import Image
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from audit.models import AuditEntry
from governance.models import Notification, OpsTask
from intake.models import IntakeRequest

URL = "/api/v1/sr/intake"
PARSE = "/api/v1/sr/parse"


def client_for(user) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {Token.objects.get_or_create(user=user)[0].key}")
    return client


def post(client, url, body, **extra):
    return client.post(url, json.dumps(body), content_type="application/json", **extra)


def counts():
    return OpsTask.objects.count(), IntakeRequest.objects.count()


def test_a_request_in_words_is_filed_with_its_plan(world):
    response = post(client_for(world.requester), URL, {"raw_request": "기재부 예산시스템 WAS2번 재시작 부탁드립니다"})
    assert response.status_code == 201, response.content
    body = response.json()
    task = OpsTask.objects.get(task_id=body["task_id"])
    assert task.sub_type == "SERVICE_RESTART" and task.system == world.system
    assert [s.server_id for s in task.targets.all()] == ["was-2"]
    assert task.channel == "API" and task.raw_request.startswith("기재부 예산시스템")
    assert body["parsed"]["servers"] == ["was-2"] and body["clarification"] is None
    assert body["plan"]["sha256"] == task.plan_sha256 and body["plan"]["playbook_version"] == task.playbook_version
    record = IntakeRequest.objects.get(task=task)
    assert record.status == IntakeRequest.Status.FILED and record.requester == world.requester
    assert AuditEntry.objects.filter(action="intake.filed", task=task.task_id).exists()


def test_the_seed_path_files_too(world):
    response = post(client_for(world.requester), "/sr/intake", {"raw_request": "예산시스템 1번 서버 재시작"})
    assert response.status_code == 201, response.content


def test_an_ambiguous_request_is_asked_back_and_answered_by_a_follow_up(world):
    client = client_for(world.requester)
    response = post(client, URL, {"raw_request": "예산시스템 좀 봐주세요"})
    assert response.status_code == 202, response.content
    body = response.json()
    assert body["task_id"] is None and body["clarification"]["field"] == "sub_type"
    assert OpsTask.objects.count() == 0
    draft = IntakeRequest.objects.get(draft_id=body["draft_id"])
    assert draft.status == IntakeRequest.Status.NEEDS_CLARIFICATION
    answer = post(client, URL, {"draft_id": body["draft_id"], "task_sub_type": "MEMORY_CHECK"})
    assert answer.status_code == 201, answer.content
    draft.refresh_from_db()
    assert draft.status == IntakeRequest.Status.FILED and draft.task.sub_type == "MEMORY_CHECK"
    # The answered draft cannot be answered twice, nor by someone else.
    again = post(client, URL, {"draft_id": body["draft_id"], "task_sub_type": "MEMORY_CHECK"})
    assert again.status_code == 404
    assert OpsTask.objects.count() == 1


def test_another_users_draft_is_not_found(world):
    body = post(client_for(world.requester), URL, {"raw_request": "예산시스템 좀 봐주세요"}).json()
    response = post(client_for(world.owner), URL, {"draft_id": body["draft_id"], "task_sub_type": "MEMORY_CHECK"})
    assert response.status_code == 404 and response.json()["draft_id"]
    assert OpsTask.objects.count() == 0


def test_no_target_asks_which_system(world):
    response = post(client_for(world.requester), URL, {"raw_request": "재시작 해주세요"})
    assert response.status_code == 202
    assert response.json()["clarification"]["field"] == "system"


def test_a_system_outside_the_callers_scope_is_403_and_nothing_is_stored(world):
    before = counts()
    response = post(client_for(world.requester), URL, {"raw_request": "교육부 나이스 WAS1번 재시작"})
    assert response.status_code == 403, response.content
    assert "NEIS" in json.dumps(response.json())
    assert counts() == before


def test_a_destructive_request_is_refused_audited_and_the_owner_and_pm_alerted(world):
    response = post(
        client_for(world.requester), URL, {"raw_request": "기재부 예산시스템 WAS1번에서 rm -rf /opt/was/app 실행해줘"}
    )
    assert response.status_code == 422, response.content
    body = response.json()
    assert body["refused"] is True and "rm -rf" in body["pattern"] and "거부" not in body["detail"][:0]
    assert OpsTask.objects.count() == 0  # no approver ever sees it
    entry = AuditEntry.objects.get(action="intake.refused")
    assert entry.target == "BUDGET" and entry.payload["reason"].startswith("재귀 삭제")
    alerted = set(Notification.objects.filter(kind="alert").values_list("user__username", flat=True))
    assert {world.owner.username, world.pm.username} <= alerted
    assert IntakeRequest.objects.get().status == IntakeRequest.Status.REFUSED


def test_a_destructive_parameter_is_refused_too(world):
    response = post(
        client_for(world.requester),
        URL,
        {
            "raw_request": "예산시스템 WAS1 크론 등록",
            "params": {"entries": [{"schedule": "0 3 * * *", "command": "mkfs.ext4 /dev/sda1"}]},
        },
    )
    assert response.status_code == 422, response.content
    assert response.json()["field"].startswith("params")
    assert OpsTask.objects.count() == 0


@pytest.mark.parametrize(
    "body, field",
    [
        ({}, "raw_request"),
        ({"raw_request": "x" * 5000}, "raw_request"),
        ({"raw_request": "재시작", "task_sub_type": "FORMAT_DISK"}, "task_sub_type"),
        ({"raw_request": "재시작", "targets": ["../etc"]}, "targets"),
        ({"raw_request": "재시작", "params": "not an object"}, "params"),
        ({"raw_request": "재시작", "system": "NO-SUCH-SYSTEM"}, "system"),
    ],
)
def test_bad_fields_are_400_naming_the_field(world, body, field):
    before = counts()
    response = post(client_for(world.requester), URL, body)
    assert response.status_code == 400, response.content
    assert field in response.json()
    assert counts() == before


def test_broken_json_empty_body_and_wrong_media_type(world):
    client = client_for(world.requester)
    broken = client.post(URL, '{"raw_request": "재시작', content_type="application/json")
    assert broken.status_code == 400 and "body" in broken.json()
    empty = client.post(URL, "", content_type="application/json")
    assert empty.status_code == 400 and "body" in empty.json()
    text = client.post(URL, "raw_request=재시작", content_type="text/plain")
    assert text.status_code == 415
    assert counts() == (0, 0)


def test_an_oversize_body_is_413(world, settings):
    settings.INTAKE_MAX_BODY_MB = 1
    response = post(client_for(world.requester), URL, {"raw_request": "재시작", "params": {"pad": "x" * (1024 * 1024)}})
    assert response.status_code == 413
    assert counts() == (0, 0)


def test_no_credentials_is_401(world):
    response = post(APIClient(), URL, {"raw_request": "예산시스템 WAS1 재시작"})
    assert response.status_code == 401
    assert counts() == (0, 0)


def test_a_refused_parameter_names_the_field_and_stores_nothing(world):
    before = counts()
    response = post(
        client_for(world.requester), URL, {"raw_request": "예산시스템 WAS1 로그 정리", "params": {"directory": "/etc"}}
    )
    assert response.status_code == 400, response.content
    assert any(key.startswith("parameters") or key.startswith("params") for key in response.json())
    assert counts() == before


def test_deploy_without_an_artifact_asks_for_the_file(world):
    response = post(client_for(world.requester), URL, {"raw_request": "예산시스템 WAS1번 배포해주세요"})
    assert response.status_code == 202, response.content
    assert response.json()["clarification"]["field"] == "params"
    assert OpsTask.objects.count() == 0


def test_preview_parses_and_renders_the_plan_without_filing(world):
    response = post(client_for(world.requester), PARSE, {"raw_request": "예산시스템 WAS1, 2번 오늘 밤 10시 로그 정리"})
    assert response.status_code == 200, response.content
    body = response.json()
    assert body["parsed"]["sub_type"] == "LOG_CLEANUP" and body["parsed"]["servers"] == ["was-1", "was-2"]
    assert body["parsed"]["schedule"].endswith("22:00:00+09:00")
    assert len(body["plan"]["sha256"]) == 64 and body["plan"]["playbook"] == "LOG_CLEANUP"
    assert counts() == (0, 0)


def test_a_photo_of_an_error_screen_suggests_the_server(world):
    from tests.intake.test_ocr import screen

    photo = base64.b64encode(screen(["예산시스템 was-2 서버 오류", "java.lang.OutOfMemoryError"])).decode()
    response = post(client_for(world.requester), PARSE, {"media_data": photo})
    assert response.status_code == 200, response.content
    body = response.json()
    # Tesseract may misread a letter ("OQutOfMemoryError"): the match is never exact.
    assert any(code.endswith("MemoryError") for code in body["ocr"]["error_codes"])
    assert body["parsed"]["system"] == "BUDGET" and body["parsed"]["servers"] == ["was-2"]
    assert body["parsed"]["sub_type"] == "MEMORY_CHECK"
    assert counts() == (0, 0)


def test_bad_photos_and_oversize_text_are_refused_and_nothing_is_stored(world, settings):
    client = client_for(world.requester)
    not_image = base64.b64encode(b"PK\x03\x04 a zip file, not a photo" * 10).decode()
    response = post(client, URL, {"raw_request": "예산시스템 WAS1 재시작", "media_data": not_image})
    assert response.status_code == 400 and "media_data" in response.json()
    response = post(client, URL, {"raw_request": "가" * (1024 * 1024)})
    assert response.status_code == 400 and "raw_request" in response.json()
    big = io.BytesIO()
    Image.new("RGB", (2600, 2600), (255, 255, 255)).save(big, "BMP")  # about 20 MB
    photo = base64.b64encode(big.getvalue()).decode()
    assert post(client, URL, {"raw_request": "예산시스템 WAS1 재시작", "media_data": photo}).status_code == 413
    settings.INTAKE_MAX_BODY_MB = 64  # a body limit above the photo's own: the photo limit answers
    assert post(client, URL, {"raw_request": "예산시스템 WAS1 재시작", "media_data": photo}).status_code == 413
    assert counts() == (0, 0)
    assert not AuditEntry.objects.filter(action__startswith="intake.").exists()


def test_an_attachment_whose_hash_differs_is_refused_and_a_matching_one_files_the_deploy(world):
    import hashlib

    from tests.factories import war_bytes

    client = client_for(world.requester)
    war = war_bytes("3.1.0")
    wrong = {"artifact": {"name": "app.war", "content": base64.b64encode(war).decode(), "sha256": "0" * 64}}
    response = post(client, URL, {"raw_request": "예산시스템 WAS1 배포", "attachments": wrong})
    assert response.status_code == 400 and "attachments.artifact.sha256" in response.json()
    assert counts() == (0, 0)
    right = {
        "artifact": {
            "name": "app.war",
            "content": base64.b64encode(war).decode(),
            "sha256": hashlib.sha256(war).hexdigest(),
        }
    }
    response = post(client, URL, {"raw_request": "예산시스템 WAS1 배포 부탁드립니다", "attachments": right})
    assert response.status_code == 201, response.content
    task = OpsTask.objects.get(task_id=response.json()["task_id"])
    assert task.sub_type == "APP_DEPLOY" and task.parameters["artifact_sha256"] == hashlib.sha256(war).hexdigest()
