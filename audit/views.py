"""Auditor console pages (thin: the work is in services/exports)."""

from __future__ import annotations

import tempfile

from django.core.paginator import Paginator
from django.http import FileResponse
from django.shortcuts import render
from django.utils import timezone
from django.views.decorators.http import require_http_methods

from . import exports, services
from .access import auditor_required
from .forms import ExportForm
from .models import AuditEntry


@auditor_required
def entry_list(request):
    entries = AuditEntry.objects.order_by("-seq")
    filters = {name: request.GET.get(name, "").strip() for name in ("task", "institution", "action", "actor")}
    for name, value in filters.items():
        if value:
            entries = entries.filter(**{name: value})
    page = Paginator(entries, 50).get_page(request.GET.get("page"))
    return render(request, "audit/entry_list.html", {"page": page, "filters": filters})


@auditor_required
@require_http_methods(["GET", "POST"])
def verify(request):
    report = None
    if request.method == "POST":
        report = services.run_verification(request.user, source="console")
    last_runs = AuditEntry.objects.filter(action="audit.verify").order_by("-seq")[:10]
    return render(request, "audit/verify.html", {"report": report, "last_runs": last_runs})


def export_response(fmt: str, flt: exports.ExportFilter, user) -> FileResponse:
    """Write the export to a temporary file (bounded memory) and stream it back."""
    spool = tempfile.TemporaryFile()
    result = exports.write(fmt, flt, spool)
    spool.seek(0)
    services.record(user, "audit.export", result_code=fmt, payload={
        "format": fmt, "filters": flt.as_dict(), "count": result.count, "last_seq": result.last_seq,
    })  # fmt: skip
    name = f"guardia-audit-{timezone.localtime():%Y%m%d-%H%M%S}.{fmt}"
    return FileResponse(spool, as_attachment=True, filename=name, content_type=exports.CONTENT_TYPES[fmt])


@auditor_required
def export(request):
    form = ExportForm(request.GET or None)
    if request.GET and form.is_valid():
        return export_response(form.cleaned_data["format"], form.export_filter(), request.user)
    status = 400 if request.GET else 200
    return render(request, "audit/export.html", {"form": form}, status=status)
