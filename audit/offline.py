"""Verify an export file with nothing but the public key: no Django, no database.

JSON Lines and CSV exports are checked line by line (each entry hashes to its
entry_hash, links to the previous one where seq is contiguous, and — in CSV — the
readable columns match the hashed bytes), then the trailer's signature (it covers every
trailer field), the digests it states, the covering checkpoint signature, and finally
the chain itself: a gap in an export that must be contiguous, an entry the export
marks broken, or a trailer stating the chain was broken when exported all fail. The
first problem is reported with its line; the exit status is non-zero.

Exports of format version 1 (their trailer signed only the body digest) are refused
with a message saying so.
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

GENESIS = canon.GENESIS.encode("ascii")

FORMAT = "guardia-audit-export/2"
LEGACY_FORMATS = ("guardia-audit-export/1",)
LEGACY_MESSAGE = (
    "export format {fmt} is refused: its trailer (the chain verdict, counts and filters) was not signed, "
    "so it cannot be trusted; export the period again with this version of GUARDiA"
)


def manifest(header_sha256: str, rows_sha256: str) -> str:
    """The digest a JSON Lines export signs: its header and its rows together (audit.exports uses this one)."""
    return hashlib.sha256(f"{header_sha256}\n{rows_sha256}".encode("ascii")).hexdigest()


class _Rejected(Exception):
    """The first problem found in an export: where it is, and what it is."""

    def __init__(self, line: int | None, problem: str):
        super().__init__(problem)
        self.line, self.problem = line, problem


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
        return f"OK: {self.entries} entries verified against checkpoint seq {self.checkpoint_seq}; chain intact"


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
    """Links consecutive entries: contiguous seqs must chain. Gaps are noted here and
    judged once the signed trailer says whether this export may have them (filters)."""

    def __init__(self) -> None:
        self.last_seq, self.last_hash = 0, b""
        self.first_seq: int | None = None
        self.gap: tuple[int, int, int] | None = None  # (line, seq, previous seq)
        self.broken: tuple[int, int] | None = None  # (line, seq) of the first entry marked broken

    def add(self, seq: int, prev: bytes, digest: bytes, number: int = 0, integrity: str = "ok") -> str | None:
        if seq <= self.last_seq:
            return f"seq {seq} does not increase (previous {self.last_seq})"
        if seq == 1 and prev != GENESIS:
            return "entry 1 does not start from the genesis hash"
        if seq == self.last_seq + 1 and self.last_hash and prev != self.last_hash:
            return f"entry {seq} does not chain to entry {self.last_seq}"
        if self.first_seq is None:
            self.first_seq = seq
        elif seq != self.last_seq + 1 and self.gap is None:
            self.gap = (number, seq, self.last_seq)
        if integrity != "ok" and self.broken is None:
            self.broken = (number, seq)
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
        _check_trailer(file, trailer_at, trailer, public_key, check)
    except _Rejected as rejected:
        check.fail(rejected.line, rejected.problem)
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        check.fail(None, f"unreadable export: {exc}")
    check.seconds = time.perf_counter() - started
    return check


def _jsonl_entries(file: Path, trailer_at: int, trailer_bytes: bytes, check: ExportCheck) -> _Trailer:
    """The hot loop of offline verification: slices each line (fixed layout) instead of parsing JSON."""
    rows_digest = hashlib.sha256()
    last_seq, last_hash, count = 0, b"", 0
    with file.open("rb") as fh:
        header = fh.readline()
        try:
            fmt = json.loads(header).get("format")
        except (ValueError, AttributeError):
            raise _Rejected(1, "header line is not valid JSON") from None
        if fmt in LEGACY_FORMATS:
            raise _Rejected(1, LEGACY_MESSAGE.format(fmt=fmt))
        if fmt != FORMAT:
            raise _Rejected(1, "header line is not a GUARDiA export header")
        chain = _Chain()
        position, number = len(header), 1
        parse, update = lines.parse_entry_line, rows_digest.update
        p1, p2, ok, ok_len = lines._P1, lines._P2, lines.OK_MIDDLE, 173 + len(lines.OK_MIDDLE)
        integrity: str | None
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
                    raise _Rejected(number, f"malformed entry line ({exc})") from None
            try:
                seq = int(text[7 : text.index(b",", 7)]) if text.startswith(b'{"seq":') else -1
            except ValueError:
                raise _Rejected(number, "entry does not start with its seq") from None
            if integrity is None:
                raise _Rejected(number, "entry line has no integrity state")
            if sha256(text + prev).hexdigest().encode() != digest:
                raise _Rejected(number, "entry does not hash to its entry_hash (content changed)")
            if seq == last_seq + 1 and last_hash and prev != last_hash:
                raise _Rejected(number, f"entry {seq} does not chain to entry {last_seq}")
            if seq != last_seq + 1 or integrity != "ok" or seq == 1:  # the rare cases: gaps, breaks, genesis
                problem = chain.add(seq, prev, digest, number, integrity)
                if problem:
                    raise _Rejected(number, problem)
            else:
                chain.last_seq, chain.last_hash = seq, digest
            last_seq, last_hash = seq, digest
            update(b"%s %s\n" % (digest, integrity.encode()))
            count += 1
    check.entries = count
    trailer = _parse_trailer(trailer_bytes, number, chain)
    if trailer is not None:
        trailer.computed = {
            "header_sha256": hashlib.sha256(header).hexdigest(),
            "rows_sha256": rows_digest.hexdigest(),
        }
    return trailer


def _csv_entries(file: Path, trailer_at: int, trailer_bytes: bytes, check: ExportCheck) -> _Trailer:
    chain, count = _Chain(), 0
    with file.open("rb") as raw:
        body = io.TextIOWrapper(io.BufferedReader(_Limited(raw, trailer_at)), encoding="utf-8-sig", newline="")
        reader = csv.reader(body)
        columns = next(reader, None)
        if columns != lines.CSV_COLUMNS:
            raise _Rejected(1, "column header row differs from the export format")
        for row in reader:
            number = reader.line_num
            problem = _csv_row_problem(row)
            if problem is None:
                problem = chain.add(int(row[0]), row[8].encode(), row[9].encode(), number, row[10])
            if problem:
                raise _Rejected(number, problem)
            count += 1
    check.entries = count
    number = (reader.line_num if count else 1) + 1
    try:
        cells = next(csv.reader([trailer_bytes.decode("utf-8").rstrip("\n")]))
    except (StopIteration, csv.Error):
        cells = []
    if len(cells) != 2 or cells[0] != "#trailer":
        raise _Rejected(number, "trailer row missing or malformed")
    return _parse_trailer(cells[1].encode(), number, chain)


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
        str(entry["seq"]), lines.kst_text(entry["time"]), entry["task"], entry["institution"],
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


@dataclass
class _Trailer:
    fields: dict[str, Any]  # exactly as read: what the signature covers
    line: int
    chain: _Chain
    computed: dict[str, str] | None = None  # JSON Lines: digests recomputed from the file


def _parse_trailer(trailer_bytes: bytes, number: int, chain: _Chain) -> _Trailer:
    try:
        fields = json.loads(trailer_bytes)
    except ValueError:
        raise _Rejected(number, "trailer is not valid JSON") from None
    if not isinstance(fields, dict) or fields.get("type") != "trailer":
        raise _Rejected(number, "trailer missing or not a GUARDiA export trailer")
    if fields.get("format") in LEGACY_FORMATS:
        raise _Rejected(number, LEGACY_MESSAGE.format(fmt=fields["format"]))
    if fields.get("format") != FORMAT:
        raise _Rejected(number, "trailer missing or not a GUARDiA export trailer")
    return _Trailer(fields, number, chain)


def _check_trailer(file: Path, trailer_at: int, trailer: _Trailer, public_key, check: ExportCheck) -> None:
    fields, number, chain = trailer.fields, trailer.line, trailer.chain
    # 1. The signature covers every trailer field, so everything read from it below is authentic.
    if not signing.verify(public_key, str(fields.get("signature", "")), signing.trailer_message(fields)):
        raise _Rejected(number, "trailer signature does not verify with this public key "
                        "(a trailer field was changed, or another key signed it)")  # fmt: skip
    # 2. The file holds what the signed trailer describes.
    if fields.get("contiguous", True) and chain.gap:
        line, seq, previous = chain.gap
        missing = seq - previous - 1
        raise _Rejected(line, f"seq {seq} follows seq {previous}: {missing} entries of the chain are missing")
    if fields.get("count") != check.entries:
        raise _Rejected(number, f"trailer says {fields.get('count')} entries, the file has {check.entries}")
    if check.entries and (fields.get("first_seq"), fields.get("last_seq")) != (chain.first_seq, chain.last_seq):
        raise _Rejected(number, f"trailer says seq {fields.get('first_seq')}..{fields.get('last_seq')}, "
                        f"the file has {chain.first_seq}..{chain.last_seq}")  # fmt: skip
    computed = trailer.computed
    if computed:  # JSON Lines: every entry line was checked byte for byte; the manifest binds the rest
        if computed["header_sha256"] != fields.get("header_sha256"):
            raise _Rejected(1, "header line differs from the signed export")
        if computed["rows_sha256"] != fields.get("rows_sha256"):
            raise _Rejected(None, "the entries' hashes or integrity states differ from the signed export")
        if manifest(computed["header_sha256"], computed["rows_sha256"]) != fields.get("manifest_sha256"):
            raise _Rejected(number, "manifest digest in the trailer is wrong")
    elif _body_digest(file, trailer_at) != fields.get("body_sha256"):
        # Every row checked out, so what changed is the column header or the row structure.
        raise _Rejected(1, "body digest differs from the signed trailer: the header row or line structure changed")
    # 3. The checkpoint that anchors the last entry.
    cp = fields.get("checkpoint") or {}
    if not cp:
        raise _Rejected(number, "export carries no checkpoint")
    message = signing.checkpoint_message(
        int(cp["seq"]), str(cp["entry_hash"]), str(cp["time"]), str(cp.get("merkle_root") or "")
    )
    if not signing.verify(public_key, cp.get("signature", ""), message):
        raise _Rejected(number, "checkpoint signature does not verify with this public key")
    if cp["seq"] < chain.last_seq:
        raise _Rejected(number, f"checkpoint seq {cp['seq']} does not cover the last entry {chain.last_seq}")
    if cp["seq"] == chain.last_seq and cp["entry_hash"].encode() != chain.last_hash:
        raise _Rejected(number, f"entry {chain.last_seq} differs from the signed checkpoint")
    # 4. The chain itself: an authentic export of a broken chain is still a failed verification.
    verdict = fields.get("chain") or {}
    why = f"the chain was broken at seq {verdict.get('first_broken_seq')} ({verdict.get('kind') or 'unknown'}"
    why += f": {verdict['detail']})" if verdict.get("detail") else ")"
    if chain.broken:
        line, seq = chain.broken
        raise _Rejected(line, f"entry {seq} is marked broken: {why} when this export was made")
    if verdict.get("ok") is not True:
        raise _Rejected(number, f"the signed trailer states {why} when this export was made")
    check.checkpoint_seq = cp["seq"]
    check.chain_ok_at_export = True


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
    check: ExportCheck | proof_check.ProofCheck
    if proof_check.is_proof_file(args.file):
        check = proof_check.check_proof_file(args.file, key)
    else:
        check = verify_export(args.file, key)
    print(check.message())
    return 0 if check.ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
