"""Auditor exports: the seed's report table as CSV, JSON Lines and PDF.

Every export is rendered from the canonical bytes (what was hashed), carries the signed
checkpoint that covers its last entry and the verdict of a chain verification run just
before, and ends in a trailer signed as a whole (Ed25519 over every trailer field, see
signing.trailer_message) so ``manage.py audit_verify_export`` can check it with only the
public key. Readable times are KST with their offset (+09:00); the hashed canonical text
keeps UTC. Formats are described in docs/audit.md "Exports"; the offline checker is
audit/offline.py.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import IO, Any

from django.db.models import Max, Min
from django.utils import timezone

from . import canonical as canon
from . import lines, services, signing
from .models import AuditEntry

FORMAT = "guardia-audit-export/2"
FORMATS = ("csv", "jsonl", "pdf")
CSV_COLUMNS = lines.CSV_COLUMNS
CONTENT_TYPES = {"csv": "text/csv; charset=utf-8", "jsonl": "application/x-ndjson", "pdf": "application/pdf"}


@dataclass
class ExportFilter:
    since: datetime | None = None
    until: datetime | None = None
    institution: str = ""
    task: str = ""

    @property
    def contiguous(self) -> bool:
        """Without an institution or task filter an export is one unbroken run of seqs,
        which the offline verifier holds it to (a missing seq is then a gap in the chain)."""
        return not (self.institution or self.task)

    def queryset(self):
        qs = AuditEntry.objects.all()
        if self.since or self.until:
            period = qs
            if self.since:
                period = period.filter(created_at__gte=self.since)
            if self.until:
                period = period.filter(created_at__lt=self.until)
            if self.contiguous:
                # The period becomes the seq range it spans, so a clock step backwards
                # between two appends cannot leave a hole in a period export.
                bounds = period.aggregate(first=Min("seq"), last=Max("seq"))
                if bounds["first"] is None:
                    return qs.none()
                qs = qs.filter(seq__gte=bounds["first"], seq__lte=bounds["last"])
            else:
                qs = period
        if self.institution:
            qs = qs.filter(institution=self.institution)
        if self.task:
            qs = qs.filter(task=self.task)
        return qs.order_by("seq")

    def as_dict(self) -> dict[str, str]:
        return {
            "since": lines.kst_text(self.since) if self.since else "",
            "until": lines.kst_text(self.until) if self.until else "",
            "institution": self.institution,
            "task": self.task,
        }


@dataclass
class ExportResult:
    format: str
    count: int = 0
    first_seq: int | None = None
    last_seq: int | None = None
    trailer: dict[str, Any] = field(default_factory=dict)


class _HashingWriter:
    """Writes through to the target while hashing what it wrote (the signed body)."""

    def __init__(self, target: IO[bytes]):
        self.target, self.digest = target, hashlib.sha256()

    def write(self, data: bytes) -> None:
        self.digest.update(data)
        self.target.write(data)


def _rows(flt: ExportFilter, first_broken: int | None) -> Iterator[tuple[int, str, str, str, str]]:
    """(seq, prev_hash, entry_hash, canonical, integrity) in seq order, streamed."""
    values = flt.queryset().values_list("seq", "prev_hash", "entry_hash", "canonical")
    for seq, prev, digest, text in values.iterator(chunk_size=5000):
        integrity = "ok" if first_broken is None or seq < first_broken else "broken"
        yield seq, prev, digest, text, integrity


def _prepare(flt: ExportFilter) -> tuple[Any, dict[str, Any]]:
    """Verify the chain (for the integrity column) and find or sign the covering checkpoint."""
    from .verify import verify_chain

    report = verify_chain()
    last = flt.queryset().values_list("seq", flat=True).last() or 0
    checkpoint = services.latest_checkpoint(last)
    if checkpoint is None or checkpoint.seq < last:
        checkpoint = services.create_checkpoint("export")
    cp = None
    if checkpoint is not None:
        cp = {
            "seq": checkpoint.seq,
            "entry_hash": checkpoint.entry_hash,
            "time": canon.time_text(checkpoint.created_at),
            "key_id": checkpoint.key_id,
            "signature": checkpoint.signature,
        }
        if checkpoint.merkle_root:  # version 2: the root is part of the signed message
            cp["merkle_root"] = checkpoint.merkle_root
    chain = {
        "ok": report.ok,
        "kind": report.kind,
        "first_broken_seq": report.first_broken_seq,
        "detail": report.detail,
    }
    return report, {"checkpoint": cp, "chain": chain}


def _trailer(result: ExportResult, flt: ExportFilter, meta: dict, digest_name: str, digest: str) -> dict:
    """The trailer, signed as a whole: every field below is in the signed message."""
    trailer: dict[str, Any] = {
        "type": "trailer",
        "format": FORMAT,
        "export": result.format,
        "generated_at": lines.kst_text(timezone.now()),
        "filters": flt.as_dict(),
        "contiguous": flt.contiguous,
        "count": result.count,
        "first_seq": result.first_seq,
        "last_seq": result.last_seq,
        **meta,
        digest_name: digest,
        "key_id": signing.key_id(signing.own_public_key()),
    }
    kid, signature = signing.sign(signing.trailer_message(trailer))
    if kid != trailer["key_id"]:  # the key cannot change between two reads of one file
        raise RuntimeError("audit signing key changed while the export was written")
    trailer["signature"] = signature
    return trailer


def _header(flt: ExportFilter, fmt: str) -> dict[str, Any]:
    return {"type": "header", "format": FORMAT, "export": fmt, "filters": flt.as_dict()}


def rows_line(entry_hash: str, integrity: str) -> bytes:
    """What rows_sha256 covers per entry: every other byte of a JSON Lines entry line is
    bound to its entry_hash by the fixed layout and the chain hash (audit/lines.py)."""
    return f"{entry_hash} {integrity}\n".encode("ascii")


def write_jsonl(flt: ExportFilter, target: IO[bytes]) -> ExportResult:
    report, meta = _prepare(flt)
    result = ExportResult("jsonl")
    header = (json.dumps(_header(flt, "jsonl"), separators=(",", ":")) + "\n").encode()
    target.write(header)
    rows_digest = hashlib.sha256()
    for seq, prev, digest, text, integrity in _rows(flt, report.first_broken_seq):
        target.write(lines.entry_line(text, prev, digest, integrity).encode("utf-8"))
        rows_digest.update(rows_line(digest, integrity))
        result.count += 1
        result.first_seq = result.first_seq or seq
        result.last_seq = seq
    header_sha, rows_sha = hashlib.sha256(header).hexdigest(), rows_digest.hexdigest()
    meta = {**meta, "header_sha256": header_sha, "rows_sha256": rows_sha}
    result.trailer = _trailer(result, flt, meta, "manifest_sha256", manifest(header_sha, rows_sha))
    target.write((json.dumps(result.trailer, separators=(",", ":")) + "\n").encode())
    return result


def manifest(header_sha256: str, rows_sha256: str) -> str:
    return hashlib.sha256(f"{header_sha256}\n{rows_sha256}".encode("ascii")).hexdigest()


def report_row(text: str, prev: str, digest: str, integrity: str) -> list[str]:
    """One row of the seed's report table, read from the canonical bytes."""
    entry = canon.parse(text)
    payload = entry["payload"]
    return [
        str(entry["seq"]), lines.kst_text(entry["time"]), entry["task"], entry["institution"],
        str(payload.get("server_group", "")), entry["actor"], entry["action"], entry["result_code"],
        prev, digest, integrity, text,
    ]  # fmt: skip


def write_csv(flt: ExportFilter, target: IO[bytes]) -> ExportResult:
    report, meta = _prepare(flt)
    out, result = _HashingWriter(target), ExportResult("csv")
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")

    def flush() -> None:
        out.write(buffer.getvalue().encode("utf-8"))
        buffer.seek(0)
        buffer.truncate()

    buffer.write("\ufeff")  # Excel opens UTF-8 Korean text correctly only with a BOM
    writer.writerow(CSV_COLUMNS)
    for seq, prev, digest, text, integrity in _rows(flt, report.first_broken_seq):
        writer.writerow(report_row(text, prev, digest, integrity))
        result.count += 1
        result.first_seq = result.first_seq or seq
        result.last_seq = seq
        if result.count % 2000 == 0:
            flush()
    flush()
    result.trailer = _trailer(result, flt, meta, "body_sha256", out.digest.hexdigest())
    writer.writerow(["#trailer", json.dumps(result.trailer, separators=(",", ":"))])
    target.write(buffer.getvalue().encode("utf-8"))
    return result


def write(fmt: str, flt: ExportFilter, target: IO[bytes]) -> ExportResult:
    if fmt == "jsonl":
        return write_jsonl(flt, target)
    if fmt == "csv":
        return write_csv(flt, target)
    if fmt == "pdf":
        from .pdf import write_pdf

        return write_pdf(flt, target)
    raise ValueError(f"unknown export format {fmt!r}; choose one of {', '.join(FORMATS)}")
