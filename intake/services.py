"""Intake: a request in words (and optionally a photo) becomes a filed OpsTask, a question
asked back, or a refusal.

Pipeline: receive -> screen (destructive orders refused, audited, owner and PM alerted) ->
permission filter (the catalog marks the caller's systems) -> intent -> CMDB mapping ->
validation against the playbook's typed parameters -> filing through
governance.submission.file_request, which renders the plan and applies every rule. The
SR request row and the task are written in one transaction: a refusal at any stage leaves
nothing behind but the refusal's own record.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field

from django.conf import settings
from django.contrib.auth import get_user_model
from django.db import transaction
from django.utils import timezone
from django.utils.module_loading import import_string

import audit
from cmdb.models import Server, System, SystemOwner
from governance import plans
from governance.attachments import UPLOAD_PARAMETERS
from governance.errors import Forbidden, Invalid, NotFound
from governance.models import OpsTask
from governance.notify import Message, notify
from governance.submission import file_request
from governance.transitions import record_task

from . import hints, llm, screen
from .catalog import Catalog
from .models import IntakeRequest
from .parser import SUBTYPE_LABELS, Clarification, Parsed

UPLOAD_FIELDS = tuple(UPLOAD_PARAMETERS)  # artifact, cert_file, key_file, chain_file


@dataclass
class IntakeInput:
    raw_request: str
    task_category: str = ""
    task_sub_type: str = ""
    system: str = ""
    targets: list[str] = field(default_factory=list)
    params: dict = field(default_factory=dict)
    uploads: dict = field(default_factory=dict)  # field -> bytes or file
    emergency: bool = False
    draft_id: str = ""
    channel: str = "API"
    ocr: dict | None = None  # intake.ocr.read_photo's answer, when a photo came along
    transcript: str = ""  # a voice memo's text (already part of raw_request)


class Refused(Exception):
    """A destructive request: refused with an explanation (HTTP 422)."""

    status_code = 422

    def __init__(self, verdict: dict, request: IntakeRequest | None):
        self.verdict, self.request = verdict, request
        super().__init__(screen.REFUSAL_TEXT.format(**verdict))

    def as_dict(self) -> dict:
        return {
            "detail": str(self),
            "refused": True,
            "reason": self.verdict["reason"],
            "pattern": self.verdict["pattern"],
            "field": self.verdict.get("field", "raw_request"),
            "draft_id": str(self.request.draft_id) if self.request else None,
        }


@dataclass
class Outcome:
    parsed: Parsed
    request: IntakeRequest | None = None
    task: OpsTask | None = None
    plan: dict | None = None
    missing: dict = field(default_factory=dict)
    hints: list = field(default_factory=list)  # intake.hints.Hint: the same servers' recent history

    @property
    def clarification(self) -> Clarification | None:
        return self.parsed.clarification


def _local_now() -> dt.datetime:
    return timezone.localtime()


def _load_draft(user, draft_id: str) -> IntakeRequest:
    draft = (
        IntakeRequest.objects.for_user(user)
        .filter(draft_id=draft_id, status=IntakeRequest.Status.NEEDS_CLARIFICATION)
        .first()
    )
    if draft is None:
        raise NotFound(f"no open request {draft_id} awaiting your answer", field="draft_id")
    return draft


def _text_of(data: IntakeInput, draft: IntakeRequest | None) -> str:
    parts = [draft.raw_text] if draft else []
    if data.raw_request.strip():
        parts.append(data.raw_request.strip())
    if data.ocr and data.ocr.get("text"):
        parts.append(data.ocr["text"])
    return "\n".join(parts)


def read_request(user, data: IntakeInput, draft: IntakeRequest | None = None, catalog: Catalog | None = None) -> Parsed:
    """Parse with what the client chose (template, pickers, an earlier answer) taking precedence."""
    catalog = catalog or Catalog.for_user(user)
    if data.system and data.system not in catalog.systems:
        raise Invalid(f"unknown system {data.system!r}", field="system")
    sub_type = data.task_sub_type or (draft.parsed.get("sub_type") if draft and draft.parsed.get("sub_type") else "")
    system = data.system or (draft.parsed.get("system") if draft and draft.parsed.get("system") else "")
    parsed = llm.read(
        _text_of(data, draft),
        catalog,
        now=_local_now(),
        sub_type=sub_type or None,
        system=system or None,
        targets=data.targets or None,
    )
    if data.task_category and parsed.category and data.task_category != parsed.category and not data.task_sub_type:
        parsed.notes.append(f"task_category {data.task_category} differs from the parsed {parsed.category}")
    return parsed


def _screen(user, data: IntakeInput, parsed: Parsed, draft: IntakeRequest | None, *, preview: bool) -> None:
    """Refuse a destructive request: kept as REFUSED, audited, owner and PM alerted."""
    verdict = dict(parsed.refused) if parsed.refused else None
    if verdict is not None:
        verdict["field"] = "raw_request"
    else:
        found = screen.screen_values(data.params, "params")
        if found:
            verdict = {**found[1], "field": found[0]}
    if verdict is None:
        return
    system = System.objects.select_related("institution").filter(code=parsed.system).first() if parsed.system else None
    record = None
    if not preview:
        record = draft or IntakeRequest(requester=user, channel=data.channel)
        record.raw_text = _text_of(data, draft)[:20000]
        record.status = IntakeRequest.Status.REFUSED
        record.parsed = parsed.as_dict()
        record.system_code = system.code if system else ""
        record.clarification = {}
        record.save()
    audit.record(
        user,
        "intake.refused",
        target=system.code if system else None,
        payload={
            "reason": verdict["reason"],
            "pattern": verdict["pattern"][:200],
            "field": verdict["field"],
            "channel": data.channel,
            "preview": preview,
            "institution": system.institution.code if system else "",
            "draft_id": str(record.draft_id) if record else "",
        },
    )
    if not preview:
        _alert_refusal(user, system, verdict)
    raise Refused(verdict, record)


def _alert_refusal(user, system: System | None, verdict: dict) -> None:
    pms = get_user_model().objects.with_perm(
        "governance.validate_result", include_superusers=False, backend="django.contrib.auth.backends.ModelBackend"
    )
    people = {person.pk: person for person in pms.filter(is_active=True)}
    if system is not None:
        pm = system.institution.pm
        if pm is not None:
            people.setdefault(pm.pk, pm)
        ownership = SystemOwner.objects.select_related("owner").filter(system=system).first()
        if ownership is not None:
            people.setdefault(ownership.owner_id, ownership.owner)
    where = f"{system.name} ({system.code})" if system else "시스템 미확인"
    text = (
        f"[보안 경고] {user.get_username()}의 요청이 접수 단계에서 거부되었습니다: {where}, "
        f"{verdict['reason']} ({verdict['pattern'][:80]}). 승인 요청은 만들어지지 않았습니다."
    )
    for person in people.values():
        if person.pk != user.pk:
            notify(person, Message(text, kind="alert"))


def _validate_parameters(parsed: Parsed, params: dict, uploads: dict) -> tuple[dict, dict]:
    """The parameters the playbook will get (the sentence's, then the client's) and, for a
    required one that is still missing, the question to ask. Other errors are left to the
    filing, which names each field."""
    merged = {**parsed.parameters, **params}
    validator = getattr(settings, "PLAYBOOK_VALIDATOR", "")
    if not validator or not parsed.sub_type:
        return merged, {}
    probe = _with_upload_hashes(merged, uploads)
    try:
        import_string(validator)(parsed.sub_type, probe)
    except (ValueError, TypeError) as exc:
        errors = getattr(exc, "errors", None) or {}
        missing = {
            name: message for name, message in errors.items() if name not in probe or probe.get(name) in ("", None)
        }
        return merged, missing
    return merged, {}


def _with_upload_hashes(params: dict, uploads: dict) -> dict:
    """A copy of ``params`` in which each attached upload's hash parameter, when not given,
    holds a stand-in (zeros): the filing computes the real SHA-256 when it stores the file."""
    probe = dict(params)
    for field_name, parameter in UPLOAD_PARAMETERS.items():
        if field_name in uploads and parameter not in probe:
            probe[parameter] = "0" * 64
    return probe


_PARAMETER_QUESTIONS = {
    "artifact_sha256": "배포할 파일(WAR/JAR)을 첨부해 주세요.",
    "cert_sha256": "새 인증서 파일을 첨부해 주세요.",
    "key_sha256": "인증서의 개인 키 파일을 첨부해 주세요.",
    "command": "실행할 명령을 알려 주세요.",
    "script": "실행할 정리 스크립트 이름을 알려 주세요.",
}


def _ask_for_parameters(parsed: Parsed, missing: dict) -> None:
    names = sorted(missing)
    questions = [_PARAMETER_QUESTIONS.get(name, f"{name} 값을 알려 주세요.") for name in names]
    parsed.clarification = Clarification(
        "params", " ".join(questions), [{"value": name, "label": missing[name]} for name in names]
    )


def _title(parsed: Parsed, system: System) -> str:
    servers = "전체" if parsed.all_servers else ", ".join(parsed.servers[:5]) + ("…" if len(parsed.servers) > 5 else "")
    return f"{system.name} {servers} {SUBTYPE_LABELS.get(parsed.sub_type or '', parsed.sub_type)}"[:200]


def _window_start(parsed: Parsed) -> dt.datetime | None:
    """The requested window's start when it lies ahead ("오늘 밤 10시"); "지금 바로" is none."""
    if not parsed.schedule or parsed.immediate:
        return None
    start = dt.datetime.fromisoformat(parsed.schedule)
    if timezone.is_naive(start):
        start = timezone.make_aware(start)
    return start if start > timezone.now() else None


def _check_scope(user, parsed: Parsed) -> None:
    if parsed.forbidden_system:
        audit.record(
            user,
            "intake.forbidden",
            target=parsed.forbidden_system,
            payload={"reason": "system outside the caller's scope"},
        )
        raise Forbidden(f"you may not file requests for system {parsed.forbidden_system}", field="system")


def preview(user, data: IntakeInput) -> Outcome:
    """Parse, map and render the plan without filing anything (the confirmation screen)."""
    if not user.has_perm("governance.submit_task"):
        raise Forbidden("you may not submit requests")
    draft = _load_draft(user, data.draft_id) if data.draft_id else None
    parsed = read_request(user, data, draft)
    _screen(user, data, parsed, draft, preview=True)
    _check_scope(user, parsed)
    outcome = Outcome(parsed, hints=hints.for_request(user, parsed))
    if parsed.clarification is not None:
        return outcome
    params, missing = _validate_parameters(parsed, data.params, data.uploads)
    if missing:
        _ask_for_parameters(parsed, missing)
        return outcome
    system = System.objects.for_user(user).select_related("institution").get(code=parsed.system)
    servers = list(Server.objects.filter(system=system, server_id__in=parsed.servers))
    try:
        probe = _with_upload_hashes(params, data.uploads)
        validator = getattr(settings, "PLAYBOOK_VALIDATOR", "")
        if validator:
            probe = import_string(validator)(parsed.sub_type, probe)
        outcome.plan = plans.render_plan(parsed.sub_type or "", probe, system, servers, task_ref="PREVIEW")
    except (ValueError, TypeError) as exc:
        errors = getattr(exc, "errors", None)
        raise (
            Invalid.from_fields({f"params.{k}": str(v) for k, v in errors.items()})
            if errors
            else Invalid(str(exc), field="params")
        ) from exc
    return outcome


def intake(user, data: IntakeInput) -> Outcome:
    """File the request, or keep it as a draft with a question, or refuse it."""
    draft = _load_draft(user, data.draft_id) if data.draft_id else None
    parsed = read_request(user, data, draft)
    _screen(user, data, parsed, draft, preview=False)
    _check_scope(user, parsed)
    outcome = Outcome(parsed)
    params: dict = dict(data.params)
    if parsed.clarification is None:
        params, missing = _validate_parameters(parsed, data.params, data.uploads)
        if missing:
            _ask_for_parameters(parsed, missing)
    text = _text_of(data, draft)[:20000]
    if parsed.clarification is not None:
        record = draft or IntakeRequest(requester=user, channel=data.channel)
        record.raw_text = text
        record.status = IntakeRequest.Status.NEEDS_CLARIFICATION
        record.parsed = parsed.as_dict()
        record.clarification = parsed.as_dict()["clarification"]
        record.system_code = parsed.system or ""
        record.sr_number = parsed.sr_number
        record.save()
        audit.record(
            user,
            "intake.clarification",
            target=parsed.system or None,
            payload={
                "draft_id": str(record.draft_id),
                "field": parsed.clarification.field,
                "question": parsed.clarification.question,
                "channel": data.channel,
            },
        )
        outcome.request = record
        return outcome
    system = System.objects.for_user(user).select_related("institution").get(code=parsed.system)
    with transaction.atomic():
        task = file_request(
            user,
            system=system,
            sub_type=parsed.sub_type or "",
            title=_title(parsed, system),
            targets=parsed.servers,
            parameters=params,
            uploads=data.uploads or None,
            emergency=data.emergency,
            sr_number=parsed.sr_number,
            raw_request=text,
            channel=data.channel,
        )
        window = _window_start(parsed)
        if window is not None:
            # Read by the execution queue: an approved task waits until its window opens.
            OpsTask.objects.filter(pk=task.pk).update(window_start=window)
            task.window_start = window
        record = draft or IntakeRequest(requester=user, channel=data.channel)
        record.raw_text = text
        record.status = IntakeRequest.Status.FILED
        record.parsed = parsed.as_dict()
        record.clarification = {}
        record.system_code = system.code
        record.sr_number = parsed.sr_number
        record.task = task
        record.save()
        record_task(
            user,
            "intake.filed",
            task,
            draft_id=str(record.draft_id),
            sub_type=parsed.sub_type,
            servers=parsed.servers,
            schedule=parsed.schedule,
            channel=data.channel,
            ocr_codes=(data.ocr or {}).get("error_codes", []),
            parser=parsed.backend,
            parser_note=parsed.backend_note,
        )
    outcome.request, outcome.task = record, task
    return outcome
