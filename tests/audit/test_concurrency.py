"""Concurrent writers produce one linear chain: 8 threads x 500 appends, SQLite and PostgreSQL."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import psycopg
import pytest
from django.conf import settings

from audit.verify import verify_chain
from tests.audit.concurrent_appends import hammer
from tests.pg import django_env

ROOT = Path(settings.BASE_DIR)


def _assert_linear(result: dict) -> None:
    assert result["errors"] == []
    assert result["count"] == 4000 and result["distinct_seq"] == 4000
    assert (result["min_seq"], result["max_seq"]) == (1, 4000)  # no gap
    assert result["forks"] == 0


@pytest.mark.slow
def test_sqlite_8_threads_x_500_appends_make_one_chain(transactional_db):
    result = hammer(8, 500)
    _assert_linear(result)
    report = verify_chain()
    assert report.ok and report.entries == 4000, report.message()
    assert report.checkpoints == 400  # every 10 entries (tests/audit/conftest.py)


@pytest.mark.postgres
def test_postgresql_8_threads_x_500_appends_make_one_chain_and_trigger_refuses_changes(pg_url, tmp_path):
    env = django_env(pg_url, tmp_path)
    env["GUARDIA_AUDIT_CHECKPOINT_EVERY"] = "100"
    subprocess.run([sys.executable, "manage.py", "migrate", "-v0"], cwd=ROOT, env=env, check=True, timeout=300)
    run = subprocess.run([sys.executable, "-m", "tests.audit.concurrent_appends", "8", "500"], cwd=ROOT, env=env,
                         check=True, timeout=300, capture_output=True, text=True)  # fmt: skip
    result = json.loads(run.stdout.strip().splitlines()[-1])
    assert result["vendor"] == "postgresql"
    _assert_linear(result)
    assert result["verify_ok"], result["verify"]

    # The append-only trigger: the application's own database role cannot change history.
    with psycopg.connect(pg_url, autocommit=True) as conn:
        for statement in ('UPDATE "TB_AUDIT_LOG" SET command = \'x\' WHERE seq = 1',
                          'DELETE FROM "TB_AUDIT_LOG" WHERE seq = 1', 'TRUNCATE "TB_AUDIT_LOG"',
                          'DELETE FROM "TB_AUDIT_CHECKPOINT"'):  # fmt: skip
            with pytest.raises(psycopg.errors.InsufficientPrivilege, match="append-only"):
                conn.execute(statement)
        assert conn.execute('SELECT count(*) FROM "TB_AUDIT_LOG"').fetchone()[0] == 4000
