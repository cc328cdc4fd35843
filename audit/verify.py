"""Streaming verification of the chain in the database.

One pass over the rows in seq order, fetched in batches (constant memory). Per row:
1. the stored canonical bytes hash, with the stored prev_hash, to the stored entry_hash;
2. the readable columns rebuild exactly those canonical bytes (an edit to a column alone
   would otherwise pass unseen);
3. seq follows the previous seq and prev_hash is the previous entry_hash;
4. where a signed checkpoint exists for this seq, the entry_hash matches it, and where it
   carries a Merkle root (version 2), the institution sub-chain heads recomputed from the
   entries equal its signed leaves (audit.merkle), naming the institution that diverged.
Every checkpoint signature (and every version 2 checkpoint's leaves against its root) is
checked first. The first failure is reported with its seq
and the kind of break; see docs/audit.md for how each kind is told apart.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from hashlib import sha256
from json.encoder import encode_basestring as enc
from typing import Any

from django.db import connection

from . import canonical as canon
from . import merkle, signing, subchains
from .models import AuditCheckpoint, AuditEntry, ChainHead

LOOKAHEAD = 1000
# The canonical time text computed by the database, so the hot loop does no date work.
# SQLite stores Django datetimes as naive UTC text and drops a zero fraction.
_TIME_SQL = {
    "sqlite": "(substr(created_at, 1, 10) || 'T' || substr(created_at, 12, 8) || '.' || "
    "CASE WHEN length(created_at) > 19 THEN substr(created_at, 21, 6) ELSE '000000' END || 'Z')",
    "postgresql": "to_char(created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"')",
}
_COLUMNS = (
    "seq, {created}, actor, actor_id, action, institution, task, target, command, "
    "result_code, result_hash, payload, prev_hash, entry_hash, canonical"
)


@dataclass
class VerifyReport:
    ok: bool = True
    entries: int = 0
    checkpoints: int = 0
    head_seq: int = 0
    last_checkpoint_seq: int | None = None
    first_broken_seq: int | None = None
    # modified | deleted | inserted | reordered | truncated | rewritten | checkpoint_forged | subchain_diverged
    kind: str = ""
    detail: str = ""
    # The institution sub-chain(s) the break lies in ("" is the sub-chain of entries without one).
    institutions: list[str] | None = None
    # 0: the whole chain was walked. Otherwise the walk started at this signed checkpoint
    # (see resume_point): the entries before it were not re-read by this run.
    from_seq: int = 0
    seconds: float = 0.0

    @property
    def rate(self) -> float:
        return self.entries / self.seconds if self.seconds else 0.0

    def broken(self, seq: int | None, kind: str, detail: str) -> VerifyReport:
        self.ok, self.first_broken_seq, self.kind, self.detail = False, seq, kind, detail
        return self

    @property
    def summary(self) -> str:
        """One line for people (alerts, the global-stop reason)."""
        return self.message()

    def as_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["seconds"] = round(self.seconds, 3)
        return data

    def message(self) -> str:
        if self.ok:
            return (
                f"OK: {self.entries} entries, {self.checkpoints} signed checkpoints verified (head seq {self.head_seq})"
            )
        names = ""
        if self.institutions:
            names = "; sub-chain of institution " + ", ".join(repr(n) for n in self.institutions)
        return f"BROKEN at seq {self.first_broken_seq}: {self.kind} - {self.detail}{names}"


def _rows(batch: int, limit: int, after: int = 0) -> Iterator[tuple]:
    table = connection.ops.quote_name(AuditEntry._meta.db_table)
    # chunked_cursor is a server-side cursor on PostgreSQL, so rows stream instead of
    # being loaded whole; SQLite steps its cursor lazily anyway.
    created = _TIME_SQL.get(connection.vendor, "created_at")
    with connection.chunked_cursor() as cursor:
        cursor.execute(
            f"SELECT {_COLUMNS.format(created=created)} FROM {table} WHERE seq > %s AND seq <= %s ORDER BY seq",
            [after, limit],
        )
        while chunk := cursor.fetchmany(batch):
            if connection.vendor in _TIME_SQL:
                yield from chunk
            else:  # other backends hand back datetimes
                yield from ((r[0], canon.time_text(r[1]), *r[2:]) for r in chunk)


def _hashes(row: tuple) -> bool:
    """The stored canonical bytes, with the stored prev_hash, hash to the stored entry_hash."""
    return sha256((row[14] + row[12]).encode()).hexdigest() == row[13]


def _columns_match(row: tuple) -> bool:
    """The readable columns rebuild exactly the stored canonical bytes (the payload as
    stored first, then re-canonicalised, for backends that hand back reordered JSON)."""
    seq, created, actor, actor_id, action, inst, task, target, command, rc, rh, payload = row[:12]
    rebuilt = canon._TEMPLATE % (
        seq, created, enc(actor), "null" if actor_id is None else actor_id, enc(action),
        enc(inst), enc(task), enc(target), enc(command), enc(rc), enc(rh), payload,
    )  # fmt: skip
    return rebuilt == row[14] or _columns_text(row, _payload_canonical(payload)) == row[14]


def _columns_text(row: tuple, payload: str) -> str:
    (seq, created, actor, actor_id, action, inst, task, target, command, rc, rh) = row[:11]
    return canon._TEMPLATE % (
        seq, created, enc(actor), "null" if actor_id is None else actor_id, enc(action),
        enc(inst), enc(task), enc(target), enc(command), enc(rc), enc(rh), payload,
    )  # fmt: skip


def _payload_canonical(value: Any) -> str:
    if isinstance(value, str):
        value = json.loads(value)
    return canon.payload_text(value)


def resume_point() -> int:
    """The latest signed checkpoint at or below the head, where a resumed walk starts; 0
    (walk from seq 1) when the latest verification run (an ``audit.verify`` entry) found a
    break, so that break is placed exactly again.

    Resuming there re-checks that checkpoint's signature and its entry's hash, so the walk
    is anchored to signed bytes and re-hashes everything appended since (fewer entries than
    the checkpoint interval). What it skips is the part before the anchor: the scheduled
    whole-chain run checks that (docs/audit.md says the trade-off).
    """
    latest = AuditEntry.objects.filter(action="audit.verify").order_by("-seq").values_list("result_code", flat=True)
    if (latest.first() or "ok") != "ok":
        return 0
    head = ChainHead.objects.filter(id=1).values_list("seq", flat=True).first() or 0
    return AuditCheckpoint.objects.filter(seq__lte=head).order_by("-seq").values_list("seq", flat=True).first() or 0


def verify_chain(*, public_key=None, batch: int = 5000, resume: bool = False) -> VerifyReport:
    """Walk the chain. ``resume=True`` (exports) starts at ``resume_point()`` instead of seq 1:
    the same checks from there on, and the report says where it started (``from_seq``)."""
    started = time.perf_counter()
    report = VerifyReport()
    try:
        key = public_key or signing.own_public_key()
        start = resume_point() if resume else 0
        resumed = _walk(report, key, batch, start=start) if start else None
        if resumed is None or not resumed.ok:
            # No anchor to resume from, or a break: walk from seq 1 so a break is placed exactly.
            report = VerifyReport()
            _walk(report, key, batch)
        if not report.ok and report.institutions is None and report.kind != "checkpoint_forged":
            report.institutions = _institutions_of_break(report.first_broken_seq)
        return report
    finally:
        report.seconds = time.perf_counter() - started


def _walk(report: VerifyReport, public_key, batch: int, start: int = 0) -> VerifyReport | None:
    """One pass from seq 1, or from the signed checkpoint at ``start``; None when ``start``
    cannot anchor the walk (no such checkpoint, its entry no longer matches it, or it has no
    Merkle leaves to seed the sub-chain heads while a later checkpoint has a root)."""
    head = ChainHead.objects.filter(id=1).values_list("seq", "entry_hash").first() or (0, canon.GENESIS)
    report.head_seq = head[0]
    checkpoints = list(
        AuditCheckpoint.objects.filter(seq__gte=start)
        .order_by("seq", "id")
        .values_list("seq", "entry_hash", "created_at", "signature", "merkle_root", "leaves")
    )
    anchor = None
    if start:
        if not checkpoints or checkpoints[0][0] != start:
            return None
        anchor = checkpoints[0]
        # The anchor entry itself: its hash as signed, its bytes and its columns intact.
        row = next(_rows(1, start, after=start - 1), None)
        if row is None or row[13] != anchor[1] or not (_hashes(row) and _columns_match(row)):
            return None
        if any(c[4] for c in checkpoints) and not anchor[4]:
            return None
    signed_leaves: dict[int, list] = {}  # position in checkpoints -> leaves (version 2 only)
    for position, (seq, digest, created, signature, root, leaves_text) in enumerate(checkpoints):
        message = signing.checkpoint_message(seq, digest, canon.time_text(created), root)
        if not signing.verify(public_key, signature, message):
            return report.broken(seq, "checkpoint_forged", f"checkpoint at seq {seq} has an invalid signature")
        if root:
            try:
                leaves = merkle.parse_leaves(leaves_text)
            except ValueError as exc:
                return report.broken(seq, "checkpoint_forged", f"checkpoint at seq {seq}: stored leaves unreadable "
                                     f"({exc})")  # fmt: skip
            if merkle.root(leaves) != root:
                return report.broken(seq, "checkpoint_forged", f"checkpoint at seq {seq}: stored leaves do not hash "
                                     "to its signed Merkle root")  # fmt: skip
            signed_leaves[position] = leaves
    report.checkpoints = len(checkpoints)
    report.last_checkpoint_seq = checkpoints[-1][0] if checkpoints else None
    limit = max([head[0]] + [c[0] for c in checkpoints[-1:]])
    cps = iter(enumerate(checkpoints))
    position, cp = next(cps, (-1, None))
    # Sub-chain heads, advanced per entry only when some checkpoint carries a root.
    sub_heads: dict[str, str] | None = {} if signed_leaves else None
    sub_counts: dict[str, int] = {}
    genesis = canon.GENESIS
    last_good_cp = 0
    prev_seq, prev_hash = 0, canon.GENESIS
    if anchor is not None:
        # The anchor's own entry was checked against it above: start after it, with the
        # sub-chain heads its signed leaves give.
        prev_seq, prev_hash, last_good_cp = anchor[0], anchor[1], anchor[0]
        if sub_heads is not None:
            for name, leaf_count, leaf_head in signed_leaves[0]:
                sub_heads[name], sub_counts[name] = leaf_head, leaf_count
        position, cp = next(cps, (-1, None))
        report.from_seq = anchor[0]
    count = 0
    rows = _rows(batch, limit, after=prev_seq)
    for row in rows:
        (seq, inst, prev_col, eh) = (row[0], row[5], row[12], row[13])
        if not _hashes(row):
            return report.broken(seq, "modified", f"entry {seq}: stored bytes do not hash to its entry_hash")
        if not _columns_match(row):
            return _column_break(report, row, rows)
        if seq != prev_seq + 1 or prev_col != prev_hash:
            return _link_break(report, seq, prev_seq, prev_hash, prev_col)
        if sub_heads is not None:
            sub_heads[inst] = sha256((eh + sub_heads.get(inst, genesis)).encode()).hexdigest()
            sub_counts[inst] = sub_counts.get(inst, 0) + 1
        while cp is not None and cp[0] <= seq:
            if cp[0] == seq and cp[1] != eh:
                return report.broken(
                    last_good_cp + 1,
                    "rewritten",
                    f"entry {seq} no longer matches the signed checkpoint at seq {seq}: the chain after seq "
                    f"{last_good_cp} was recomputed",
                )
            if cp[0] == seq and position in signed_leaves and sub_heads is not None:
                names = _diverged(signed_leaves[position], sub_heads, sub_counts)
                if names:
                    report.institutions = names
                    return report.broken(
                        seq,
                        "subchain_diverged",
                        f"the institution sub-chain heads at seq {seq} differ from the signed leaves of its checkpoint",
                    )
            last_good_cp = cp[0]
            position, cp = next(cps, (-1, None))
        prev_seq, prev_hash = seq, eh
        count += 1
    report.entries = count
    if cp is not None:
        return report.broken(
            prev_seq + 1,
            "truncated",
            f"the chain ends at seq {prev_seq} but a signed checkpoint covers seq {report.last_checkpoint_seq}",
        )
    if head[0] > prev_seq:
        return report.broken(prev_seq + 1, "truncated", f"the chain ends at seq {prev_seq} but its head is {head[0]}")
    if head[0] == prev_seq and head[1] != prev_hash:
        return report.broken(prev_seq, "rewritten", f"entry {prev_seq} differs from the recorded chain head")
    return report


def _diverged(signed: list, heads: dict[str, str], counts: dict[str, int]) -> list[str]:
    return merkle.diverged(signed, [(name, counts[name], heads[name]) for name in sorted(heads)])


def _institutions_of_break(seq: int | None) -> list[str]:
    """Which sub-chain a break lies in: those that no longer reach the next signed leaves,
    else the broken entry's own institution (read from its hashed bytes when they parse)."""
    if seq is None:
        return []
    names = subchains.attribute(seq)
    if names:
        return names
    row = AuditEntry.objects.filter(seq=seq).values_list("institution", "canonical").first()
    if row is None:
        return []
    try:
        return [canon.parse(row[1])["institution"]]
    except ValueError:
        return [row[0]]


def _column_break(report: VerifyReport, row: tuple, rows: Iterator[tuple]) -> VerifyReport:
    """The canonical bytes are intact but the readable columns differ from them."""
    seq, text = row[0], row[14]
    try:
        signed = canon.parse(text)
    except ValueError:
        return report.broken(seq, "modified", f"entry {seq}: stored canonical bytes are not a valid entry")
    columns = json.loads(_columns_text(row, _payload_canonical(row[11])))
    changed = [name for name in canon.FIELDS if columns[name] != signed[name]]
    if changed != ["seq"]:
        detail = f"entry {seq}: column(s) {', '.join(changed)} differ from the hashed entry"
        return report.broken(seq, "modified", detail)
    original = signed["seq"]
    if original < seq:
        # Everything from here on moved up: rows were inserted before this entry.
        return report.broken(
            original,
            "inserted",
            f"entry hashed as seq {original} sits at seq {seq}: {seq - original} row(s) inserted at seq {original}",
        )
    # The entry that belongs here sits later: a swap/move if it is found, else a deletion.
    for ahead, later in enumerate(rows, start=1):
        if canon.seq_of(later[14].encode()) == seq:
            return report.broken(
                seq,
                "reordered",
                f"entries at seq {seq} and {later[0]} are out of order (hashed as {original} and {seq})",
            )
        if ahead >= LOOKAHEAD:
            break
    return report.broken(
        seq, "deleted", f"entry hashed as seq {original} sits at seq {seq}: entries were deleted and renumbered"
    )


def _link_break(report: VerifyReport, seq: int, prev_seq: int, prev_hash: str, prev_col: str) -> VerifyReport:
    if seq > prev_seq + 1:
        missing = f"{prev_seq + 1}" if seq == prev_seq + 2 else f"{prev_seq + 1}..{seq - 1}"
        detail = f"entry {missing} is missing (chain jumps from {prev_seq} to {seq})"
        return report.broken(prev_seq + 1, "deleted", detail)
    if seq <= prev_seq:
        return report.broken(seq, "inserted", f"seq {seq} appears again after {prev_seq}")
    # Contiguous seq, self-consistent entry, but it was chained to a different predecessor:
    # the entry before it is not the original (replaced or inserted with a recomputed hash).
    return report.broken(
        prev_seq,
        "inserted",
        f"entry {prev_seq} is not the entry that {seq} was chained to (replaced or inserted with a recomputed hash)",
    )
