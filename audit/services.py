"""Append to the hash chain, sign checkpoints, and run verification with its side effects."""

from __future__ import annotations

import hashlib
import json
from contextlib import nullcontext
from datetime import timedelta
from functools import partial
from typing import Any

from django.conf import settings
from django.db import IntegrityError, connection, transaction
from django.db.models import Max
from django.utils import timezone

from . import canonical as canon
from . import lines, merkle, mirror, signing, subchains
from .models import AuditCheckpoint, AuditEntry, ChainHead
from .rows import row_values
from .scrub import scrub_payload, scrub_text

GENESIS = canon.GENESIS
_HEAD_TABLE = '"TB_AUDIT_HEAD"'
_INSERT_SQL: dict[str, str] = {}
_LIMITS = {"actor": 150, "action": 100, "institution": 64, "task": 64, "result_code": 32}


def actor_fields(actor: Any) -> tuple[str, int | None]:
    """(name, user id) for a User, a plain string, or None (the system itself)."""
    if actor is None:
        return "system", None
    if isinstance(actor, str):
        return actor, None
    name = getattr(actor, "get_username", None)
    return (name() if callable(name) else str(actor)), getattr(actor, "pk", None)


def _text(value: Any, field: str) -> str:
    """A storable string: no NUL (PostgreSQL refuses it), no lone surrogates (not UTF-8)."""
    text = "" if value is None else str(value)
    text = text.replace("\x00", "\ufffd").encode("utf-8", "replace").decode("utf-8")
    limit = _LIMITS.get(field)
    if limit and len(text) > limit:
        # A clear error rather than a silently cut record: these are short codes.
        raise ValueError(f"audit.record: {field} is longer than {limit} characters: {text[:40]!r}...")
    return text


def output_hash(output: str | bytes | None) -> str:
    if output is None:
        return ""
    data = output if isinstance(output, bytes) else str(output).encode("utf-8", "surrogateescape")
    return hashlib.sha256(data).hexdigest()


def _locked_head() -> tuple[int, str]:
    """(seq, entry_hash) of the chain head, its row locked until the transaction ends.

    On PostgreSQL FOR UPDATE makes concurrent writers queue on this row; on SQLite the
    IMMEDIATE transaction mode (settings) already holds the database write lock. Raw SQL
    because this is the hot path of every append. If the row is missing (first append,
    or someone deleted it) it is rebuilt from the last entry so seq continues instead of
    colliding.
    """
    lock = " FOR UPDATE" if connection.features.has_select_for_update else ""
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT seq, entry_hash FROM {_HEAD_TABLE} WHERE id = 1{lock}")
        row = cursor.fetchone()
        if row is not None:
            return row
    last = AuditEntry.objects.order_by("-seq").values_list("seq", "entry_hash").first()
    try:
        with transaction.atomic():
            ChainHead.objects.create(id=1, seq=last[0] if last else 0, entry_hash=last[1] if last else GENESIS)
    except IntegrityError:
        pass  # a concurrent writer created it first
    head = ChainHead.objects.select_for_update().get(id=1)
    return head.seq, head.entry_hash


def _insert_sql(returning: bool) -> tuple[list, str]:
    ops = connection.ops
    columns = [f for f in AuditEntry._meta.concrete_fields if f.name != "id"]
    key = f"{connection.vendor}:{returning}"
    sql = _INSERT_SQL.get(key)
    if sql is None:
        names = ", ".join(ops.quote_name(f.column) for f in columns)  # type: ignore[arg-type]  # concrete: has a column
        marks = ", ".join(["%s"] * len(columns))
        sql = f"INSERT INTO {ops.quote_name(AuditEntry._meta.db_table)} ({names}) VALUES ({marks})"
        if returning:
            sql += " RETURNING id"
        _INSERT_SQL[key] = sql
    return columns, sql


def _insert_many(entries: list[AuditEntry], payload_texts: list[str]) -> None:
    """One executemany for a batch (record_many); the entries' ids are not read back.

    A text column's value is the attribute itself (audit.rows.row_values). On SQLite the payload
    column holds the payload's canonical text (CanonicalJSONEncoder: what its field would encode
    again), which prepare() made already; elsewhere the field adapts it (jsonb on PostgreSQL)."""
    columns, sql = _insert_sql(returning=False)
    if connection.vendor == "sqlite":
        at = next(i for i, f in enumerate(columns) if f.name == "payload")
        rows = row_values(entries, columns[:at] + columns[at + 1 :])
        for row, text in zip(rows, payload_texts, strict=True):
            row.insert(at, text)
    else:
        rows = row_values(entries, columns)
    with connection.cursor() as cursor:
        cursor.executemany(sql, rows)
    for entry in entries:
        entry._state.adding, entry._state.db = False, connection.alias


def _insert(entry: AuditEntry) -> None:
    """INSERT without the ORM's per-call query building (half the cost of an append)."""
    ops = connection.ops
    columns, sql = _insert_sql(returning=connection.features.can_return_columns_from_insert)
    values = [f.get_db_prep_save(getattr(entry, f.attname), connection) for f in columns]
    with connection.cursor() as cursor:
        cursor.execute(sql, values)
        if connection.features.can_return_columns_from_insert:
            entry.pk = cursor.fetchone()[0]
        else:
            entry.pk = ops.last_insert_id(cursor, AuditEntry._meta.db_table, "id")
    entry._state.adding, entry._state.db = False, connection.alias


_COLUMNS = frozenset({"task", "target", "command", "result_code", "output", "payload"})


_JSON_SCALARS = frozenset({str, int, float, bool, type(None)})


def _json_copy(value: Any) -> Any:
    """What ``json.loads(canon.payload_text(value))`` returns, built without the text, for a
    payload of JSON's own types (str keys; str, int, float, bool, None, lists, dicts): objects'
    keys in sorted order as the text has them. _NOT_PLAIN for anything the text would change
    (a tuple, a non-str key, a date or a str subclass, which ``default=str`` or JSON turns into
    something else)."""
    kind = type(value)
    if kind in _JSON_SCALARS:
        return value
    if kind is dict:
        copy = {}
        for key in sorted(value) if all(type(k) is str for k in value) else ():
            item = copy[key] = _json_copy(value[key])
            if item is _NOT_PLAIN:
                return _NOT_PLAIN
        return copy if len(copy) == len(value) else _NOT_PLAIN
    if kind is list:
        items = [_json_copy(v) for v in value]
        return _NOT_PLAIN if any(item is _NOT_PLAIN for item in items) else items
    return _NOT_PLAIN


_NOT_PLAIN = object()


def _payload(payload: dict | None) -> tuple[dict, str]:
    """(the payload as stored, its canonical text), secret-looking keys redacted. A payload of
    JSON's own types is copied as loading its text would give it back, and its text made once;
    any other goes through the text twice (``default=str`` may change a value's type once)."""
    scrubbed = scrub_payload(payload or {})
    clean = _json_copy(scrubbed)
    if clean is _NOT_PLAIN:
        clean = json.loads(canon.payload_text(scrubbed))
    return clean, canon.payload_text(clean)


# Command texts that redaction left as they were, by their exact text: a rollout appends the same
# few commands for every server (the recorder's are redacted already), and the rules' pass is
# ~40 µs an entry. Only an unchanged text is kept (it is what the entry stores anyway, never a
# secret the rules would have hidden); the rules are this process's constants, so a text's
# verdict cannot change; any other text, even one character apart, is redacted from scratch.
# Bounded low: where every server has its own paths nothing repeats, and the set is the worker's memory.
CLEAN_COMMANDS_SIZE = 1024
CLEAN_COMMAND_MAX_CHARS = 4096
_clean_commands: set[str] = set()


def _command(command: Any) -> str:
    text = _text(command, "command")
    if text in _clean_commands:
        return text
    clean = scrub_text(text)
    if clean == text and len(text) <= CLEAN_COMMAND_MAX_CHARS:
        if len(_clean_commands) >= CLEAN_COMMANDS_SIZE:
            _clean_commands.clear()
        _clean_commands.add(text)
    return clean


def prepare(actor: Any, action: str, **columns: Any) -> tuple[dict[str, str], int | None, dict, str]:
    """The columns of one entry as ``record`` stores them: (fields, actor id, payload,
    canonical payload text), secrets redacted and lengths checked. ``columns`` are
    record()'s keyword arguments. Shared with the history seeder (bench/seed_history.py),
    which appends many entries per transaction."""
    if unknown := set(columns) - _COLUMNS:
        raise TypeError(f"audit.record: unknown argument(s) {', '.join(sorted(unknown))}")
    payload, command = columns.get("payload"), columns.get("command")
    task, target, result_code = columns.get("task"), columns.get("target"), columns.get("result_code")
    output = columns.get("output")
    name, actor_id = actor_fields(actor)
    if payload is not None and not isinstance(payload, dict):
        raise TypeError(f"audit.record: payload must be a dict, got {type(payload).__name__}")
    clean_payload, ptext = _payload(payload)
    fields = {
        "actor": _text(name, "actor"),
        "action": _text(action, "action"),
        "institution": _text(clean_payload.get("institution", ""), "institution"),
        "task": _text(task, "task"),
        "target": _text(target, "target"),
        "command": _command(command),
        "result_code": _text(result_code, "result_code"),
        "result_hash": output_hash(output),
    }
    if not fields["action"]:
        raise ValueError("audit.record: action is required")
    return fields, actor_id, clean_payload, ptext


def record(
    actor: Any,
    action: str,
    *,
    task: Any = None,
    target: Any = None,
    command: str | None = None,
    result_code: Any = None,
    output: str | bytes | None = None,
    payload: dict | None = None,
) -> AuditEntry:
    """Append one entry to the chain and return it.

    output is hashed (result_hash) and never stored. payload keys that look like secrets
    are redacted, and `password=...` in the command too. payload["institution"] (a code)
    fills the institution column used by the export filter; payload["server_group"] is
    the report's server group.
    """
    fields, actor_id, clean_payload, ptext = prepare(
        actor, action, task=task, target=target, command=command, result_code=result_code, output=output,
        payload=payload,
    )  # fmt: skip
    return _append([(fields, actor_id, clean_payload, ptext)], _insert)[0]


def record_many(items: list[tuple[Any, str, dict[str, Any]]]) -> list[AuditEntry]:
    """Append ``(actor, action, record()'s keyword arguments)`` in order, in one transaction.

    The entries, their seq numbers, hashes, checkpoints and mirror lines are exactly those of
    record() called for each in turn; the chain head is read and locked once and written once
    instead of once per entry, and the rows go in with one executemany per checkpoint interval
    (their ids are not read back)."""
    return _append([prepare(actor, action, **columns) for actor, action, columns in items], None)


def _append(prepared: list[tuple[dict[str, str], int | None, dict, str]], insert) -> list[AuditEntry]:
    """``insert``: each entry at once (record()), or None: in bulk before each checkpoint and at the end.

    In the caller's transaction, an error spoils it (as it must: a change whose entry could not be
    appended is not to be committed, even by a caller that catches the error). On PostgreSQL the
    append has no savepoint of its own: its release would be one more round trip while the head's
    row lock is held. Elsewhere (SQLite: in process, no round trip) it keeps one: the worker's peak
    memory at 1,000 servers measured 5 MB lower with it (17 MB in the one-command run)."""
    try:
        with transaction.atomic(savepoint=connection.vendor != "postgresql"):
            if connection.vendor == "postgresql" and 0 < len(prepared) <= SERVER_CHAIN_MAX:
                entries = _append_on_server(prepared)
                if entries is not None:
                    return entries
            return _append_locked(prepared, insert)
    except BaseException:
        if connection.in_atomic_block:
            transaction.set_rollback(True)
        raise


def _append_locked(prepared: list[tuple[dict[str, str], int | None, dict, str]], insert) -> list[AuditEntry]:
    """The append itself, inside its transaction: the head read under its lock, the entries
    hashed in order, the rows and the head's move."""
    every = max(int(getattr(settings, "AUDIT_CHECKPOINT_EVERY", 1000)), 1)
    entries: list[AuditEntry] = []
    unsaved: list[AuditEntry] = []
    unsaved_texts: list[str] = []  # their payloads' canonical text
    head_seq, head_hash = _locked_head()
    mirror_lines: dict = {}  # day -> text, in order (a batch may span midnight)
    for fields, actor_id, clean_payload, ptext in prepared:
        seq = head_seq + 1
        now = timezone.now()
        text = canon.build(
            seq, canon.time_text(now), fields["actor"], actor_id, fields["action"], fields["institution"],
            fields["task"], fields["target"], fields["command"], fields["result_code"], fields["result_hash"],
            ptext,
        )  # fmt: skip
        digest = canon.chain_hash(text.encode("utf-8"), head_hash)
        entry = AuditEntry(
            seq=seq, created_at=now, actor_id=actor_id, payload=clean_payload,
            prev_hash=head_hash, entry_hash=digest, canonical=text, **fields,
        )  # fmt: skip
        if insert is not None:
            insert(entry)
        else:
            unsaved.append(entry)
            unsaved_texts.append(ptext)
        mirror_text = lines.entry_line(text, entry.prev_hash, digest)
        if seq % every == 0:
            if unsaved:  # the checkpoint's sub-chain leaves are read from the rows
                _insert_many(unsaved, unsaved_texts)
                unsaved, unsaved_texts = [], []
            checkpoint = _sign_checkpoint(seq, digest, "interval")
            mirror_text += _checkpoint_line(checkpoint)
        day = now.astimezone(canon._UTC).date()
        mirror_lines[day] = mirror_lines.get(day, "") + mirror_text
        head_seq, head_hash = seq, digest
        entries.append(entry)
    if entries:
        _move_head(unsaved, unsaved_texts, head_seq, head_hash)
    for day, text in mirror_lines.items():
        transaction.on_commit(partial(mirror.append, day, text))
    return entries


# On PostgreSQL an append of up to this many entries is chained by the database itself (see
# _append_on_server); a longer batch (the execution recorder's drains) goes in with one
# executemany, its hashes made here.
SERVER_CHAIN_MAX = 16
# The entry's time as canonical text, made by the database (as the verifier reads it back).
_PG_TIME = """to_char(at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"')"""
_SERVER_SQL: dict[str, str] = {}
_SERVER_PARAMS: list[str] = []  # the attributes given as parameters, in the INSERT's order


_COMPUTED = {
    "seq": "seq", "created_at": "at", "prev_hash": "prev", "canonical": "text",
    "entry_hash": "encode(sha256(convert_to(text, 'UTF8') || convert_to(prev, 'UTF8')), 'hex')",
}  # fmt: skip
_CASTS = {"BigIntegerField": "bigint", "JSONField": "jsonb"}  # the others are text columns


def _server_sql() -> tuple[str, str, list[str]]:
    """The two statements of one entry chained by PostgreSQL: the INSERT takes the head's row
    lock (FOR UPDATE, waiting for the writer before it and then reading the head it left), makes
    the entry's time, canonical text and hash from it, and returns them; the UPDATE moves the
    head to the row just inserted (a statement of its own: it then sees that row)."""
    if not _SERVER_SQL:
        quote = connection.ops.quote_name
        fields = [f for f in AuditEntry._meta.concrete_fields if f.name != "id"]
        columns = [str(f.column) for f in fields]
        values = ", ".join(_COMPUTED.get(f.name) or f"%s::{_CASTS.get(f.get_internal_type(), 'text')}" for f in fields)
        _SERVER_PARAMS[:] = [f.attname for f in fields if f.name not in _COMPUTED]
        _SERVER_SQL["insert"] = (
            f"WITH h AS (SELECT seq + 1 AS seq, entry_hash AS prev, clock_timestamp() AS at FROM {_HEAD_TABLE} "
            "WHERE id = 1 FOR UPDATE), "
            f"""t AS (SELECT seq, prev, at, '{{"seq":' || seq || ',"time":"' || {_PG_TIME} || %s::text AS text """
            "FROM h) "
            f"INSERT INTO {quote(AuditEntry._meta.db_table)} ({', '.join(quote(c) for c in columns)}) "
            f"SELECT {values} FROM t RETURNING id, seq, created_at, prev_hash, entry_hash, canonical"
        )
        _SERVER_SQL["head"] = (
            f"UPDATE {_HEAD_TABLE} AS head SET seq = e.seq, entry_hash = e.entry_hash "
            f"FROM {quote(AuditEntry._meta.db_table)} AS e WHERE head.id = 1 AND e.seq = head.seq + 1"
        )
    return _SERVER_SQL["insert"], _SERVER_SQL["head"], _SERVER_PARAMS


_TEXT_START = '{"seq":0,"time":"'


def _append_on_server(prepared: list[tuple[dict[str, str], int | None, dict, str]]) -> list[AuditEntry] | None:
    """PostgreSQL: the append as one pipeline (one round trip), the chain head's row lock taken
    by its first statement. Everything but the seq, the time and the previous hash is made here
    before the lock (each entry's canonical text after its time); the database puts those in,
    hashes the text exactly as canon.chain_hash does and moves the head, so under the lock the only
    wait for this process (its thread, its GIL, a core) is its answer to the pipeline: the commit.
    Checkpoints falling in the batch are signed after, the lock still held. None, with nothing
    written, if the head's row is missing: the caller's path rebuilds it."""
    insert_sql, head_sql, params = _server_sql()
    cursors = []
    every = max(int(getattr(settings, "AUDIT_CHECKPOINT_EVERY", 1000)), 1)
    with connection.wrap_database_errors, connection.connection.pipeline():
        for fields, actor_id, _payload, ptext in prepared:
            text = canon.build(
                0, "", fields["actor"], actor_id, fields["action"], fields["institution"], fields["task"],
                fields["target"], fields["command"], fields["result_code"], fields["result_hash"], ptext,
            )  # fmt: skip
            if not text.startswith(_TEXT_START):
                raise ValueError("audit: the canonical text no longer starts with its seq and time")
            row = {**fields, "actor_id": actor_id, "payload": ptext}
            cursor = connection.cursor()
            bind_on_server(cursor)
            cursor.execute(insert_sql, [text[len(_TEXT_START) :], *(row[name] for name in params)])
            cursors.append(cursor)
            with connection.cursor() as head:
                bind_on_server(head)
                head.execute(head_sql)
    rows = []
    for cursor in cursors:
        rows.append(cursor.fetchone())
        cursor.close()
    if rows[0] is None:
        return None  # no head row: nothing was inserted (an error would have raised above)
    entries: list[AuditEntry] = []
    mirror_lines: dict = {}  # day -> text, in order
    for (fields, actor_id, clean_payload, _text), (pk, seq, at, prev, digest, text) in zip(prepared, rows, strict=True):
        entry = AuditEntry(
            id=pk, seq=seq, created_at=at, actor_id=actor_id, payload=clean_payload, prev_hash=prev,
            entry_hash=digest, canonical=text, **fields,
        )  # fmt: skip
        entry._state.adding, entry._state.db = False, connection.alias
        mirror_text = lines.entry_line(text, prev, digest)
        if seq % every == 0:
            mirror_text += _checkpoint_line(_sign_checkpoint(seq, digest, "interval"))
        day = at.astimezone(canon._UTC).date()
        mirror_lines[day] = mirror_lines.get(day, "") + mirror_text
        entries.append(entry)
    for day, text in mirror_lines.items():
        transaction.on_commit(partial(mirror.append, day, text))
    return entries


def bind_on_server(cursor) -> None:
    """PostgreSQL: run the statement through a server-side binding cursor (Django's own binds on
    the client, so every run is planned again). psycopg then prepares it on the connection after a
    few runs (``prepare_threshold``), and PostgreSQL reuses its plan. The SQL (``%s`` placeholders)
    and parameters are the same for both cursors; Django's wrapper (errors, query log) stays
    around it. Shared with governance's compiled statements."""
    import psycopg

    client = cursor.cursor
    cursor.cursor = psycopg.Cursor(client.connection)
    client.close()


def _move_head(unsaved: list[AuditEntry], payload_texts: list[str], seq: int, entry_hash: str) -> None:
    """Insert the append's last rows and move the head to (seq, entry_hash). On PostgreSQL both
    go in one pipeline: one round trip instead of two while the head's row lock is held, which
    every audited change queues on (its errors are Django's, as for any statement)."""
    postgres = connection.vendor == "postgresql" and unsaved
    with connection.wrap_database_errors, connection.connection.pipeline() if postgres else nullcontext():
        if unsaved:
            _insert_many(unsaved, payload_texts)
        with connection.cursor() as cursor:
            cursor.execute(f"UPDATE {_HEAD_TABLE} SET seq = %s, entry_hash = %s WHERE id = 1", [seq, entry_hash])


def _sign_checkpoint(seq: int, entry_hash: str, reason: str) -> AuditCheckpoint:
    """Sign (seq, entry_hash, time, Merkle root over the institution sub-chain heads): version 2.

    Called with the chain head locked, so the heads cover exactly the entries up to seq.
    """
    now = timezone.now()
    leaves = subchains.leaves_at(seq)
    root = merkle.root(leaves)
    kid, signature = signing.sign(signing.checkpoint_message(seq, entry_hash, canon.time_text(now), root))
    checkpoint = AuditCheckpoint(
        seq=seq, entry_hash=entry_hash, created_at=now, key_id=kid, signature=signature, reason=reason,
        merkle_root=root, leaves=merkle.leaves_text(leaves),
    )  # fmt: skip
    checkpoint.save()
    return checkpoint


def _checkpoint_line(cp: AuditCheckpoint) -> str:
    return lines.checkpoint_line(cp.seq, cp.entry_hash, canon.time_text(cp.created_at), cp.key_id, cp.signature,
                                 cp.reason, cp.merkle_root)  # fmt: skip


def create_checkpoint(reason: str = "manual") -> AuditCheckpoint | None:
    """Sign the current chain head now (None while the chain is empty)."""
    with transaction.atomic():
        head_seq, head_hash = _locked_head()
        if head_seq == 0:
            return None
        checkpoint = _sign_checkpoint(head_seq, head_hash, reason)
        transaction.on_commit(
            partial(mirror.append, checkpoint.created_at.astimezone(canon._UTC).date(), _checkpoint_line(checkpoint))
        )
    return checkpoint


def hourly_checkpoint() -> AuditCheckpoint | None:
    """The scheduled checkpoint: sign the head unless one was signed in the last hour."""
    recent = AuditCheckpoint.objects.filter(created_at__gte=timezone.now() - timedelta(minutes=59))
    head_seq = ChainHead.objects.filter(id=1).values_list("seq", flat=True).first() or 0
    latest = AuditCheckpoint.objects.aggregate(m=Max("seq"))["m"] or 0
    if recent.exists() and latest >= head_seq:
        return None
    return create_checkpoint("hourly")


def latest_checkpoint(at_or_after: int = 0) -> AuditCheckpoint | None:
    """The earliest checkpoint covering seq `at_or_after` (or the latest one if none is later)."""
    covering = AuditCheckpoint.objects.filter(seq__gte=at_or_after).order_by("seq", "id").first()
    return covering or AuditCheckpoint.objects.order_by("-seq", "-id").first()


def run_verification(actor: Any = None, *, source: str = "console"):
    """Verify the whole chain, audit the run, and raise the alarm on a break.

    A break sends audit.signals.chain_broken(sender=run_verification, report=...);
    governance connects it to the global stop (audit imports no other app).
    """
    from .signals import chain_broken
    from .verify import verify_chain

    report = verify_chain()
    record(
        actor,
        "audit.verify",
        result_code="ok" if report.ok else f"broken:{report.kind}",
        payload={"source": source, **report.as_dict()},
    )
    if not report.ok:
        chain_broken.send(sender=run_verification, report=report)
    return report
