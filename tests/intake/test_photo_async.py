"""OCR off the request path: the photo is checked and stored by the request, read by the
worker's task (real Tesseract), and the sender polls for the text and the suggestion. Bad
photos are refused at once with nothing stored; a reading is its sender's alone."""

from __future__ import annotations

import base64

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django_q.models import OrmQ

from audit.models import AuditEntry
from intake import photos
from intake.models import PhotoReading
from intake.tasks import read_photo
from tests.intake.test_api import client_for, post
from tests.intake.test_ocr import FONTS, screen

PHOTO = "/api/v1/sr/photo"

pytestmark = pytest.mark.skipif(not (FONTS / "NanumGothic.ttf").exists(), reason="fonts-nanum is not installed")


def stored() -> list[str]:
    return sorted(p.name for p in photos.photo_dir().glob("*")) if photos.photo_dir().exists() else []


def test_a_photo_is_queued_read_by_the_worker_and_polled(world, django_capture_on_commit_callbacks):
    raw = screen(["예산시스템 was-2 서버 오류", "java.lang.OutOfMemoryError: Java heap space"])
    client = client_for(world.requester)
    with django_capture_on_commit_callbacks(execute=True):
        response = post(client, PHOTO, {"media_data": base64.b64encode(raw).decode()})
    assert response.status_code == 202, response.content
    body = response.json()
    assert body["status"] == "PENDING" and body["url"] == f"{PHOTO}/{body['photo_id']}"
    # Stored for the worker and queued after commit; nothing was read in the request.
    assert stored() == [f"{body['photo_id']}.img"]
    assert [q.name() for q in OrmQ.objects.all()] == [f"ocr-{body['photo_id']}"]
    assert client.get(body["url"]).json() == {"photo_id": body["photo_id"], "status": "PENDING"}
    assert AuditEntry.objects.filter(action="intake.photo").count() == 1
    # The worker's task (what qcluster runs for that queue entry).
    assert read_photo(body["photo_id"]) == "DONE"
    answer = client.get(body["url"]).json()
    assert answer["status"] == "DONE" and "OutOfMemoryError" in answer["ocr"]["text"]
    assert answer["suggestion"]["system"] == "BUDGET" and answer["suggestion"]["servers"] == ["was-2"]
    assert stored() == []  # the image is gone once read
    # Someone else cannot see it.
    assert client_for(world.owner).get(body["url"]).status_code == 404


def test_a_multipart_photo_is_accepted_and_bad_ones_refused_with_nothing_stored(world, settings):
    client = client_for(world.requester)
    upload = SimpleUploadedFile("screen.jpg", screen(["예산시스템 was-1"], fmt="JPEG"), content_type="image/jpeg")
    assert client.post(PHOTO, {"photo": upload}, format="multipart").status_code == 202
    PhotoReading.objects.all().delete()
    for f in photos.photo_dir().glob("*"):
        f.unlink()
    settings.INTAKE_MAX_PHOTO_MB = 1
    cases = [
        (post(client, PHOTO, {"media_data": base64.b64encode(b"%PDF-1.4 a pdf").decode()}), 400, "media_data"),
        (post(client, PHOTO, {"media_data": "not base64 !!"}), 400, "media_data"),
        (post(client, PHOTO, {}), 400, "media_data"),
        (post(client, PHOTO, {"media_data": base64.b64encode(b"\x89PNG" + b"0" * 2_000_000).decode()}), 413, "body"),
        (client.post(PHOTO, {"other": "x"}, format="multipart"), 400, "photo"),
    ]
    for response, status, field in cases:
        assert response.status_code == status, response.content
        assert field in response.json()
    assert PhotoReading.objects.count() == 0 and stored() == []


def test_a_photo_the_worker_cannot_read_ends_failed_with_the_reason(world, django_capture_on_commit_callbacks):
    client = client_for(world.requester)
    raw = screen(["예산시스템 was-1"])
    body = post(client, PHOTO, {"media_data": base64.b64encode(raw).decode()}).json()
    photo = PhotoReading.objects.get(pk=body["photo_id"])
    (photos.photo_dir() / f"{photo.id}.img").write_bytes(b"damaged on disk")
    assert read_photo(body["photo_id"]) == "FAILED"
    answer = client.get(body["url"]).json()
    assert answer["status"] == "FAILED" and answer["error"].startswith("사진을 읽지 못했습니다")
    assert stored() == []


def test_roles_that_may_not_file_cannot_store_photos(world):
    raw = screen(["예산시스템 was-1"])
    response = post(client_for(world.auditor), PHOTO, {"media_data": base64.b64encode(raw).decode()})
    assert response.status_code == 403 and PhotoReading.objects.count() == 0 and stored() == []
