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

from typing import IO

from ..offline import manifest
from .base import CONTENT_TYPES, FORMAT, FORMATS, Exporter, ExportFilter, ExportResult
from .jsonl import JsonLinesExporter
from .pdf import PdfExporter
from .spreadsheet import CsvExporter

__all__ = ["CONTENT_TYPES", "FORMAT", "FORMATS", "ExportFilter", "ExportResult", "manifest", "write"]

EXPORTERS: dict[str, type[Exporter]] = {
    exporter.format: exporter for exporter in (CsvExporter, JsonLinesExporter, PdfExporter)
}


def write(fmt: str, flt: ExportFilter, target: IO[bytes]) -> ExportResult:
    """Write the entries ``flt`` selects to ``target`` in ``fmt`` (one of FORMATS)."""
    if fmt not in EXPORTERS:
        raise ValueError(f"unknown export format {fmt!r}; choose one of {', '.join(FORMATS)}")
    return EXPORTERS[fmt](flt, target).write()
