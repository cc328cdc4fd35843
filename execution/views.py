"""The site gateways' console page: heartbeat age, queue depth and running tasks per gateway."""

from __future__ import annotations

from django.conf import settings
from django.contrib.auth.decorators import login_required, permission_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render

from . import gateways


@login_required
@permission_required("cmdb.view_gateway", raise_exception=True)
def gateway_status(request: HttpRequest) -> HttpResponse:
    rows = gateways.statuses(request.user)
    return render(request, "console/gateways.html", {"rows": rows, "silent_after": settings.GATEWAY_SILENT_SECONDS})
