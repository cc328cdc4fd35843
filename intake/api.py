"""Intake REST API: ``POST /api/v1/sr/intake`` (also ``/sr/intake``, the seed's path) files a
request written in words; ``POST /api/v1/sr/parse`` previews what would be filed.

Bodies are JSON (``application/json``) or, to carry files, ``multipart/form-data``; any
other media type is 415. The body is read here, not by the framework, so an oversize body
is a 413 before it is parsed, and a photo larger than the form limit still arrives whole.

Answers:
- 201 ``{task_id, status, parsed, plan, draft_id}``: filed;
- 202 ``{draft_id, status: "NEEDS_CLARIFICATION", parsed, clarification}``: a question;
  answer it by posting again with ``draft_id`` and the missing field (``task_sub_type``,
  ``system``, ``targets``, ``params``) or more text in ``raw_request``;
- 400 naming each field; 401; 403 a system outside the caller's scope; 404 an unknown
  draft; 413; 415; 422 ``{refused: true, detail, reason, pattern}``: a destructive request.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json

from django.conf import settings
from django.urls import path
from drf_spectacular.utils import OpenApiResponse, extend_schema, inline_serializer
from rest_framework import serializers
from rest_framework.exceptions import UnsupportedMediaType
from rest_framework.parsers import MultiPartParser
from rest_framework.response import Response
from rest_framework.views import APIView

from governance import plans
from governance.errors import Forbidden, Invalid
from governance.models import Category, SubType

from . import ocr, photos, speech
from .parser import MAX_TEXT
from .services import UPLOAD_FIELDS, IntakeInput, Outcome, Refused, intake, preview


def _mb(name: str, default: int) -> int:
    return int(getattr(settings, name, default)) * 1024 * 1024


class IntakeSerializer(serializers.Serializer):
    raw_request = serializers.CharField(required=False, allow_blank=True, max_length=MAX_TEXT, trim_whitespace=True)
    task_category = serializers.ChoiceField(choices=Category.choices, required=False, allow_blank=True)
    task_sub_type = serializers.ChoiceField(choices=SubType.choices, required=False, allow_blank=True)
    system = serializers.RegexField(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$", required=False, allow_blank=True)
    targets = serializers.ListField(
        child=serializers.RegexField(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$"), required=False, max_length=500
    )
    params = serializers.DictField(required=False)
    media_data = serializers.CharField(required=False, allow_blank=False, trim_whitespace=True)
    attachments = serializers.DictField(
        required=False, help_text="{artifact|cert_file|key_file|chain_file: {name, content (base64), sha256}}"
    )
    emergency = serializers.BooleanField(required=False, default=False)
    draft_id = serializers.UUIDField(required=False)

    def validate(self, attrs):
        if not (
            attrs.get("raw_request")
            or attrs.get("media_data")
            or attrs.get("draft_id")
            or (attrs.get("task_sub_type") and (attrs.get("system") or attrs.get("targets")))
        ):
            raise serializers.ValidationError({"raw_request": ["요청 내용을 입력하세요 (raw_request)."]})
        return attrs


def _json_body(request) -> dict:
    limit = _mb("INTAKE_MAX_BODY_MB", 16)
    django_request = request._request
    if hasattr(django_request, "_body"):  # something upstream already read it
        raw = django_request._body
    else:  # the stream, not .body: DATA_UPLOAD_MAX_MEMORY_SIZE (2.5 MB) is meant for forms, not photos
        raw = django_request.read(limit + 1)
    if len(raw) > limit:
        raise _TooLarge(limit)
    if not raw.strip():
        raise Invalid("the body is empty: send a JSON object", field="body")
    try:
        data = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise Invalid(f"the body is not valid JSON ({exc})", field="body") from exc
    if not isinstance(data, dict):
        raise Invalid("the body must be a JSON object", field="body")
    return data


def _multipart_body(request) -> tuple[dict, dict]:
    data: dict = {}
    for key in request.data:
        if key in UPLOAD_FIELDS or key == "audio":
            continue
        values = request.data.getlist(key)
        data[key] = values if key == "targets" else values[-1]
    for key in ("params", "attachments"):
        if isinstance(data.get(key), str):
            try:
                data[key] = json.loads(data[key])
            except json.JSONDecodeError as exc:
                raise Invalid(f"{key} must be a JSON object", field=key) from exc
    if isinstance(data.get("targets"), list) and len(data["targets"]) == 1 and data["targets"][0].startswith("["):
        try:
            data["targets"] = json.loads(data["targets"][0])
        except json.JSONDecodeError as exc:
            raise Invalid("targets must be a list of server ids", field="targets") from exc
    uploads = {key: request.FILES[key] for key in UPLOAD_FIELDS if key in request.FILES}
    return data, uploads


class _TooLarge(Exception):
    def __init__(self, limit: int):
        self.limit = limit


def _attachments(value: dict) -> dict:
    """JSON attachments: each {name, content (base64), sha256}; the hash the client computed
    must match the bytes that arrived."""
    uploads = {}
    for key, item in value.items():
        if key not in UPLOAD_FIELDS:
            raise Invalid(f"unknown attachment {key!r}; use one of {', '.join(UPLOAD_FIELDS)}", field="attachments")
        if not isinstance(item, dict) or not isinstance(item.get("content"), str):
            raise Invalid("each attachment is {name, content (base64), sha256}", field=f"attachments.{key}")
        try:
            raw = base64.b64decode(item["content"], validate=True)
        except (binascii.Error, ValueError) as exc:
            raise Invalid("content is not valid base64", field=f"attachments.{key}") from exc
        claimed = str(item.get("sha256") or "").lower()
        if claimed and hashlib.sha256(raw).hexdigest() != claimed:
            raise Invalid(
                "the SHA-256 of the received file differs from the one sent: upload it again",
                field=f"attachments.{key}.sha256",
            )
        from django.core.files.uploadedfile import SimpleUploadedFile

        uploads[key] = SimpleUploadedFile(str(item.get("name") or key)[:200], raw)
    return uploads


def _input(request) -> IntakeInput:
    content_type = (request.content_type or "").split(";")[0].strip().lower()
    try:
        length = int(request.META.get("CONTENT_LENGTH") or 0)
    except ValueError:
        length = 0
    uploads: dict = {}
    if content_type == "application/json":
        if length > _mb("INTAKE_MAX_BODY_MB", 16):
            raise _TooLarge(_mb("INTAKE_MAX_BODY_MB", 16))
        body = _json_body(request)
    elif content_type == "multipart/form-data":
        if length > _mb("GUARDIA_MAX_ATTACHMENT_MB", 512) + _mb("INTAKE_MAX_BODY_MB", 16):
            raise _TooLarge(_mb("GUARDIA_MAX_ATTACHMENT_MB", 512))
        body, uploads = _multipart_body(request)
    else:
        raise UnsupportedMediaType(content_type or "(none)")
    transcript = ""
    if content_type == "multipart/form-data" and "audio" in request.FILES:
        # A voice memo: its transcript is read like typed text, after what was typed.
        transcript = speech.transcribe_upload(request.FILES["audio"])
        body["raw_request"] = "\n".join(
            part for part in (str(body.get("raw_request") or "").strip(), transcript) if part
        )
    form = IntakeSerializer(data=body)
    form.is_valid(raise_exception=True)
    data = form.validated_data
    if data.get("attachments"):
        uploads.update(_attachments(data["attachments"]))
    # A client-computed SHA-256 sent beside a multipart file is checked the same way.
    for key in list(uploads):
        claimed = str(body.get(f"{key}_sha256") or "").lower()
        if claimed and content_type == "multipart/form-data":
            digest = hashlib.sha256()
            for chunk in uploads[key].chunks():
                digest.update(chunk)
            uploads[key].seek(0)
            if digest.hexdigest() != claimed:
                raise Invalid(
                    "the SHA-256 of the received file differs from the one sent: upload it again", field=f"{key}_sha256"
                )
    photo = None
    if data.get("media_data"):
        try:
            raw = ocr.decode_photo(data["media_data"], _mb("INTAKE_MAX_PHOTO_MB", 10))
            photo = ocr.read_photo(raw)
        except ocr.PhotoError as exc:
            if "larger than" in str(exc):
                raise _TooLarge(_mb("INTAKE_MAX_PHOTO_MB", 10)) from exc
            raise Invalid(str(exc), field="media_data") from exc
    channel = "API" if getattr(request, "auth", None) is not None else "PWA"
    return IntakeInput(
        raw_request=data.get("raw_request", ""),
        task_category=data.get("task_category", ""),
        task_sub_type=data.get("task_sub_type", ""),
        system=data.get("system", ""),
        targets=list(data.get("targets") or []),
        params=dict(data.get("params") or {}),
        uploads=uploads,
        emergency=data.get("emergency", False),
        draft_id=str(data.get("draft_id") or ""),
        channel=channel,
        ocr=photo,
        transcript=transcript,
    )


def _plan_summary(plan: dict | None, sha256: str) -> dict | None:
    if not plan:
        return None
    return {
        "sha256": sha256,
        "playbook": plan.get("playbook", ""),
        "playbook_version": plan.get("playbook_version", ""),
        "summary": plans.summary(plan, sha256),
        "plan": plan,
    }


def _body(outcome: Outcome, data: IntakeInput) -> dict:
    body: dict = {"parsed": outcome.parsed.as_dict()}
    body["clarification"] = body["parsed"].pop("clarification")
    body["parsed"].pop("refused", None)
    body["parsed"].pop("forbidden_system", None)
    if data.ocr is not None:
        body["ocr"] = data.ocr
    if data.transcript:
        body["transcript"] = data.transcript
    return body


def _guarded(handler):
    def run(self, request, *args, **kwargs):
        try:
            return handler(self, request, *args, **kwargs)
        except _TooLarge as exc:
            return Response(
                {"detail": f"the request is larger than {exc.limit // (1024 * 1024)} MB", "body": ["too large"]},
                status=413,
            )
        except Refused as exc:
            return Response(exc.as_dict(), status=422)
        except speech.SpeechError as exc:
            return Response({"detail": str(exc), "audio": [str(exc)]}, status=exc.status)

    return run


class _Base(APIView):
    parser_classes = [MultiPartParser]  # JSON is read by _json_body, multipart by DRF


_REQUEST_SCHEMA = {"application/json": IntakeSerializer, "multipart/form-data": IntakeSerializer}


# The error answers of the two endpoints that read a request in words; a voice memo
# (multipart `audio`) goes to the configured speech-to-text service first (502/503/504).
_TEXT_ERRORS = {
    400: OpenApiResponse(description="field errors"),
    403: OpenApiResponse(description="a system outside your scope"),
    413: OpenApiResponse(description="body too large"),
    415: OpenApiResponse(description="not JSON or multipart"),
    422: OpenApiResponse(description="destructive request refused"),
    502: OpenApiResponse(description="the speech-to-text service failed"),
    503: OpenApiResponse(description="voice memos are not enabled"),
    504: OpenApiResponse(description="the speech-to-text service did not answer in time"),
}


def _reads_intake_body(summary: str, responses: dict):
    """A POST handler that reads an intake body (JSON or multipart): its OpenAPI schema, and
    the answers _guarded gives for a body too large, a refusal or a speech-service failure."""

    def decorate(handler):
        return extend_schema(request=_REQUEST_SCHEMA, summary=summary, responses=responses)(_guarded(handler))

    return decorate


class SrIntakeView(_Base):
    @_reads_intake_body(
        "File a request written in words (seed POST /sr/intake)",
        {
            201: OpenApiResponse(description="filed: {task_id, status, parsed, plan, draft_id}"),
            202: OpenApiResponse(description="a question: {draft_id, status, parsed, clarification}"),
            **_TEXT_ERRORS,
        },
    )
    def post(self, request):
        data = _input(request)
        outcome = intake(request.user, data)
        body = _body(outcome, data)
        body["draft_id"] = str(outcome.request.draft_id) if outcome.request else None
        if outcome.task is None:
            body["status"] = "NEEDS_CLARIFICATION"
            body["task_id"] = None
            return Response(body, status=202)
        task = outcome.task
        body.update(
            {
                "task_id": task.task_id,
                "status": task.status,
                "risk": task.risk,
                "plan": _plan_summary(task.plan, task.plan_sha256),
            }
        )
        return Response(body, status=201)


class SrParseView(_Base):
    @_reads_intake_body(
        "Preview: parse, CMDB mapping and plan, nothing filed",
        {
            200: inline_serializer(
                "SrParse",
                {
                    "parsed": serializers.DictField(),
                    "clarification": serializers.DictField(allow_null=True),
                    "plan": serializers.DictField(allow_null=True),
                },
            ),
            **_TEXT_ERRORS,
        },
    )
    def post(self, request):
        data = _input(request)
        outcome = preview(request.user, data)
        body = _body(outcome, data)
        body["plan"] = _plan_summary(outcome.plan, plans.plan_sha256(outcome.plan)) if outcome.plan else None
        body["hints"] = [hint.as_dict() for hint in outcome.hints]
        return Response(body, status=200)


def _photo_bytes(request) -> bytes:
    """A photo as JSON ``media_data`` (base64) or a multipart ``photo`` file, capped in size."""
    limit = _mb("INTAKE_MAX_PHOTO_MB", 10)
    content_type = (request.content_type or "").split(";")[0].strip().lower()
    if content_type == "multipart/form-data":
        upload = request.FILES.get("photo")
        if upload is None:
            raise Invalid("send the photo as the multipart field 'photo'", field="photo")
        if upload.size > limit:
            raise _TooLarge(limit)
        return upload.read()
    if content_type != "application/json":
        raise UnsupportedMediaType(content_type or "(none)")
    media = _json_body(request).get("media_data")
    if not isinstance(media, str):
        raise Invalid("media_data (a base64 image) is required", field="media_data")
    try:
        return ocr.decode_photo(media, limit)
    except ocr.PhotoError as exc:
        if "larger than" in str(exc):
            raise _TooLarge(limit) from exc
        raise Invalid(str(exc), field="media_data") from exc


class SrPhotoView(_Base):
    @_reads_intake_body(
        "Store a photo of an error screen; OCR runs in the worker (poll the answer's url)",
        {
            202: OpenApiResponse(description="{photo_id, status: PENDING, url}"),
            400: OpenApiResponse(description="not an image, or no photo sent (media_data / photo)"),
            403: OpenApiResponse(description="you may not file requests"),
            413: OpenApiResponse(description="photo too large"),
            415: OpenApiResponse(description="not JSON or multipart"),
        },
    )
    def post(self, request):
        if not request.user.has_perm("governance.submit_task"):
            raise Forbidden("you may not submit requests")
        photo = photos.submit(request.user, _photo_bytes(request))
        return Response({**photos.as_dict(photo), "url": f"/api/v1/sr/photo/{photo.id}"}, status=202)


class SrPhotoDetailView(APIView):
    @extend_schema(
        summary="A stored photo's reading: PENDING, DONE with {ocr, suggestion}, or FAILED with error",
        responses={
            200: inline_serializer(
                "SrPhoto",
                {
                    "photo_id": serializers.UUIDField(),
                    "status": serializers.ChoiceField(choices=["PENDING", "DONE", "FAILED"]),
                    "ocr": serializers.DictField(required=False),
                    "suggestion": serializers.DictField(required=False, allow_null=True),
                    "error": serializers.CharField(required=False),
                },
            ),
            404: OpenApiResponse(description="no such photo of yours"),
        },
    )
    def get(self, request, photo_id):
        return Response(photos.as_dict(photos.get(request.user, str(photo_id))))


urlpatterns = [
    path("sr/intake", SrIntakeView.as_view(), name="sr-intake"),
    path("sr/parse", SrParseView.as_view(), name="sr-parse"),
    path("sr/photo", SrPhotoView.as_view(), name="sr-photo"),
    path("sr/photo/<uuid:photo_id>", SrPhotoDetailView.as_view(), name="sr-photo-detail"),
]

# The seed's path, mounted at the site root by guardia/urls.py.
seed_urlpatterns = [path("sr/intake", SrIntakeView.as_view(), name="sr-intake-seed")]
