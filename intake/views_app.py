"""The field PWA at /app/: a phone-first front end for site managers.

Pages are plain Django templates; the browser side (static/app/) adds the service worker,
the offline draft queue, the virtual keypad and the SHA-256 of attachments. Every rule
about who may file what stays in governance: these views only shape input, preview the
plan the request would get, and hand the filing to ``governance.submission.file_request``.

The preview renders the plan with the same renderer and the same partial as the console
(templates/console/_plan.html) without filing anything: the requester confirms what the
approvers will be shown. Attachments are not uploaded for the preview; the browser sends
their name, size and SHA-256, and on filing the server hashes the received bytes and
refuses the request when they differ from what the browser computed and showed.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from django.conf import settings
from django.contrib.auth.decorators import login_required
from django.http import FileResponse, HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import render
from django.template.loader import render_to_string
from django.utils.module_loading import import_string
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy as _l
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET, require_POST

from cmdb.models import Server, System
from governance import plans, policy, services
from governance.attachments import UPLOAD_PARAMETERS, kind_for
from governance.errors import GovernanceError, Invalid
from governance.models import OpsTask, Status, SubType
from governance.submission import file_request

from . import speech
from .services import IntakeInput, Refused
from .services import preview as preview_request

STATIC_APP = Path(settings.BASE_DIR) / "static" / "app"
MY_REQUESTS = 30
THEME_COLOR = "#1b4f9c"
UPLOAD_FIELDS = ("artifact", "cert_file", "key_file", "chain_file")

# Per template, the typed inputs the phone shows: (name, kind, label). "file" inputs are
# uploads hashed in the browser; the rest become playbook parameters of the same name,
# except table/condition, which a data cleanup passes to its registered script as args.
TEMPLATE_INPUTS: dict[str, list[tuple[str, str, Any]]] = {
    SubType.APP_DEPLOY: [("artifact", "file", _l("배포 파일 (WAR/JAR)")), ("version", "text", _l("버전"))],
    SubType.STATIC_SYNC: [
        ("artifact", "file", _l("정적 파일 묶음 (.tar.gz)")),
        ("target_path", "text", _l("대상 경로")),
    ],
    SubType.SERVICE_RESTART: [],
    SubType.SSL_REPLACE: [
        ("cert_file", "file", _l("인증서 (PEM)")),
        ("key_file", "file", _l("개인 키 (PEM)")),
        ("chain_file", "file", _l("체인 인증서 (선택)")),
        ("cert_path", "text", _l("서버의 인증서 경로")),
        ("key_path", "text", _l("서버의 키 경로")),
        ("https_port", "number", _l("HTTPS 포트")),
    ],
    SubType.DATA_CLEANUP: [
        ("script", "text", _l("등록된 정리 스크립트")),
        ("table", "text", _l("테이블")),
        ("condition", "text", _l("조건")),
    ],
    SubType.LOG_MINING: [("log_path", "text", _l("로그 파일 경로")), ("pattern", "text", _l("찾을 패턴"))],
    SubType.LOG_CLEANUP: [
        ("directory", "text", _l("로그 디렉터리")),
        ("name_pattern", "text", _l("파일 이름 패턴")),
        ("older_than_days", "number", _l("며칠 지난 파일")),
    ],
    SubType.LOGROTATE: [("log_path", "text", _l("로그 파일 경로")), ("keep", "number", _l("보관 개수"))],
    SubType.MEMORY_CHECK: [("top", "number", _l("상위 프로세스 수"))],
    SubType.CRON_MANAGE: [],
    SubType.RAW_COMMAND: [("command", "text", _l("명령"))],
}
KEYPAD_KEYS = ["|", ">", "#", "$", ",", ";", "&", "~", "/", "\\", "*", '"', "'"]


class PreviewError(Exception):
    def __init__(self, errors: dict[str, str]):
        super().__init__("; ".join(f"{k}: {v}" for k, v in errors.items()))
        self.errors = errors


def _errors(exc: GovernanceError) -> dict[str, str]:
    if exc.errors:
        return {str(name): str(message) for name, message in exc.errors.items()}
    return {exc.field or "detail": exc.detail}


def _json_error(errors: dict[str, str], status: int = 400) -> JsonResponse:
    return JsonResponse({"errors": errors}, status=status, json_dumps_params={"ensure_ascii": False})


# --- pages ---------------------------------------------------------------------------------
@login_required
@require_GET
def home(request: HttpRequest) -> HttpResponse:
    """My requests, with live status (static/js/live.js updates the badges in place)."""
    tasks = (
        OpsTask.objects.filter(requester=request.user).select_related("system").order_by("-created_at")[:MY_REQUESTS]
    )
    return render(
        request,
        "app/home.html",
        {
            "tasks": tasks,
            "status_labels": {value: str(label) for value, label in Status.choices},
        },
    )


@login_required
@require_GET
def new_request(request: HttpRequest) -> HttpResponse:
    """Compose a request. ``?server=<server_id>`` or ``?system=<code>`` (a dashboard deep link)
    preselects that server and its system, and starts the free text with them, when they lie
    within the user's scope; otherwise the value is ignored with a notice and never shown."""
    systems = list(
        System.objects.for_user(request.user).select_related("institution").order_by("institution__name", "name")
    )
    servers = (
        Server.objects.filter(system__in=systems, active=True)
        .order_by("server_id")
        .values("server_id", "hostname", "system__code")
    )
    scope: dict[str, dict[str, Any]] = {
        s.code: {"name": f"{s.institution.name} · {s.name}", "servers": []} for s in systems
    }
    for server in servers:
        scope[server["system__code"]]["servers"].append({"id": server["server_id"], "host": server["hostname"]})
    wanted = request.GET.get("server", "").strip()
    chosen_server = next((s for s in servers if s["server_id"] == wanted), None) if wanted else None
    wanted_system = request.GET.get("system", "").strip()
    by_code = {s.code: s for s in systems}
    # A link's values count only within the caller's scope; anything else is dropped unseen.
    system_code = chosen_server["system__code"] if chosen_server else ""
    if not system_code and wanted_system in by_code:
        system_code = wanted_system
    chosen_system = by_code.get(system_code)
    sub_type = request.GET.get("sub_type", "")
    return render(
        request,
        "app/new.html",
        {
            "systems": systems,
            "scope": scope,
            "prefill": {
                "system": system_code,
                "server": chosen_server["server_id"] if chosen_server else "",
                "sub_type": sub_type if sub_type in TEMPLATE_INPUTS else "",
                # The free text starts with what the link named, so the parser maps it at once.
                "text": " ".join(
                    part
                    for part in (
                        chosen_system.name if chosen_system else "",
                        chosen_server["server_id"] if chosen_server else "",
                    )
                    if part
                ),
            },
            "server_out_of_scope": bool(wanted and chosen_server is None),
            "system_out_of_scope": bool(wanted_system and wanted_system not in by_code and not chosen_server),
            "templates": [
                (value, label, TEMPLATE_INPUTS[value]) for value, label in SubType.choices if value in TEMPLATE_INPUTS
            ],
            "keypad_keys": KEYPAD_KEYS,
            "can_submit": request.user.has_perm("governance.submit_task"),
            "voice_enabled": speech.enabled(),
            "voice_limit_mb": speech.limit_bytes() // (1024 * 1024),
        },
    )


# --- preview and filing ------------------------------------------------------------------------
def _payload(request: HttpRequest) -> dict[str, Any]:
    """The request fields from multipart (filing) or JSON (preview), shape-checked."""
    if request.content_type == "application/json":
        try:
            data = json.loads(request.body or b"{}")
        except ValueError as exc:
            raise PreviewError({"detail": _("JSON 형식이 아닙니다: %(error)s") % {"error": exc}}) from exc
        if not isinstance(data, dict):
            raise PreviewError({"detail": _("JSON 객체여야 합니다.")})
    else:
        data = {
            key: request.POST.get(key, "")
            for key in ("system", "sub_type", "title", "raw_request", "parameters", "emergency", "sr_number")
        }
        data["targets"] = request.POST.getlist("targets")
        data["hashes"] = {name: request.POST.get(f"{name}_sha256", "") for name in UPLOAD_FIELDS}
    errors: dict[str, str] = {}
    if not str(data.get("system") or ""):
        errors["system"] = _("시스템을 선택하세요.")
    if data.get("sub_type") not in TEMPLATE_INPUTS:
        errors["sub_type"] = _("작업 유형을 선택하세요.")
    if not str(data.get("title") or "").strip():
        errors["title"] = _("제목을 입력하세요.")
    parameters = data.get("parameters") or {}
    if isinstance(parameters, str):
        try:
            parameters = json.loads(parameters)
        except ValueError:
            parameters = None
    if not isinstance(parameters, dict):
        errors["parameters"] = _("파라미터는 JSON 객체여야 합니다.")
    targets = data.get("targets") or []
    if not isinstance(targets, list) or not all(isinstance(t, str) for t in targets):
        errors["targets"] = _("대상 서버 목록이 올바르지 않습니다.")
    if errors:
        raise PreviewError(errors)
    data["parameters"] = parameters
    data["targets"] = targets
    data["emergency"] = str(data.get("emergency") or "").lower() in ("1", "true", "on", "yes")
    return data


def _scoped_system(user, code: str) -> System:
    # Another institution's system is as unknown as one that does not exist.
    system = System.objects.for_user(user).select_related("institution").filter(code=code).first()
    if system is None:
        raise PreviewError({"system": _("선택할 수 없는 시스템입니다: %(code)s") % {"code": code}})
    return system


@login_required
@require_POST
def preview(request: HttpRequest) -> JsonResponse:
    """The plan this request would get, rendered like the console's decision pages, and
    who would be asked to approve it. Nothing is stored."""
    if not request.user.has_perm("governance.submit_task"):
        return _json_error({"detail": _("요청을 접수할 권한이 없습니다.")}, status=403)
    try:
        data = _payload(request)
        system = _scoped_system(request.user, data["system"])
        targets = services.targets_in(system, data["targets"]) if data["targets"] else []
        parameters = dict(data["parameters"])
        files = data.get("files") or {}
        if not isinstance(files, dict):
            raise PreviewError({"files": _("첨부 파일 정보가 올바르지 않습니다.")})
        parameters = _with_declared_files(parameters, files, data["sub_type"])
        validator = getattr(settings, "PLAYBOOK_VALIDATOR", "")
        if validator:
            try:
                parameters = import_string(validator)(data["sub_type"], parameters)
            except (ValueError, TypeError) as exc:
                raise PreviewError(getattr(exc, "errors", None) or {"parameters": str(exc)}) from exc
        approval = policy.plan_for(
            sub_type=data["sub_type"],
            tier=system.institution.tier,
            sensitive=system.sensitive,
            in_window=system.in_window(),
            emergency=data["emergency"],
        )
        if approval.refused:
            raise PreviewError({"emergency": _("배포 허용 시간이 아닙니다. 긴급으로 표시하면 추가 승인을 요청합니다.")})
        try:
            plan = plans.render_plan(data["sub_type"], parameters, system, targets, task_ref="OPS-미리보기")
        except ValueError as exc:
            raise PreviewError(getattr(exc, "errors", None) or {"parameters": str(exc)}) from exc
    except PreviewError as exc:
        return _json_error(exc.errors)
    except GovernanceError as exc:
        return _json_error(_errors(exc), status=exc.status_code)
    draft = OpsTask(sub_type=data["sub_type"], title=data["title"], system=system, parameters=parameters)
    html = render_to_string(
        "app/_preview.html",
        {
            "draft": draft,
            "targets": targets,
            "risk": approval.risk,
            "auto_approve": approval.auto_approve,
            "roles": [services.ROLE_LABEL.get(role, role) for role in approval.roles],
            "plan": plan,
            "plan_sha256": plans.plan_sha256(plan),
            "task": draft,
        },
        request=request,
    )
    return JsonResponse({"html": html, "plan_sha256": plans.plan_sha256(plan)})


def _with_declared_files(parameters: dict, files: dict, sub_type: str) -> dict:
    """The preview's stand-in for uploads: the name, size and SHA-256 the browser computed."""
    for name, info in files.items():
        if name not in UPLOAD_PARAMETERS or not isinstance(info, dict):
            raise PreviewError({name: _("알 수 없는 첨부 파일입니다.")})
        sha = str(info.get("sha256") or "").lower()
        if len(sha) != 64 or any(c not in "0123456789abcdef" for c in sha):
            raise PreviewError({name: _("SHA-256 값이 올바르지 않습니다.")})
        try:
            kind_for(name, sub_type)
        except Invalid as exc:
            raise PreviewError({name: exc.detail}) from exc
        parameters[UPLOAD_PARAMETERS[name]] = sha
        if name == "artifact":
            size = info.get("size")
            parameters["artifact"] = {
                "sha256": sha,
                "name": Path(str(info.get("name") or "artifact")).name,
                "size": size if isinstance(size, int) else None,
            }
    return parameters


def _check_browser_hashes(request: HttpRequest, hashes: dict[str, str]) -> dict[str, str]:
    """Each uploaded file must hash to what the browser computed and showed: a file changed
    or damaged on the way is refused before anything is kept."""
    errors: dict[str, str] = {}
    for name in UPLOAD_FIELDS:
        upload = request.FILES.get(name)
        if upload is None:
            continue
        claimed = (hashes.get(name) or "").strip().lower()
        digest = hashlib.sha256()
        for chunk in upload.chunks():
            digest.update(chunk)
        upload.seek(0)
        if not claimed:
            errors[name] = _("브라우저에서 계산한 SHA-256이 없습니다.")
        elif claimed != digest.hexdigest():
            errors[name] = _("받은 파일의 SHA-256(%(server)s)이 브라우저에서 계산한 값(%(browser)s)과 다릅니다.") % {
                "server": digest.hexdigest()[:12],
                "browser": claimed[:12],
            }
    return errors


@login_required
@require_POST
def submit(request: HttpRequest) -> JsonResponse:
    """File the request (multipart: the fields, the files and each file's browser SHA-256).
    Also what the offline draft queue posts when the connection returns."""
    if not request.user.has_perm("governance.submit_task"):
        return _json_error({"detail": _("요청을 접수할 권한이 없습니다.")}, status=403)
    try:
        data = _payload(request)
    except PreviewError as exc:
        return _json_error(exc.errors)
    unknown = sorted(set(request.FILES) - set(UPLOAD_FIELDS))
    if unknown:
        return _json_error({unknown[0]: _("알 수 없는 첨부 파일입니다.")})
    mismatched = _check_browser_hashes(request, data["hashes"])
    if mismatched:
        return _json_error(mismatched)
    try:
        task = file_request(
            request.user,
            system=data["system"],
            sub_type=data["sub_type"],
            title=data["title"],
            targets=data["targets"],
            parameters=data["parameters"],
            uploads={name: request.FILES[name] for name in UPLOAD_FIELDS if name in request.FILES},
            emergency=data["emergency"],
            sr_number=str(data.get("sr_number") or "")[:64],
            raw_request=str(data.get("raw_request") or "")[:10000],
            channel="PWA",
        )
    except GovernanceError as exc:
        return _json_error(_errors(exc), status=exc.status_code)
    return JsonResponse(
        {
            "task_id": task.task_id,
            "status": task.status,
            "status_label": task.get_status_display(),
            "plan_sha256": task.plan_sha256,
        },
        status=201,
    )


@login_required
@require_POST
def parse(request: HttpRequest) -> JsonResponse:
    """Free text: the intake parser's reading of the request (intake.services.preview), with
    its question when it must ask back, or the plan it would get, rendered for the phone.
    The chosen answers come back as system / task_sub_type / targets. Nothing is filed."""
    data: Any
    if request.content_type == "application/json":
        try:
            data = json.loads(request.body or b"{}")
        except ValueError:
            data = None
        if not isinstance(data, dict):
            return _json_error({"detail": _("JSON 객체여야 합니다.")})
    else:
        data = {key: request.POST.get(key, "") for key in ("raw_request", "system", "task_sub_type")}
        data["targets"] = request.POST.getlist("targets")
    raw = str(data.get("raw_request") or "").strip()
    if not raw:
        return _json_error({"raw_request": _("요청 내용을 입력하세요.")})
    if len(raw) > 10000:
        return _json_error({"raw_request": _("요청 내용은 10,000자까지 쓸 수 있습니다.")})
    targets = data.get("targets") or []
    if not isinstance(targets, list) or not all(isinstance(t, str) for t in targets):
        return _json_error({"targets": _("대상 서버 목록이 올바르지 않습니다.")})
    # Answers to a parameter question (the version typed, the SHA-256 of the file the browser
    # hashed): the filing sends the file itself, which the server hashes again.
    params = data.get("params") or {}
    if not isinstance(params, dict) or not all(isinstance(v, str | int) for v in params.values()):
        return _json_error({"params": _("JSON 객체여야 합니다.")})
    wanted = IntakeInput(
        raw_request=raw,
        system=str(data.get("system") or ""),
        targets=targets,
        task_sub_type=str(data.get("task_sub_type") or ""),
        params=params,
        channel="PWA",
    )
    try:
        outcome = preview_request(request.user, wanted)
    except Refused as exc:
        return _json_error({"raw_request": str(exc)}, status=422)
    except GovernanceError as exc:
        return _json_error(_errors(exc), status=exc.status_code)
    parsed = outcome.parsed
    plan = outcome.plan or {}
    plan_sha = plans.plan_sha256(plan) if plan else ""
    system = (
        System.objects.for_user(request.user).select_related("institution").filter(code=parsed.system).first()
        if parsed.system
        else None
    )
    html = render_to_string(
        "app/_parsed.html",
        {
            "parsed": parsed,
            "system": system,
            "sub_type_label": dict(SubType.choices).get(parsed.sub_type or "", ""),
            "clarification": parsed.clarification,
            "plan": plan,
            "plan_sha256": plan_sha,
            "hints": outcome.hints,
        },
        request=request,
    )
    return JsonResponse({"html": html, "ready": bool(plan) and parsed.clarification is None, "plan_sha256": plan_sha})


@login_required
@require_POST
def transcribe(request: HttpRequest) -> JsonResponse:
    """A voice memo recorded on the phone -> its text, which the page puts in the request field
    and reads with the parser like typed text. Off (503) unless speech-to-text is configured."""
    if not request.user.has_perm("governance.submit_task"):
        return _json_error({"detail": _("요청을 접수할 권한이 없습니다.")}, status=403)
    try:
        text = speech.transcribe_upload(request.FILES.get("audio"))
    except speech.SpeechError as exc:
        return _json_error({"audio": str(exc)}, status=exc.status)
    return JsonResponse({"text": text})


# --- installability ------------------------------------------------------------------------------
@require_GET
def manifest(request: HttpRequest) -> JsonResponse:
    icons = [
        {
            "src": f"{settings.STATIC_URL}app/icons/icon-{size}.png",
            "sizes": f"{size}x{size}",
            "type": "image/png",
            "purpose": "any",
        }
        for size in (192, 512)
    ]
    icons.append(
        {
            "src": f"{settings.STATIC_URL}app/icons/maskable-512.png",
            "sizes": "512x512",
            "type": "image/png",
            "purpose": "maskable",
        }
    )
    body = {
        "name": "GUARDiA 현장 요청",
        "short_name": "GUARDiA",
        "lang": "ko",
        "dir": "ltr",
        "start_url": "/app/",
        "scope": "/app/",
        "id": "/app/",
        "display": "standalone",
        "orientation": "portrait",
        "background_color": "#ffffff",
        "theme_color": THEME_COLOR,
        "description": "서버실에서 휴대폰으로 운영 요청을 접수하고 상태를 확인합니다.",
        "icons": icons,
    }
    response = JsonResponse(body, json_dumps_params={"ensure_ascii": False})
    response["Content-Type"] = "application/manifest+json"
    return response


@never_cache
@require_GET
def service_worker(request: HttpRequest) -> FileResponse:
    """Served from /app/ so its scope is /app/; never cached, so a new version is picked up."""
    response = FileResponse((STATIC_APP / "sw.js").open("rb"), content_type="text/javascript; charset=utf-8")
    response["Service-Worker-Allowed"] = "/app/"
    return response
