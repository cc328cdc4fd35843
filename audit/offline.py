"""Verify an export file with nothing but the public key: no Django, no database.

JSON Lines and CSV exports are checked line by line (each entry hashes to its
entry_hash, links to the previous one where seq is contiguous, and — in CSV — the
readable columns match the hashed bytes), then the body digest, the export signature
and the covering checkpoint signature. The first problem is reported with its line.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import time
from dataclasses import dataclass
from hashlib import sha256
from pathlib import Path
from typing import Any

from . import canonical as canon
from . import lines, signing

FORMAT = "guardia-audit-export/1"


def manifest(header_sha256: str, rows_sha256: str) -> str:
    """The digest a JSON Lines export signs (the same definition as audit.exports.manifest)."""
    return hashlib.sha256(f"{header_sha256}\n{rows_sha256}".encode("ascii")).hexdigest()


@dataclass
class ExportCheck:
    ok: bool = True
    format: str = ""
    entries: int = 0
    line: int | None = None
    problem: str = ""
    chain_ok_at_export: bool | None = None
    checkpoint_seq: int | None = None
    seconds: float = 0.0

    def fail(self, line: int | None, problem: str) -> ExportCheck:
        if self.ok:  # keep the first problem
            self.ok, self.line, self.problem = False, line, problem
        return self

    def message(self) -> str:
        if not self.ok:
            where = f"line {self.line}: " if self.line else ""
            return f"FAILED {where}{self.problem}"
        note = "" if self.chain_ok_at_export else " (the export itself states the chain was BROKEN when exported)"
        return f"OK: {self.entries} entries verified against checkpoint seq {self.checkpoint_seq}{note}"


def _split_trailer(path: Path) -> tuple[int, bytes]:
    """(offset where the last line starts, the last line)."""
    size = path.stat().st_size
    with path.open("rb") as fh:
        back = min(size, 1 << 16)
        fh.seek(size - back)
        tail = fh.read()
    start = tail.rstrip(b"\n").rfind(b"\n") + 1
    return size - back + start, tail[start:]


def _body_digest(path: Path, length: int) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        remaining = length
        while remaining > 0:
            block = fh.read(min(remaining, 1 << 20))
            if not block:
                break
            digest.update(block)
            remaining -= len(block)
    return digest.hexdigest()


class _Chain:
    """Links consecutive entries: contiguous seqs must chain, gaps (filters) may not."""

    def __init__(self) -> None:
        self.last_seq, self.last_hash = 0, b""

    def add(self, seq: int, prev: bytes, digest: bytes) -> str | None:
        if seq <= self.last_seq:
            return f"seq {seq} does not increase (previous {self.last_seq})"
        if seq == self.last_seq + 1 and self.last_hash and prev != self.last_hash:
            return f"entry {seq} does not chain to entry {self.last_seq}"
        self.last_seq, self.last_hash = seq, digest
        return None


def verify_export(path: str | Path, public_key) -> ExportCheck:
    started = time.perf_counter()
    file = Path(path)
    with file.open("rb") as fh:
        head = fh.read(3)
    check = ExportCheck(format="csv" if head.startswith(b"\xef\xbb\xbf") else "jsonl")
    try:
        trailer_at, trailer_bytes = _split_trailer(file)
        if check.format == "csv":
            trailer = _csv_entries(file, trailer_at, trailer_bytes, check)
        else:
            trailer = _jsonl_entries(file, trailer_at, trailer_bytes, check)
        if check.ok and trailer is not None:
            _check_trailer(file, trailer_at, trailer, public_key, check)
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        check.fail(None, f"unreadable export: {exc}")
    check.seconds = time.perf_counter() - started
    return check


def _jsonl_entries(file: Path, trailer_at: int, trailer_bytes: bytes, check: ExportCheck) -> dict | None:
    """The hot loop of offline verification: slices each line (fixed layout) instead of parsing JSON."""
    rows_digest = hashlib.sha256()
    last_seq, last_hash, count = 0, b"", 0
    with file.open("rb") as fh:
        header = fh.readline()
        try:
            if json.loads(header).get("format") != FORMAT:
                return check.fail(1, "header line is not a GUARDiA export header") and None
        except ValueError:
            return check.fail(1, "header line is not valid JSON") and None
        position, number = len(header), 1
        parse, update = lines.parse_entry_line, rows_digest.update
        p1, p2, ok, ok_len = lines._P1, lines._P2, lines.OK_MIDDLE, 173 + len(lines.OK_MIDDLE)
        for line in fh:
            number += 1
            if position >= trailer_at:
                break
            position += len(line)
            # Fast path for the common line (integrity ok): offsets, no slicing of the prefix.
            if line.startswith(p1) and line.startswith(p2, 93) and line.startswith(ok, 173) and line.endswith(b"}}\n"):
                prev, digest, integrity, text = line[29:93], line[109:173], "ok", line[ok_len:-2]
            else:
                try:
                    prev, digest, integrity, text = parse(line)
                except ValueError as exc:
                    return check.fail(number, f"malformed entry line ({exc})") and None
            try:
                seq = int(text[7 : text.index(b",", 7)]) if text.startswith(b'{"seq":') else -1
            except ValueError:
                return check.fail(number, "entry does not start with its seq") and None
            if integrity is None:
                return check.fail(number, "entry line has no integrity state") and None
            if sha256(text + prev).hexdigest().encode() != digest:
                return check.fail(number, "entry does not hash to its entry_hash (content changed)") and None
            if seq <= last_seq:
                return check.fail(number, f"seq {seq} does not increase (previous {last_seq})") and None
            if seq == last_seq + 1 and last_hash and prev != last_hash:
                return check.fail(number, f"entry {seq} does not chain to entry {last_seq}") and None
            last_seq, last_hash = seq, digest
            update(b"%s %s\n" % (digest, integrity.encode()))
            count += 1
    check.entries = count
    chain = _Chain()
    chain.last_seq, chain.last_hash = last_seq, last_hash
    trailer = _parse_trailer(trailer_bytes, number, chain, check)
    if trailer is not None:
        trailer["_computed"] = {
            "header_sha256": hashlib.sha256(header).hexdigest(),
            "rows_sha256": rows_digest.hexdigest(),
        }
    return trailer


def _csv_entries(file: Path, trailer_at: int, trailer_bytes: bytes, check: ExportCheck) -> dict | None:
    chain, count = _Chain(), 0
    with file.open("rb") as raw:
        body = io.TextIOWrapper(io.BufferedReader(_Limited(raw, trailer_at)), encoding="utf-8-sig", newline="")
        reader = csv.reader(body)
        columns = next(reader, None)
        if columns != lines.CSV_COLUMNS:
            return check.fail(1, "column header row differs from the export format") and None
        for row in reader:
            number = reader.line_num
            problem = _csv_row_problem(row)
            if problem is None:
                problem = chain.add(int(row[0]), row[8].encode(), row[9].encode())
            if problem:
                return check.fail(number, problem) and None
            count += 1
    check.entries = count
    number = (reader.line_num if count else 1) + 1
    try:
        cells = next(csv.reader([trailer_bytes.decode("utf-8").rstrip("\n")]))
    except (StopIteration, csv.Error):
        cells = []
    if len(cells) != 2 or cells[0] != "#trailer":
        return check.fail(number, "trailer row missing or malformed") and None
    return _parse_trailer(cells[1].encode(), number, chain, check)


def _csv_row_problem(row: list[str]) -> str | None:
    if len(row) != 12:
        return f"expected 12 columns, found {len(row)}"
    text, prev, digest = row[11].encode("utf-8"), row[8], row[9]
    if sha256(text + prev.encode()).hexdigest() != digest:
        return "entry does not hash to its entry_hash (content changed)"
    try:
        entry = canon.parse(text)
    except ValueError as exc:
        return f"canonical column is not an entry ({exc})"
    payload = entry["payload"]
    shown = [
        str(entry["seq"]), entry["time"], entry["task"], entry["institution"],
        str(payload.get("server_group", "")), entry["actor"], entry["action"], entry["result_code"],
    ]  # fmt: skip
    for name, value, expected in zip(
        ("seq", "time", "task", "institution", "server_group", "actor", "action", "result"), row, shown, strict=False
    ):
        if value != expected:
            return f"column {name} ({value!r}) differs from the hashed entry ({expected!r})"
    if row[10] not in ("ok", "broken", "unverified"):
        return f"integrity column has an unknown value {row[10]!r}"
    return None


class _Limited(io.RawIOBase):
    """Reads a file only up to `limit` bytes (the body, without the trailer row)."""

    def __init__(self, raw, limit: int):
        self.raw, self.left = raw, limit

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        if self.left <= 0:
            return 0
        data = self.raw.read(min(len(buffer), self.left))
        buffer[: len(data)] = data
        self.left -= len(data)
        return len(data)


def _parse_trailer(trailer_bytes: bytes, number: int, chain: _Chain, check: ExportCheck) -> dict | None:
    try:
        trailer = json.loads(trailer_bytes)
    except ValueError:
        return check.fail(number, "trailer is not valid JSON") and None
    if not isinstance(trailer, dict) or trailer.get("type") != "trailer" or trailer.get("format") != FORMAT:
        return check.fail(number, "trailer missing or not a GUARDiA export trailer") and None
    if trailer.get("count") != check.entries:
        return check.fail(number, f"trailer says {trailer.get('count')} entries, the file has {check.entries}") and None
    trailer["_line"], trailer["_last_seq"], trailer["_last_hash"] = number, chain.last_seq, chain.last_hash
    return trailer


def _check_trailer(file: Path, trailer_at: int, trailer: dict[str, Any], public_key, check: ExportCheck) -> None:
    number = trailer["_line"]
    computed = trailer.get("_computed")
    if computed:  # JSON Lines: every entry line was checked byte for byte; the manifest binds the rest
        if computed["header_sha256"] != trailer.get("header_sha256"):
            check.fail(1, "header line differs from the signed export")
            return
        if computed["rows_sha256"] != trailer.get("rows_sha256"):
            check.fail(None, "the entries' hashes or integrity states differ from the signed export")
            return
        signed_digest = manifest(computed["header_sha256"], computed["rows_sha256"])
        if signed_digest != trailer.get("manifest_sha256"):
            check.fail(number, "manifest digest in the trailer is wrong")
            return
    else:
        signed_digest = _body_digest(file, trailer_at)
        if signed_digest != trailer.get("body_sha256"):
            # Every row checked out, so what changed is the column header or the row structure.
            check.fail(1, "body digest differs from the signed trailer: the header row or line structure changed")
            return
    cp = trailer.get("checkpoint") or {}
    if not signing.verify(public_key, trailer.get("signature", ""), signing.export_message(
            signed_digest, cp.get("signature", ""))):  # fmt: skip
        check.fail(number, "export signature does not verify with this public key")
        return
    if not cp:
        check.fail(number, "export carries no checkpoint")
        return
    message = signing.checkpoint_message(
        int(cp["seq"]), str(cp["entry_hash"]), str(cp["time"]), str(cp.get("merkle_root") or "")
    )
    if not signing.verify(public_key, cp.get("signature", ""), message):
        check.fail(number, "checkpoint signature does not verify with this public key")
        return
    last_seq, last_hash = trailer["_last_seq"], trailer["_last_hash"]
    if cp["seq"] < last_seq:
        check.fail(number, f"checkpoint seq {cp['seq']} does not cover the last entry {last_seq}")
        return
    if cp["seq"] == last_seq and cp["entry_hash"].encode() != last_hash:
        check.fail(number, f"entry {last_seq} differs from the signed checkpoint")
        return
    check.checkpoint_seq = cp["seq"]
    check.chain_ok_at_export = bool((trailer.get("chain") or {}).get("ok"))


def main(argv: list[str] | None = None) -> int:
    """`python -m audit.offline FILE --public-key KEY`: the same check without Django at all.

    FILE is an export (CSV / JSON Lines) or an inclusion proof (audit.proof_check), told
    apart by its first bytes."""
    import argparse

    from . import proof_check

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("file")
    parser.add_argument("--public-key", required=True)
    args = parser.parse_args(argv)
    key = signing.load_public_key(args.public_key)
    if proof_check.is_proof_file(args.file):
        check = proof_check.check_proof_file(args.file, key)
    else:
        check = verify_export(args.file, key)
    print(check.message())
    return 0 if check.ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
