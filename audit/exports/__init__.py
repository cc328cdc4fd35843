"""Auditor exports: the seed's report table as CSV, JSON Lines and PDF.

Every export is rendered from the canonical bytes (what was hashed), carries the signed
checkpoint that covers its last entry and the verdict of a chain verification run just
before, and ends in a trailer signed as a whole (Ed25519 over every trailer field, see
signing.trailer_message) so ``manage.py audit_verify_export`` can check it with only the
public key. Readable times are KST with their offset (+09:00); the hashed canonical text
keeps UTC. Formats are described in docs/audit.md "Exports"; the offline checker is
audit/offline.py. What the formats share is in ``base``; each format is one module.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import IO, cast

from ..offline import manifest
from .base import CONTENT_TYPES, FORMAT, FORMATS, Exporter, ExportFilter, ExportResult, Pending
from .jsonl import JsonLinesExporter
from .pdf import PdfExporter
from .spreadsheet import CsvExporter

__all__ = [
    "CONTENT_TYPES",
    "FORMAT",
    "FORMATS",
    "STREAMED",
    "ExportFilter",
    "ExportResult",
    "manifest",
    "stream",
    "write",
]

EXPORTERS: dict[str, type[Exporter]] = {
    exporter.format: exporter for exporter in (CsvExporter, JsonLinesExporter, PdfExporter)
}


# Formats written row by row as they are read. The PDF is not: reportlab assembles the
# document when it is saved, so a PDF is written to a spool file first and then sent.
STREAMED = ("csv", "jsonl")


def _exporter(fmt: str, flt: ExportFilter, target: IO[bytes]) -> Exporter:
    if fmt not in EXPORTERS:
        raise ValueError(f"unknown export format {fmt!r}; choose one of {', '.join(FORMATS)}")
    return EXPORTERS[fmt](flt, target)


def write(fmt: str, flt: ExportFilter, target: IO[bytes]) -> ExportResult:
    """Write the entries ``flt`` selects to ``target`` in ``fmt`` (one of FORMATS)."""
    return _exporter(fmt, flt, target).write()


def stream(fmt: str, flt: ExportFilter, block_size: int = 64 * 1024) -> tuple[ExportResult, Iterator[bytes]]:
    """The export as blocks of at most ``block_size`` bytes, produced as the rows are read
    (one of STREAMED). The result fills in as the blocks are taken; its trailer is set
    once the last block has been produced."""
    if fmt not in STREAMED:
        raise ValueError(f"format {fmt!r} is not streamed; choose one of {', '.join(STREAMED)}")
    pending = Pending()
    result = ExportResult(fmt)
    steps = _exporter(fmt, flt, cast("IO[bytes]", pending)).steps(result)  # formats only call write()

    def blocks() -> Iterator[bytes]:
        for _ in steps:
            if pending.size >= block_size:
                data = pending.take()
                yield from (data[i : i + block_size] for i in range(0, len(data), block_size))
        data = pending.take()
        yield from (data[i : i + block_size] for i in range(0, len(data), block_size))

    return result, blocks()
