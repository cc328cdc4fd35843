"""The canonical serialisation of an audit entry (format version 1) and the chain hash.

This module is pure Python (no Django, no database) because the offline verifier uses it
on an auditor's laptop. See docs/audit.md "Canonical serialisation".

canonical = UTF-8 bytes of one compact JSON object whose keys come in this fixed order:

    seq, time, actor, actor_id, action, institution, task, target, command,
    result_code, result_hash, payload

- seq: integer; actor_id: integer or null; every other top-level value is a string.
- time: UTC, ``YYYY-MM-DDTHH:MM:SS.ffffffZ`` (always six fraction digits).
- strings are escaped exactly as Python's ``json`` does with ``ensure_ascii=False``: only
  ``"``, ``\\`` and control characters are escaped; everything else is raw UTF-8.
- payload: a JSON object with keys sorted (recursively), separators ``,`` and ``:``,
  ``ensure_ascii=False``, no NaN/Infinity.

entry_hash = SHA-256(canonical || prev_hash) as lowercase hex, where prev_hash is the
previous entry's entry_hash as 64 ASCII hex characters (64 zeros for the first entry).

seq comes first so a verifier can read it from the bytes without parsing the JSON.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from json.encoder import encode_basestring  # the C-accelerated one when available
from typing import Any

GENESIS = "0" * 64
FORMAT_VERSION = 1
FIELDS = (
    "seq",
    "time",
    "actor",
    "actor_id",
    "action",
    "institution",
    "task",
    "target",
    "command",
    "result_code",
    "result_hash",
    "payload",
)
_TEMPLATE = (
    '{"seq":%d,"time":"%s","actor":%s,"actor_id":%s,"action":%s,"institution":%s,"task":%s,'
    '"target":%s,"command":%s,"result_code":%s,"result_hash":%s,"payload":%s}'
)
_UTC = dt.UTC


def payload_text(payload: Any) -> str:
    """The canonical JSON text of a payload (raises ValueError on NaN/Infinity)."""
    return json.dumps(payload, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False, default=str)


def time_text(value: Any) -> str:
    """Canonical UTC time text from a datetime or from SQLite's stored text form.

    SQLite keeps Django datetimes as naive UTC text ``YYYY-MM-DD HH:MM:SS[.ffffff]``
    (the fraction is omitted when it is zero), which the fast verifier reads directly.
    """
    if isinstance(value, str):
        frac = value[20:26] if len(value) > 19 else "000000"
        return f"{value[:10]}T{value[11:19]}.{frac}Z"
    if value.tzinfo is not None:
        value = value.astimezone(_UTC)
    return value.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def build(
    seq: int,
    time: str,
    actor: str,
    actor_id: int | None,
    action: str,
    institution: str,
    task: str,
    target: str,
    command: str,
    result_code: str,
    result_hash: str,
    payload_json: str,
) -> str:
    """The canonical text from already-normalised column values (payload as canonical JSON text)."""
    enc = encode_basestring
    return _TEMPLATE % (
        seq,
        time,
        enc(actor),
        "null" if actor_id is None else int(actor_id),
        enc(action),
        enc(institution),
        enc(task),
        enc(target),
        enc(command),
        enc(result_code),
        enc(result_hash),
        payload_json,
    )


def chain_hash(canonical: bytes, prev_hash: str | bytes) -> str:
    if isinstance(prev_hash, str):
        prev_hash = prev_hash.encode("ascii")
    return hashlib.sha256(canonical + prev_hash).hexdigest()


def seq_of(canonical: bytes) -> int:
    """seq straight from the bytes: the object always starts with ``{"seq":``."""
    if not canonical.startswith(b'{"seq":'):
        raise ValueError("canonical entry does not start with its seq")
    return int(canonical[7 : canonical.index(b",", 7)])


def parse(canonical: bytes | str) -> dict[str, Any]:
    """The entry as a dict; raises ValueError if the keys are not the canonical ones in order."""
    data = json.loads(canonical)
    if not isinstance(data, dict) or tuple(data) != FIELDS:
        raise ValueError("not a canonical audit entry (keys missing or out of order)")
    return data
