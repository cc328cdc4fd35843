"""The JSON Lines form of an entry, shared by the mirror files and the exports.

An entry line is compact JSON with a fixed layout so a verifier can slice it instead of
parsing it (that is what makes verifying an export run near the raw hashing rate):

    {"type":"entry","prev_hash":"<64 hex>","entry_hash":"<64 hex>","integrity":"ok","entry":<canonical>}

The "integrity" member is present in exports (ok | broken | unverified) and absent in the
mirror. "entry" is the canonical object itself, byte for byte, so what a reader sees is
exactly what was hashed. Pure Python: used offline.
"""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

# Readable times in exports are Korea Standard Time with the offset written out, as the
# console shows them. KST has no daylight saving, so a fixed offset is exact and the
# offline verifier needs no time-zone database. The hashed canonical text keeps UTC (`Z`).
KST = dt.timezone(dt.timedelta(hours=9), "KST")


def kst_text(value: str | dt.datetime) -> str:
    """`2026-11-30T00:00:00.000000Z` (canonical UTC text) or an aware datetime as
    `2026-11-30T09:00:00.000000+09:00`."""
    if isinstance(value, str):
        value = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    return value.astimezone(KST).isoformat(timespec="microseconds")


CSV_COLUMNS = [
    "seq", "time", "task", "institution", "server_group", "actor", "action", "result",
    "prev_hash", "entry_hash", "integrity", "canonical",
]  # fmt: skip
_P1 = b'{"type":"entry","prev_hash":"'
_P2 = b'","entry_hash":"'
_P3_MIRROR = b'","entry":'
OK_MIDDLE = b'","integrity":"ok","entry":'
_P3_EXPORT = {
    b'","integrity":"ok","entry":': "ok",
    b'","integrity":"broken","entry":': "broken",
    b'","integrity":"unverified","entry":': "unverified",
}


def entry_line(canonical: str, prev_hash: str, entry_hash: str, integrity: str | None = None) -> str:
    middle = '","entry":' if integrity is None else f'","integrity":"{integrity}","entry":'
    return f'{{"type":"entry","prev_hash":"{prev_hash}","entry_hash":"{entry_hash}{middle}{canonical}}}\n'


def parse_entry_line(line: bytes) -> tuple[bytes, bytes, str | None, bytes]:
    """(prev_hash, entry_hash, integrity, canonical) from one entry line; ValueError says what is wrong."""
    if line.endswith(b"\n"):
        line = line[:-1]
    if not line.startswith(_P1) or line[93:109] != _P2:
        raise ValueError("not an entry line (layout differs)")
    # No hex check here: the caller compares digest with a computed hexdigest, and prev is
    # either equal to the previous (checked) digest or hashed into this one.
    prev, digest = line[29:93], line[109:173]
    rest = line[173:]
    if rest.startswith(_P3_MIRROR):
        integrity, canonical = None, rest[len(_P3_MIRROR) :]
    else:
        for prefix, state in _P3_EXPORT.items():
            if rest.startswith(prefix):
                integrity, canonical = state, rest[len(prefix) :]
                break
        else:
            raise ValueError("integrity member missing or not ok/broken/unverified")
    if not canonical.endswith(b"}}"):
        raise ValueError("line is not closed after the entry")
    return prev, digest, integrity, canonical[:-1]


def checkpoint_line(
    seq: int, entry_hash: str, time: str, key_id: str, signature: str, reason: str, merkle_root: str = ""
) -> str:
    body: dict[str, Any] = {
        "type": "checkpoint",
        "seq": seq,
        "entry_hash": entry_hash,
        "time": time,
        "key_id": key_id,
        "signature": signature,
        "reason": reason,
    }
    if merkle_root:  # version 2 checkpoints (audit.merkle); version 1 lines stay as they were
        body["merkle_root"] = merkle_root
    return json.dumps(body, separators=(",", ":")) + "\n"
