"""Console page: the owner-mapping check's report for the systems its reader may see."""

from __future__ import annotations

from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render

from audit.models import AuditEntry
from cmdb.models import System

from . import owner_check as check


def may_view(user) -> bool:
    """Those who fix the owner table (supervisors, admins) and those who review it (PMs)."""
    return bool(user.has_perm("cmdb.change_systemowner") or user.has_perm("governance.validate_result"))


@login_required
def owner_check(request: HttpRequest) -> HttpResponse:
    if not may_view(request.user):
        raise PermissionDenied
    reports = check.find_problems(System.objects.for_user(request.user))
    last_run = AuditEntry.objects.filter(action="owner_check.run").order_by("-seq").only("created_at").first()
    context = {
        "reports": reports,
        "last_run": last_run.created_at if last_run else None,
        "away_days": check.away_days(),
        "idle_days": check.idle_days(),
    }
    return render(request, "console/owner_check.html", context)
