"""Auditor console pages (thin: the work is in services/exports)."""

from __future__ import annotations

import tempfile
from collections.abc import AsyncIterator, Generator

from asgiref.sync import sync_to_async
from django.contrib import messages
from django.http import FileResponse, StreamingHttpResponse
from django.http.response import HttpResponseBase
from django.shortcuts import render
from django.utils import timezone
from django.utils.http import content_disposition_header
from django.views.decorators.http import require_http_methods

from . import exports, services
from .access import auditor_required
from .forms import ExportForm
from .models import AuditEntry
from .paging import BadCursor, keyset_page


@auditor_required
def entry_list(request):
    entries = AuditEntry.objects.all()
    filters = {name: request.GET.get(name, "").strip() for name in ("task", "institution", "action", "actor")}
    for name, value in filters.items():
        if value:
            entries = entries.filter(**{name: value})
    # Newest first by seq, a page at a time from where the last one ended: each page is one
    # range of the (column, seq) index, however deep (audit/paging.py).
    status = 200
    try:
        page = keyset_page(entries, ("seq",), before=request.GET.get("before", ""), after=request.GET.get("after", ""))
    except BadCursor as exc:
        messages.error(request, exc.message())
        page, status = keyset_page(entries, ("seq",)), 400
    return render(request, "audit/entry_list.html", {"page": page, "filters": filters}, status=status)


@auditor_required
@require_http_methods(["GET", "POST"])
def verify(request):
    report = None
    if request.method == "POST":
        report = services.run_verification(request.user, source="console")
    last_runs = AuditEntry.objects.filter(action="audit.verify").order_by("-seq")[:10]
    return render(request, "audit/verify.html", {"report": report, "last_runs": last_runs})


class SpooledFileResponse(FileResponse):
    """A file response that stays in bounded memory under ASGI as well as WSGI.

    Django serves a streaming response's synchronous iterator under ASGI by reading it
    whole into a list first (a 172 MB export raised Daphne's memory by as much). Here the
    ASGI side reads the file in blocks, each read in a worker thread, so only one block is
    held at a time; WSGI and the test client keep FileResponse's own iterator.
    """

    block_size = 64 * 1024

    async def __aiter__(self):
        source = self.file_to_stream
        assert source is not None  # set from the file this response was built with
        read = sync_to_async(source.read, thread_sensitive=False)
        while chunk := await read(self.block_size):
            yield chunk


class ExportStream(StreamingHttpResponse):
    """An export sent while it is written, in bounded memory under ASGI and WSGI alike.

    Under ASGI (Daphne) the response is read through its async iterator: each next block is
    made in the request's worker thread (the database cursor lives there) and handed on, so
    one block is held at a time and the first bytes leave before the last row is read.
    Django would otherwise read a synchronous iterator whole into a list first. WSGI and
    the test client iterate the same generator synchronously.
    """

    def __init__(self, blocks: Generator[bytes], **kwargs):
        super().__init__(blocks, **kwargs)
        self.blocks = blocks

    def _next_block(self) -> bytes | None:
        return next(self.blocks, None)

    async def __aiter__(self) -> AsyncIterator[bytes]:
        step = sync_to_async(self._next_block, thread_sensitive=True)
        finished = False
        try:
            while (block := await step()) is not None:
                yield block
            finished = True
        finally:
            if not finished:  # the client went away: close the export (it audits what was sent)
                await sync_to_async(self.blocks.close, thread_sensitive=True)()


def _audit_export(user, fmt: str, flt: exports.ExportFilter, result: exports.ExportResult, complete: bool) -> None:
    services.record(user, "audit.export", result_code=fmt, payload={
        "format": fmt, "filters": flt.as_dict(), "count": result.count, "last_seq": result.last_seq,
        "complete": complete,
    })  # fmt: skip


def _streamed(fmt: str, flt: exports.ExportFilter, user) -> Generator[bytes]:
    """The export's blocks; the export is audited when the last block has gone, or when the
    client stopped reading (``complete`` false, with the count sent so far)."""
    result, blocks = exports.stream(fmt, flt)
    complete = False
    try:
        yield from blocks
        complete = True
    finally:
        _audit_export(user, fmt, flt, result, complete)


def export_response(fmt: str, flt: exports.ExportFilter, user) -> HttpResponseBase:
    """CSV and JSON Lines stream as they are written; a PDF is written to a temporary file
    (reportlab assembles it at the end) and then sent block by block."""
    name = f"guardia-audit-{timezone.localtime():%Y%m%d-%H%M%S}.{fmt}"
    if fmt in exports.STREAMED:
        response = ExportStream(_streamed(fmt, flt, user), content_type=exports.CONTENT_TYPES[fmt])
        response["Content-Disposition"] = content_disposition_header(True, name)
        return response
    spool = tempfile.TemporaryFile()
    result = exports.write(fmt, flt, spool)
    spool.seek(0)
    _audit_export(user, fmt, flt, result, True)
    return SpooledFileResponse(spool, as_attachment=True, filename=name, content_type=exports.CONTENT_TYPES[fmt])


@auditor_required
def export(request):
    form = ExportForm(request.GET or None)
    if request.GET and form.is_valid():
        return export_response(form.cleaned_data["format"], form.export_filter(), request.user)
    status = 400 if request.GET else 200
    return render(request, "audit/export.html", {"form": form}, status=status)
