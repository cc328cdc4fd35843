"""An entry's payload made canonical once, a clean command's redaction remembered, a batch's rows
built without per-field calls: the same entries, byte for byte, as the way that did it all again."""

from __future__ import annotations

import datetime as dt
import enum
import json

import pytest
from django.db import connection

import audit
from audit import canonical as canon
from audit import services
from audit.models import AuditEntry, CanonicalJSONEncoder
from audit.scrub import scrub_payload, scrub_text
from audit.verify import verify_chain


class Level(enum.IntEnum):
    HIGH = 3


class Code(str):
    pass


PAYLOADS = [
    None,
    {},
    {"institution": "KB", "step": "배포", "phase": "deploy", "state": "OK", "duration_ms": 120, "execution": 7},
    {"z": 1, "a": {"y": [1, 2.5, None, True, {"k": "값", "b": False}], "password": "hunter2"}, "m": -0.0},
    {"token": {"nested": "x"}, "list": [{"api_key": "k", "ok": "v"}], "big": 10**30, "e": 1e-300},
    {"when": dt.datetime(2026, 11, 30, 12, 0, tzinfo=dt.UTC), "t": (1, "two")},  # default=str, tuple
    {2: "int keys", 1: {"nested": 10}},
    {1: "int key", "s": "str key"},  # keys JSON cannot sort: refused either way
    {"level": Level.HIGH, "code": Code("x")},  # subclasses: JSON turns them into plain values
    {"text": "lone \udc80 surrogate", "ctl": "tab\tnul\x00"},
]


def _old_payload(payload):
    """The way prepare did it: the canonical text, loaded back, and made canonical again."""
    clean = json.loads(canon.payload_text(scrub_payload(payload or {})))
    return clean, canon.payload_text(clean)


def _typed(value):
    """A value with every type and every object's key order spelt out, for an exact comparison."""
    if isinstance(value, dict):
        return ("dict", [(k, _typed(v)) for k, v in value.items()])
    if isinstance(value, list):
        return ("list", [_typed(v) for v in value])
    return (type(value).__name__, repr(value))


@pytest.mark.parametrize("payload", PAYLOADS, ids=range(len(PAYLOADS)))
def test_the_payload_made_once_is_what_the_text_twice_made(payload):
    try:
        old_clean, old_text = _old_payload(payload)
    except TypeError:
        with pytest.raises(TypeError):
            services.prepare("system", "test.once", payload=payload)
        return
    _, _, clean, text = services.prepare("system", "test.once", payload=payload)
    assert text == old_text
    assert _typed(clean) == _typed(old_clean)


def test_a_payload_json_cannot_hold_is_still_refused():
    with pytest.raises(ValueError):
        services.prepare("system", "test.once", payload={"ratio": float("nan")})
    with pytest.raises(TypeError, match="payload must be a dict"):
        services.prepare("system", "test.once", payload=["not", "a", "dict"])


def test_a_remembered_command_is_only_ever_a_clean_one():
    clean = "sha256sum /opt/app/releases/app.war && mv /opt/app/new /opt/app/current"
    secret = "mysql -u app --password hunter2 -e 'select 1'"
    for _ in range(3):  # the second and third calls come from memory where anything does
        assert services.prepare("system", "test.once", command=clean)[0]["command"] == clean
        stored = services.prepare("system", "test.once", command=secret)[0]["command"]
        assert stored == scrub_text(secret) and "hunter2" not in stored
    assert clean in services._clean_commands and secret not in services._clean_commands


def test_the_clean_commands_memory_is_bounded(monkeypatch):
    monkeypatch.setattr(services, "CLEAN_COMMANDS_SIZE", 3)
    monkeypatch.setattr(services, "_clean_commands", set())
    for i in range(10):
        services.prepare("system", "test.once", command=f"echo {i}")
        assert len(services._clean_commands) <= 3
    long = "echo " + "x" * services.CLEAN_COMMAND_MAX_CHARS
    services.prepare("system", "test.once", command=long)
    assert long not in services._clean_commands


def _stored(seq: int) -> dict:
    """An entry's row as the database holds it (the payload column's text as stored)."""
    table = connection.ops.quote_name(AuditEntry._meta.db_table)
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT * FROM {table} WHERE seq = %s", [seq])
        names = [column[0] for column in cursor.description]
        return dict(zip(names, cursor.fetchone(), strict=True))


@pytest.mark.django_db
def test_a_batch_row_is_the_row_one_append_writes():
    """record() writes through each field's conversion; record_many's rows skip it where the value
    is already what it would return: the columns are the same, the payload's stored text too."""
    columns = {
        "task": "OPS-1", "target": "srv-1", "command": "uptime", "result_code": 0, "output": "up 3 days",
        "payload": {"institution": "KB", "step": "확인", "n": {"b": [1, None], "a": 2.5}, "secret": "s"},
    }  # fmt: skip
    one = audit.record("system", "test.once", **columns)
    batch = audit.record_many([("system", "test.once", columns), ("system", "test.once", columns)])
    single, many = _stored(one.seq), _stored(batch[0].seq)
    differ = {"id", "seq", "created_at", "prev_hash", "entry_hash", "canonical"}
    assert {k: v for k, v in single.items() if k not in differ} == {k: v for k, v in many.items() if k not in differ}
    assert json.loads(many["payload"]) == batch[0].payload and batch[0].payload["secret"] == "[REDACTED]"
    assert many["payload"] == json.dumps(batch[0].payload, cls=CanonicalJSONEncoder)
    assert verify_chain().ok
