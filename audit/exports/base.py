"""What every export format shares: the filter, the chain verdict and covering checkpoint
read before the first row, the rows in seq order, and the trailer signed as a whole.

A format is an ``Exporter`` subclass that writes its header, one record per entry and its
trailer; the base class runs them in that order, counts the rows and signs the trailer
over the digest the format names (the body, the rows, or a manifest of both).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import IO, Any, ClassVar

from django.db.models import F, Max, Min, QuerySet
from django.utils import timezone

from .. import canonical as canon
from .. import lines, services, signing
from ..models import AuditEntry
from ..verify import VerifyReport, verify_chain

FORMAT = "guardia-audit-export/2"
FORMATS = ("csv", "jsonl", "pdf")
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

    def queryset(self) -> QuerySet[AuditEntry]:
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
                # seq + 0: a bare MIN/MAX(seq) is answered by walking the seq index from one
                # end until a row falls in the period (half the log for a month in the
                # middle: seconds at a million entries); the expression makes the database
                # read the period off the created_at index instead.
                bounds = period.aggregate(first=Min(F("seq") + 0), last=Max(F("seq") + 0))
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

    def add(self, seq: int) -> None:
        self.count += 1
        self.first_seq = self.first_seq or seq
        self.last_seq = seq


@dataclass(frozen=True)
class Row:
    """One exported entry, read from the canonical bytes that were hashed."""

    seq: int
    prev_hash: str
    entry_hash: str
    canonical: str
    integrity: str  # "ok", or "broken" from the first broken seq of the chain on


def rows_line(entry_hash: str, integrity: str) -> bytes:
    """What rows_sha256 covers per entry: every other byte of a JSON Lines entry line is
    bound to its entry_hash by the fixed layout and the chain hash (audit/lines.py)."""
    return f"{entry_hash} {integrity}\n".encode("ascii")


class Pending:
    """A write target that keeps what was written until it is taken: the blocks of a
    streamed export, so the whole file never exists in memory or on disk."""

    def __init__(self) -> None:
        self.parts: list[bytes] = []
        self.size = 0

    def write(self, data: bytes) -> int:
        self.parts.append(bytes(data))
        self.size += len(data)
        return len(data)

    def take(self) -> bytes:
        data = b"".join(self.parts)
        self.parts.clear()
        self.size = 0
        return data


class Exporter(ABC):
    """One export format. ``write()`` verifies the chain, finds or signs the covering
    checkpoint, then calls ``start``, ``entry`` for every row, ``digest`` and ``finish``."""

    format: ClassVar[str]

    def __init__(self, flt: ExportFilter, target: IO[bytes]):
        self.flt, self.target = flt, target
        self.meta: dict[str, Any] = {}

    def write(self) -> ExportResult:
        result = ExportResult(self.format)
        for _ in self.steps(result):
            pass
        return result

    def steps(self, result: ExportResult) -> Iterator[None]:
        """Write the export, pausing after the header and after every entry, so a streamed
        response can hand on what was written so far (``stream``)."""
        # Resumed from the last checkpoint a whole-chain verification passed: an export's
        # cost follows what was appended since, not the chain's length (chain.from_seq says so).
        report = verify_chain(resume=True)
        self.meta = {"checkpoint": self._checkpoint(), "chain": self._chain(report)}
        self.start()
        yield
        for row in self._rows(report.first_broken_seq):
            self.entry(row)
            result.add(row.seq)
            yield
        digest_name, digest, extra = self.digest()
        result.trailer = self._trailer(result, {**self.meta, **extra}, digest_name, digest)
        self.finish(result)

    @abstractmethod
    def start(self) -> None:
        """Write what comes before the first entry."""

    @abstractmethod
    def entry(self, row: Row) -> None:
        """Write one entry."""

    @abstractmethod
    def digest(self) -> tuple[str, str, dict[str, Any]]:
        """(trailer field, digest the signature binds the content by, other trailer fields)."""

    @abstractmethod
    def finish(self, result: ExportResult) -> None:
        """Write the signed trailer (``result.trailer``) and close the file."""

    def _rows(self, first_broken: int | None) -> Iterator[Row]:
        values = self.flt.queryset().values_list("seq", "prev_hash", "entry_hash", "canonical")
        for seq, prev, digest, text in values.iterator(chunk_size=5000):
            integrity = "ok" if first_broken is None or seq < first_broken else "broken"
            yield Row(seq, prev, digest, text, integrity)

    def _checkpoint(self) -> dict[str, Any] | None:
        """The signed checkpoint covering the last exported entry, signed now if none does."""
        last = self.flt.queryset().values_list("seq", flat=True).last() or 0
        checkpoint = services.latest_checkpoint(last)
        if checkpoint is None or checkpoint.seq < last:
            checkpoint = services.create_checkpoint("export")
        if checkpoint is None:
            return None
        cp = {
            "seq": checkpoint.seq,
            "entry_hash": checkpoint.entry_hash,
            "time": canon.time_text(checkpoint.created_at),
            "key_id": checkpoint.key_id,
            "signature": checkpoint.signature,
        }
        if checkpoint.merkle_root:  # version 2: the root is part of the signed message
            cp["merkle_root"] = checkpoint.merkle_root
        return cp

    @staticmethod
    def _chain(report: VerifyReport) -> dict[str, Any]:
        return {
            "ok": report.ok,
            "kind": report.kind,
            "first_broken_seq": report.first_broken_seq,
            "detail": report.detail,
            "from_seq": report.from_seq,
        }

    def header(self) -> dict[str, Any]:
        return {"type": "header", "format": FORMAT, "export": self.format, "filters": self.flt.as_dict()}

    def _trailer(self, result: ExportResult, meta: dict[str, Any], digest_name: str, digest: str) -> dict[str, Any]:
        """The trailer, signed as a whole: every field below is in the signed message."""
        trailer: dict[str, Any] = {
            "type": "trailer",
            "format": FORMAT,
            "export": result.format,
            "generated_at": lines.kst_text(timezone.now()),
            "filters": self.flt.as_dict(),
            "contiguous": self.flt.contiguous,
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
