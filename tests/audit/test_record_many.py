"""record_many: a batch's rows go in across checkpoint intervals, in order, and the chain they
make verifies, on SQLite and on PostgreSQL."""

from __future__ import annotations

import contextlib
import io
import json
import subprocess
import sys
from pathlib import Path

import pytest
from django.conf import settings

from tests.pg import django_env

ROOT = Path(settings.BASE_DIR)
# 250 entries with a checkpoint every 100: rows inserted before each checkpoint and at the end;
# text, JSON (non-ASCII, nested), NULL and integer columns.
BATCH = """
import json
import audit
from audit.models import AuditEntry
from audit.verify import verify_chain

items = [
    ("system", "test.batch", {"task": "T-1", "target": f"srv-{i}", "command": "uptime", "result_code": i % 3,
                             "output": f"out {i}", "payload": {"institution": "INST", "i": i, "n": {"k": "값"}}})
    for i in range(250)
]
entries = audit.record_many(items)
batch = AuditEntry.objects.filter(action="test.batch").order_by("seq")
rows = list(batch.values("seq", "target", "result_code", "payload", "actor_id"))
report = verify_chain()
print(json.dumps({"returned": [e.seq for e in entries], "rows": rows, "ok": report.ok}, ensure_ascii=False))
"""


def _check(result: dict) -> None:
    seqs = [row["seq"] for row in result["rows"]]
    assert seqs == result["returned"] and len(seqs) == 250
    assert seqs == list(range(seqs[0], seqs[0] + 250))  # in order, none missing
    assert [row["target"] for row in result["rows"]] == [f"srv-{i}" for i in range(250)]
    assert result["rows"][4]["result_code"] == "1" and result["rows"][4]["actor_id"] is None
    assert result["rows"][7]["payload"] == {"institution": "INST", "i": 7, "n": {"k": "값"}}
    assert result["ok"]


def _run(env: dict) -> dict:
    run = subprocess.run([sys.executable, "manage.py", "shell", "-c", BATCH], cwd=ROOT, env=env, check=True,
                         timeout=300, capture_output=True, text=True)  # fmt: skip
    return json.loads(run.stdout.strip().splitlines()[-1])


@pytest.mark.django_db
def test_a_batch_across_checkpoints_makes_a_verifying_chain_on_sqlite(settings):
    settings.AUDIT_CHECKPOINT_EVERY = 100
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        exec(BATCH, {})  # the same script as on PostgreSQL
    _check(json.loads(out.getvalue().strip().splitlines()[-1]))


@pytest.mark.postgres
def test_a_batch_across_checkpoints_makes_a_verifying_chain_on_postgresql(pg_url, tmp_path):
    import psycopg

    # Its own database: the session's shared one holds other tests' entries, signed with their
    # data directories' keys, which this test's verify could not check.
    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.execute("CREATE DATABASE record_many")
    env = django_env(pg_url.rsplit("/", 1)[0] + "/record_many", tmp_path)
    env["GUARDIA_AUDIT_CHECKPOINT_EVERY"] = "100"
    subprocess.run([sys.executable, "manage.py", "migrate", "-v0"], cwd=ROOT, env=env, check=True, timeout=300)
    _check(_run(env))
