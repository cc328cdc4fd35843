"""The JSON Lines export: a header line, one fixed-layout line per entry (audit/lines.py),
and a trailer line whose signature covers a manifest of the header and the rows."""

from __future__ import annotations

import hashlib
import json
from typing import Any

from .. import lines
from ..offline import manifest  # one definition, shared with the offline verifier
from .base import Exporter, ExportResult, Row, rows_line


class JsonLinesExporter(Exporter):
    format = "jsonl"

    def start(self) -> None:
        header = (json.dumps(self.header(), separators=(",", ":")) + "\n").encode()
        self.target.write(header)
        self.header_sha256 = hashlib.sha256(header).hexdigest()
        self.rows_digest = hashlib.sha256()

    def entry(self, row: Row) -> None:
        self.target.write(lines.entry_line(row.canonical, row.prev_hash, row.entry_hash, row.integrity).encode("utf-8"))
        self.rows_digest.update(rows_line(row.entry_hash, row.integrity))

    def digest(self) -> tuple[str, str, dict[str, Any]]:
        rows_sha256 = self.rows_digest.hexdigest()
        extra = {"header_sha256": self.header_sha256, "rows_sha256": rows_sha256}
        return "manifest_sha256", manifest(self.header_sha256, rows_sha256), extra

    def finish(self, result: ExportResult) -> None:
        self.target.write((json.dumps(result.trailer, separators=(",", ":")) + "\n").encode())
