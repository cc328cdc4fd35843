"""Console pages of execution: the site gateways' status and the environment drift report
(with its two actions: accept the scan into the CMDB, or open a governed task)."""

from __future__ import annotations

from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import login_required, permission_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.utils.translation import gettext
from django.views.decorators.http import require_POST

from cmdb.models import EnvSchema, System
from governance.errors import GovernanceError
from governance.models import SubType

from . import gateways, profiles
from .errors import Refused


@login_required
@permission_required("cmdb.view_gateway", raise_exception=True)
def gateway_status(request: HttpRequest) -> HttpResponse:
    rows = gateways.statuses(request.user)
    return render(request, "console/gateways.html", {"rows": rows, "silent_after": settings.GATEWAY_SILENT_SECONDS})


@login_required
@permission_required("cmdb.view_envschema", raise_exception=True)
def drift_report(request: HttpRequest) -> HttpResponse:
    """Servers in the user's scope whose latest scan differs from their CMDB environment schema."""
    rows = profiles.drift_rows(request.user)
    context = {
        "rows": rows,
        "can_accept": request.user.has_perm("cmdb.change_envschema"),
        "can_file": request.user.has_perm("governance.submit_task"),
        "task_types": [(value, SubType(value).label) for value in profiles.DRIFT_TASK_TYPES],
        "section": "drift",
    }
    return render(request, "console/drift.html", context)


@login_required
@require_POST
@permission_required("cmdb.change_envschema", raise_exception=True)
def drift_accept(request: HttpRequest, schema_id: int) -> HttpResponse:
    """Accept the server's latest scan into its schema (audited); another scope's row is not found."""
    schema = get_object_or_404(EnvSchema, pk=schema_id, server__system__in=System.objects.for_user(request.user))
    try:
        changed = profiles.accept_scan(request.user, schema)
    except Refused as exc:
        messages.error(request, str(exc))
    else:
        fields = ", ".join(changed) or gettext("변경 없음")
        text = gettext("%(server)s: 스캔 결과를 환경 스키마에 반영했습니다 (%(fields)s)")
        messages.success(request, text % {"server": schema.server.server_id, "fields": fields})
    return redirect("execution:drift")


@login_required
@require_POST
@permission_required("governance.submit_task", raise_exception=True)
def drift_task(request: HttpRequest, schema_id: int) -> HttpResponse:
    """Open a governed request for the drifted server; another scope's row is not found."""
    scope = System.objects.for_user(request.user)
    schema = get_object_or_404(
        EnvSchema.objects.select_related("server__system"), pk=schema_id, server__system__in=scope
    )
    try:
        task = profiles.open_task(request.user, schema, request.POST.get("sub_type", ""))
    except GovernanceError as exc:
        messages.error(request, f"{schema.server.server_id}: {exc.detail}")
        return redirect("execution:drift")
    text = gettext("%(task)s: %(server)s의 환경 차이 조치를 요청했습니다")
    messages.success(request, text % {"task": task.task_id, "server": schema.server.server_id})
    return redirect("console:task", task_id=task.task_id)
