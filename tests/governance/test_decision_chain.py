"""Approval decisions at once on PostgreSQL: each decision's entries are appended together at the
end of its transaction, under the chain head's row lock, in one round trip with the head's move.
Concurrent decisions, some rolled back after their append, must leave one linear chain with no gap,
each decision's entries adjacent and in order, and nothing of the rolled-back ones."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from django.conf import settings

from tests.pg import django_env, pg_url  # noqa: F401  (the fixture)

ROOT = Path(settings.BASE_DIR)


@pytest.mark.postgres
def test_concurrent_decisions_on_postgresql_make_one_chain_without_gaps(request, tmp_path):
    import psycopg

    server = request.getfixturevalue("pg_url")
    url = server.rsplit("/", 1)[0] + "/decisions"
    with psycopg.connect(server, autocommit=True) as conn:
        conn.execute("CREATE DATABASE decisions")
    env = django_env(url, tmp_path)
    env["GUARDIA_AUDIT_CHECKPOINT_EVERY"] = "7"  # checkpoints fall inside decisions' batches
    subprocess.run([sys.executable, "manage.py", "migrate", "-v0"], cwd=ROOT, env=env, check=True, timeout=300)
    run = subprocess.run([sys.executable, "-m", "tests.governance.concurrent_decisions", "6", "15"], cwd=ROOT,
                         env=env, check=True, timeout=300, capture_output=True, text=True)  # fmt: skip
    result = json.loads(run.stdout.strip().splitlines()[-1])
    assert result["vendor"] == "postgresql"
    assert result["errors"] == []
    decided = 6 * 15 - result["undone"]
    assert result["undone"] == 6 * 3 and result["undone_still_pending"] == 6 * 3
    assert len(result["decided_tasks"]) == decided
    assert result["undone_with_entries"] == []  # rolled back with their decision
    # Every decision: its approval, then the transition, next to each other in the chain.
    assert result["shapes"] == [json.dumps(["approval.decided", "task.transition"])]
    assert result["adjacent"]
    assert result["decision_entries"] == 2 * decided
    assert result["seqs"] == list(range(1, len(result["seqs"]) + 1))  # no gap, none lost, none twice
    assert result["verify_ok"], result["verify"]
    assert result["checkpoints"] == len(result["seqs"]) // 7
