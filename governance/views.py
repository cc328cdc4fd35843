"""Team-lead web console. Thin function views: they check who may see what through the
querysets, hand every state change to governance/services.py and turn its errors into
messages. No rule about who may approve/stop/validate is decided here."""

from __future__ import annotations

from django.contrib import messages
from django.contrib.auth.decorators import login_required, permission_required
from django.contrib.auth.models import User
from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseBadRequest, JsonResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.utils import timezone
from django.utils.translation import gettext as _
from django.views.decorators.http import require_GET, require_POST

from audit.paging import BadCursor
from cmdb.models import System, SystemOwner

from . import control, diffview, queries, reports, services, submission
from . import demo_artifact as demo
from .errors import GovernanceError, NotFound
from .forms import (
    TEMPLATE_FIELDS,
    DecisionForm,
    GlobalStopForm,
    NewRequestForm,
    OwnerPresenceForm,
    SearchForm,
    StatisticsRangeForm,
    StopForm,
    ValidationForm,
)
from .models import STOPPABLE, Notification, OpsTask, Status
from .results import ResultPackage

RECENT_TASKS = 15
APPROVALS_PER_PAGE = 20


def _status_labels() -> dict[str, str]:
    return {value: str(label) for value, label in Status.choices}


def _visible_task(request: HttpRequest, task_id: str) -> OpsTask:
    # 404 rather than 403 for a task the user may not see: its id is not confirmed either.
    tasks = queries.visible_tasks(request.user).select_related("system__institution", "requester")
    return get_object_or_404(tasks, task_id=task_id)


def _form_errors(request: HttpRequest, form) -> None:
    for field, errors in form.errors.items():
        label = form.fields[field].label if field in form.fields else ""
        for error in errors:
            messages.error(request, f"{label}: {error}" if label else error)


@login_required
def dashboard(request: HttpRequest) -> HttpResponse:
    recent = (
        queries.visible_tasks(request.user)
        .select_related("system__institution", "requester")
        .order_by("-created_at")[:RECENT_TASKS]
    )
    return render(
        request,
        "console/dashboard.html",
        {
            "counts": reports.dashboard_counts(request.user),
            "recent": recent,
            "stop_form": GlobalStopForm(),
            "status_labels": _status_labels(),
            "open_approvals": services.my_approvals(request.user).count(),
            # The PM's prompt: result packages waiting for validation among the tasks they see.
            "awaiting_validation": (
                OpsTask.objects.visible_to(request.user).filter(status=Status.PENDING_PM_VALIDATION).count()
                if request.user.has_perm("governance.validate_result")
                else 0
            ),
        },
    )


@login_required
def dashboard_tiles(request: HttpRequest) -> JsonResponse:
    """The four tile counts, re-read by live.js when a transition event arrives."""
    return JsonResponse(reports.dashboard_counts(request.user))


@login_required
@require_POST
def global_stop(request: HttpRequest) -> HttpResponse:
    if not request.user.has_perm("governance.use_kill_switch"):
        raise PermissionDenied
    form = GlobalStopForm(request.POST)
    if not form.is_valid():
        _form_errors(request, form)
        return redirect("console:dashboard")
    try:
        if form.cleaned_data["action"] == "engage":
            control.engage_global_stop(request.user, form.cleaned_data["reason"])
            messages.warning(request, _("전체 정지를 걸었습니다. 새 실행이 시작되지 않습니다."))
        else:
            control.release_global_stop(request.user)
            messages.success(request, _("전체 정지를 해제했습니다."))
    except GovernanceError as exc:
        messages.error(request, exc.detail)
    return redirect("console:dashboard")


@login_required
def search(request: HttpRequest) -> HttpResponse:
    form = SearchForm(request.GET or None)
    page, matches, status = None, 0, 200
    if form.is_bound and form.is_valid():
        data = form.cleaned_data
        results = queries.search_tasks(
            request.user, q=data["q"], institution=data["institution"], person=data["person"]
        )
        try:
            page = queries.task_page(results, request.GET)
        except BadCursor as exc:
            messages.error(request, exc.message())
            page, status = queries.task_page(results, {}), 400
        matches = queries.count_up_to(results, queries.COUNT_CAP)
    context = {"form": form, "page": page, "matches": matches, "cap": queries.COUNT_CAP}
    return render(request, "console/search.html", context, status=status)


@login_required
@permission_required("governance.submit_task", raise_exception=True)
def new_request(request: HttpRequest) -> HttpResponse:
    """ "새 요청": the console's way to file a request (the API's POST /api/v1/tasks/ does the same)."""
    systems = System.objects.for_user(request.user)
    chosen = request.POST.get("system") or request.GET.get("system") or ""
    system = systems.filter(pk=chosen).first() if chosen.isdigit() else None
    if request.method == "POST":
        form = NewRequestForm(request.POST, request.FILES, user=request.user, system=system)
        if form.is_valid():
            data = form.cleaned_data
            try:
                task = submission.file_request(
                    request.user,
                    system=data["system"],
                    sub_type=data["sub_type"],
                    title=data["title"],
                    targets=[s.server_id for s in data["targets"]],
                    parameters=form.parameters(),
                    uploads=form.uploads(),
                    emergency=data["emergency"],
                    sr_number=data["sr_number"],
                    raw_request=data["raw_request"],
                    channel="WEB",
                )
            except GovernanceError as exc:
                form.add_service_error(exc.field, exc.detail, exc.errors)
            else:
                messages.success(request, _("%(task)s 요청을 접수했습니다.") % {"task": task.task_id})
                return redirect("console:task", task_id=task.task_id)
    else:
        form = NewRequestForm(
            user=request.user,
            system=system,
            initial={"system": system, "sub_type": request.GET.get("sub_type", "APP_DEPLOY")},
        )
    return render(
        request,
        "console/new_request.html",
        {
            "form": form,
            "system": system,
            # Which typed fields belong to which template; the page shows only the chosen one's.
            "template_fields": {str(k): list(v) for k, v in TEMPLATE_FIELDS.items()},
        },
    )


@login_required
@permission_required("governance.decide_step", raise_exception=True)
def approvals(request: HttpRequest) -> HttpResponse:
    # Each card shows the plan, parameters, artifact and targets the decision is about.
    steps = services.my_approvals(request.user).prefetch_related("task__targets")
    # A bounded page, nearest deadline first, by keyset on (sla_deadline, id): each card
    # carries a whole plan, and an away owner's list can grow long; no count of the list.
    status = 200
    try:
        page = queries.approvals_page(steps, request.GET, APPROVALS_PER_PAGE)
    except BadCursor as exc:
        messages.error(request, exc.message())
        page, status = queries.approvals_page(steps, {}, APPROVALS_PER_PAGE), 400
    context = {"steps": page.object_list, "page": page, "form": DecisionForm()}
    return render(request, "console/approvals.html", context, status=status)


@login_required
@permission_required("governance.decide_step", raise_exception=True)
@require_POST
def decide(request: HttpRequest, step_id: int) -> HttpResponse:
    form = DecisionForm(request.POST)
    if not form.is_valid():
        _form_errors(request, form)
        return redirect("console:approvals")
    # decide_step finds the step through the caller's visible tasks inside its transaction: a
    # foreign step is 404, and no message about its task's state is ever shown. The form's
    # fields are its parameters (decision, comments, plan_sha256), as in the API.
    try:
        result = services.decide_step(request.user, step_id, **form.cleaned_data)
    except NotFound as exc:
        raise Http404(exc.detail) from exc  # nothing about a step the user may not see
    except GovernanceError as exc:
        messages.error(request, exc.detail)
        return redirect("console:approvals")
    texts = {
        "APPROVED": _("%(task)s 승인 완료: 실행 대기열에 넣었습니다."),
        "REJECTED": _("%(task)s 반려했습니다."),
        "NEXT_STEP": _("%(task)s 승인했습니다. 다음 승인 단계로 넘어갑니다."),
    }
    messages.success(request, texts.get(result.result, "%(task)s") % {"task": result.task.task_id})
    return redirect("console:approvals")


@login_required
def task_detail(request: HttpRequest, task_id: str) -> HttpResponse:
    task = _visible_task(request, task_id)
    steps = task.steps.select_related("assigned_to", "original_owner", "actual_approver").order_by("step_order")
    return render(
        request,
        "console/task_detail.html",
        {
            "task": task,
            "steps": steps,
            "targets": task.targets.all(),
            "timeline": reports.task_timeline(task),
            "status_labels": _status_labels(),
            "stop_form": StopForm(),
            # The button is offered to kill-switch holders only; stop_task enforces the same rule.
            "stoppable": (
                task.status in STOPPABLE
                and not task.stop_requested
                and request.user.has_perm("governance.use_kill_switch")
            ),
            "can_validate": (
                task.status == Status.PENDING_PM_VALIDATION and request.user.has_perm("governance.validate_result")
            ),
            "my_step": services.my_approvals(request.user).filter(task=task).first(),
            "decision_form": DecisionForm(),
            "plan": task.plan,
            "plan_sha256": task.plan_sha256,
            # A failed run keeps the engine's per-server results: shown here, failing servers first.
            "failure_results": (
                _package_context(task.result_package)
                if task.status in FAILED_RUN and task.result_package.get("servers")
                else None
            ),
            # The work agent's round (a CODE_FIX task), whatever state it ended in.
            "code_change": _package_context(task.result_package) if task.result_package.get("code_change") else None,
        },
    )


FAILED_RUN = {Status.FAILED_ROLLED_BACK, Status.MANUAL_INTERVENTION_REQUIRED, Status.STATE_UNCERTAIN, Status.ABORTED}


@login_required
@permission_required("governance.use_kill_switch", raise_exception=True)
@require_POST
def task_stop(request: HttpRequest, task_id: str) -> HttpResponse:
    task = _visible_task(request, task_id)
    form = StopForm(request.POST)
    if not form.is_valid():
        _form_errors(request, form)
    else:
        try:
            control.stop_task(request.user, task.task_id, form.cleaned_data["reason"])
            messages.warning(request, _("%(task)s 중지를 요청했습니다.") % {"task": task.task_id})
        except GovernanceError as exc:
            messages.error(request, exc.detail)
    return redirect("console:task", task_id=task.task_id)


@login_required
@permission_required("governance.validate_result", raise_exception=True)
def validate(request: HttpRequest, task_id: str) -> HttpResponse:
    task = _visible_task(request, task_id)
    form = ValidationForm(request.POST or None)
    if request.method == "POST":
        if form.is_valid():
            try:
                # The form's fields are the service's arguments: verdict, comments, plan_sha256.
                control.validate_result(request.user, task.task_id, **form.cleaned_data)
            except GovernanceError as exc:
                messages.error(request, exc.detail)
            else:
                messages.success(request, _("검증 결과를 기록했습니다."))
                return redirect("console:task", task_id=task.task_id)
        else:
            _form_errors(request, form)
    return render(
        request,
        "console/validate.html",
        {
            "task": task,
            **_package_context(task.result_package),
            "form": form,
            "waiting": task.status == Status.PENDING_PM_VALIDATION,
        },
    )


@login_required
@permission_required("governance.submit_task", raise_exception=True)
@require_GET
def demo_artifact(request: HttpRequest) -> HttpResponse:
    """The demo's sample WAR for ?version=X (the walk-through's artifact). Offered to anyone
    who may file requests: it is a few hundred bytes of public sample content, built from
    the version alone, and the version is confined to a pattern before it reaches a header."""
    version = request.GET.get("version", "")
    if not demo.valid_version(version):
        message = _("version: 영문자, 숫자, '.', '_', '+', '-'로 된 버전을 입력하세요 (최대 64자).")
        return HttpResponseBadRequest(message, content_type="text/plain; charset=utf-8")
    response = HttpResponse(demo.build_war(version), content_type="application/java-archive")
    response["Content-Disposition"] = f'attachment; filename="{demo.file_name(version)}"'
    return response


def _package_context(data: dict) -> dict:
    """The result package as the PM page shows it: failures and version problems first."""
    package = ResultPackage.from_json(data)
    return {
        "package": package,
        "rows": [(row, package.problem(row)) for row in package.ordered()],
        "diff": queries.diff_lines(package.diff),
        # A code change: per file, highlighted on the server (governance/diffview.py).
        "code_files": diffview.split_files(package.diff) if package.code_change else [],
    }


@login_required
@permission_required("governance.validate_result", raise_exception=True)
def validation_queue(request: HttpRequest) -> HttpResponse:
    """Result packages waiting for a PM's validation, oldest first, among tasks the PM may see."""
    tasks = (
        queries.visible_tasks(request.user)
        .filter(status=Status.PENDING_PM_VALIDATION)
        .select_related("system__institution", "requester")
        .order_by("updated_at")
    )
    return render(request, "console/validations.html", {"tasks": tasks})


class AuthenticatedHttpRequest(HttpRequest):
    """A request past @login_required: its user is a real account."""

    user: User


@login_required
def owner_settings(request: AuthenticatedHttpRequest) -> HttpResponse:
    owned = SystemOwner.objects.filter(owner=request.user).select_related("system__institution", "deputy")
    if request.method == "POST":
        ownership = get_object_or_404(owned, system_id=request.POST.get("system"))
        form = OwnerPresenceForm(request.POST, owner=request.user, system=ownership.system)
        if form.is_valid():
            try:
                services.set_owner_presence(
                    request.user,
                    ownership.system,
                    deputy=form.cleaned_data["deputy"],
                    owner_is_active=not form.cleaned_data["away"],
                )
            except GovernanceError as exc:
                messages.error(request, exc.detail)
            else:
                messages.success(request, _("%(system)s 담당 설정을 저장했습니다.") % {"system": ownership.system.name})
                return redirect("console:owner_settings")
        else:
            _form_errors(request, form)
    rows = [
        (
            ownership,
            OwnerPresenceForm(
                owner=request.user,
                system=ownership.system,
                initial={"deputy": ownership.deputy_id, "away": not ownership.owner_is_active},
            ),
        )
        for ownership in owned
    ]
    return render(request, "console/owner_settings.html", {"rows": rows})


@login_required
def statistics(request: HttpRequest) -> HttpResponse:
    form = StatisticsRangeForm(request.GET or None)
    since = until = None
    if form.is_bound and form.is_valid():
        since, until = form.period(timezone.localdate())
    stats = reports.statistics(request.user, since, until)
    charts = reports.statistics_charts(stats)
    status = 400 if form.is_bound and form.errors else 200
    return render(request, "console/statistics.html", {"stats": stats, "charts": charts, "form": form}, status=status)


@login_required
def inbox(request: AuthenticatedHttpRequest) -> HttpResponse:
    notes = Notification.objects.filter(user=request.user).select_related("task")
    # A bounded page, newest first, read from the (user, created_at, id) index by keyset.
    try:
        page = queries.task_page(notes, request.GET)
    except BadCursor as exc:
        messages.error(request, exc.message())
        return render(request, "console/inbox.html", {"page": queries.task_page(notes, {})}, status=400)
    return render(request, "console/inbox.html", {"page": page})


@login_required
@require_POST
def inbox_read(request: HttpRequest) -> HttpResponse:
    raw = request.POST.get("id", "")
    ids = None if not raw else ([int(raw)] if raw.isdigit() else [])
    count = services.mark_read(request.user, ids)
    messages.info(request, _("%(count)d건을 읽음으로 표시했습니다.") % {"count": count})
    return redirect("console:inbox")
