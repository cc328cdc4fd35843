"""The CSV export: the seed's report table for a spreadsheet (UTF-8 with a BOM, so Excel
reads the Korean text), ending in a ``#trailer`` row whose signature covers every byte
written before it."""

from __future__ import annotations

import csv
import hashlib
import io
import json
from typing import IO, Any

from .. import canonical as canon
from .. import lines
from .base import Exporter, ExportFilter, ExportResult, Row

CSV_COLUMNS = lines.CSV_COLUMNS
FLUSH_EVERY = 200  # rows buffered between writes to the target (a streamed export sends them on)


class _HashingWriter:
    """Writes through to the target while hashing what it wrote (the signed body)."""

    def __init__(self, target: IO[bytes]):
        self.target, self.digest = target, hashlib.sha256()

    def write(self, data: bytes) -> None:
        self.digest.update(data)
        self.target.write(data)


def report_row(row: Row) -> list[str]:
    """One row of the seed's report table, read from the canonical bytes."""
    entry = canon.parse(row.canonical)
    payload = entry["payload"]
    return [
        str(entry["seq"]), lines.kst_text(entry["time"]), entry["task"], entry["institution"],
        str(payload.get("server_group", "")), entry["actor"], entry["action"], entry["result_code"],
        row.prev_hash, row.entry_hash, row.integrity, row.canonical,
    ]  # fmt: skip


class CsvExporter(Exporter):
    format = "csv"

    def __init__(self, flt: ExportFilter, target: IO[bytes]):
        super().__init__(flt, target)
        self.body = _HashingWriter(target)
        self.buffer = io.StringIO()
        self.writer = csv.writer(self.buffer, lineterminator="\n")
        self.rows = 0

    def _flush(self) -> None:
        self.body.write(self.buffer.getvalue().encode("utf-8"))
        self.buffer.seek(0)
        self.buffer.truncate()

    def start(self) -> None:
        self.buffer.write("\ufeff")  # Excel opens UTF-8 Korean text correctly only with a BOM
        self.writer.writerow(CSV_COLUMNS)

    def entry(self, row: Row) -> None:
        self.writer.writerow(report_row(row))
        self.rows += 1
        if self.rows % FLUSH_EVERY == 0:
            self._flush()

    def digest(self) -> tuple[str, str, dict[str, Any]]:
        self._flush()
        return "body_sha256", self.body.digest.hexdigest(), {}

    def finish(self, result: ExportResult) -> None:
        # The trailer row is written past the hashing writer: it carries the body's digest.
        self.writer.writerow(["#trailer", json.dumps(result.trailer, separators=(",", ":"))])
        self.target.write(self.buffer.getvalue().encode("utf-8"))
