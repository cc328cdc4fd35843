"""Photos of error screens, read off the request path: the request checks the photo (size,
image type, pixels) and stores it; the worker (django-q2) runs OCR and the parser; the
client polls for the result (``GET /api/v1/sr/photo/<id>``).

OCR takes one to two seconds per phone photo on two cores: inside the web request it would
hold a Daphne worker that long and queue everyone behind it. The synchronous ``media_data``
field of ``/sr/intake`` and ``/sr/parse`` stays for API clients that want one call.

The image lives under ``DATA_DIR/intake-photos/<id>`` only until it is read; what stays is
the text, the error codes and the suggestion, visible to the person who sent the photo.
"""

from __future__ import annotations

import logging
from functools import partial
from pathlib import Path

from django.conf import settings
from django.db import transaction
from django.utils import timezone
from django_q.tasks import async_task

import audit
from governance.errors import Forbidden, Invalid, NotFound

from . import ocr
from .catalog import Catalog
from .models import PhotoReading
from .parser import parse

log = logging.getLogger(__name__)


def photo_dir() -> Path:
    return Path(settings.DATA_DIR) / "intake-photos"


def _path(photo: PhotoReading) -> Path:
    return photo_dir() / f"{photo.id}.img"  # named by its UUID: nothing of the client's reaches the path


def submit(user, raw: bytes) -> PhotoReading:
    """Check and store a photo, queue its reading after commit."""
    if not user.has_perm("governance.submit_task"):
        raise Forbidden("요청을 제출할 권한이 없습니다")
    try:
        ocr.open_image(raw)  # a non-image or a pixel bomb is refused now, not in the worker
    except ocr.PhotoError as exc:
        raise Invalid(str(exc), field="media_data") from exc
    photo_dir().mkdir(parents=True, exist_ok=True)
    with transaction.atomic():
        photo = PhotoReading.objects.create(requester=user, size=len(raw))
        _path(photo).write_bytes(raw)
        audit.record(user, "intake.photo", payload={"photo_id": str(photo.id), "size": len(raw)})
        transaction.on_commit(
            partial(async_task, "intake.tasks.read_photo", str(photo.id), task_name=f"ocr-{photo.id}")
        )
    return photo


def read(photo_id: str) -> PhotoReading | None:
    """The worker's part: OCR, then the parser's suggestion from the sender's CMDB slice."""
    photo = PhotoReading.objects.select_related("requester").filter(pk=photo_id).first()
    if photo is None or photo.status != PhotoReading.Status.PENDING:
        return photo
    path = _path(photo)
    try:
        reading = ocr.read_photo(path.read_bytes())
        parsed = parse(reading["text"], Catalog.for_user(photo.requester), now=timezone.localtime())
        reading["suggestion"] = {
            "sub_type": parsed.sub_type,
            "system": parsed.system if not parsed.forbidden_system else None,
            "servers": parsed.servers if not parsed.forbidden_system else [],
        }
        photo.result, photo.status = reading, PhotoReading.Status.DONE
    except (ocr.PhotoError, OSError) as exc:
        photo.status, photo.error = PhotoReading.Status.FAILED, f"사진을 읽지 못했습니다: {exc}"[:300]
    except Exception:  # Tesseract crashed: say so instead of leaving the client polling
        log.exception("OCR of photo %s failed", photo_id)
        photo.status, photo.error = PhotoReading.Status.FAILED, "사진을 읽지 못했습니다: 판독 중 오류"
    photo.finished_at = timezone.now()
    photo.save(update_fields=["status", "result", "error", "finished_at"])
    path.unlink(missing_ok=True)
    return photo


def get(user, photo_id: str) -> PhotoReading:
    photo = PhotoReading.objects.filter(pk=photo_id, requester=user).first() if user.is_authenticated else None
    if photo is None:
        raise NotFound("사진을 찾을 수 없습니다", field="photo_id")
    return photo


def as_dict(photo: PhotoReading) -> dict:
    body: dict = {"photo_id": str(photo.id), "status": photo.status}
    if photo.status == PhotoReading.Status.DONE:
        body["ocr"] = {"text": photo.result.get("text", ""), "error_codes": photo.result.get("error_codes", [])}
        body["suggestion"] = photo.result.get("suggestion")
    if photo.error:
        body["error"] = photo.error
    return body
