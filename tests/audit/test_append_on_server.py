"""PostgreSQL chains a short append itself: the head's row lock is taken by the entry's INSERT,
sent with the head's move in one pipeline, so the append holds the lock across no round trip to
the web process; the entries it makes verify as the ones made here did."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import psycopg
import pytest
from django.conf import settings

from tests.pg import django_env

ROOT = Path(settings.BASE_DIR)
# Another writer holds the head's row lock; the append waits for it in the statement that takes
# it, every other statement of the append already sent. Then it goes on and the chain verifies.
SCRIPT = """
import json, os, threading
import psycopg
import audit
from audit.models import AuditEntry
from audit.verify import verify_chain
from tests.waiting import wait_until

audit.record("system", "test.first", payload={"institution": "INST"})
holder = psycopg.connect(os.environ["GUARDIA_DATABASE_URL"])
holder.execute('SELECT seq FROM "TB_AUDIT_HEAD" WHERE id = 1 FOR UPDATE')
done = []
items = [("system", "test.waiting", {"target": f"srv-{i}", "payload": {"institution": "INST", "i": i}})
         for i in range(3)]
writer = threading.Thread(target=lambda: done.append([e.seq for e in audit.record_many(items)]))
writer.start()
query = ("SELECT query FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND state = 'active' "
         "AND query LIKE '%%TB_AUDIT_HEAD%%' AND pid <> pg_backend_pid()")
watcher = psycopg.connect(os.environ["GUARDIA_DATABASE_URL"], autocommit=True)  # no cached activity snapshot
try:
    waiting = wait_until(lambda: watcher.execute(query).fetchone(), message="the append waits on the head")[0]
finally:
    holder.commit()
writer.join(30)
rows = list(AuditEntry.objects.order_by("seq").values_list("seq", "created_at", "prev_hash", "entry_hash"))
report = verify_chain()
print(json.dumps({"waiting": waiting, "done": done, "seqs": [r[0] for r in rows],
                  "times_in_order": all(a[1] <= b[1] for a, b in zip(rows, rows[1:])),
                  "linked": all(a[3] == b[2] for a, b in zip(rows, rows[1:])), "ok": report.ok}))
"""


@pytest.mark.postgres
def test_a_short_append_takes_the_head_lock_in_its_insert_and_its_chain_verifies(pg_url, tmp_path):
    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.execute("CREATE DATABASE append_on_server")
    env = django_env(pg_url.rsplit("/", 1)[0] + "/append_on_server", tmp_path)
    subprocess.run([sys.executable, "manage.py", "migrate", "-v0"], cwd=ROOT, env=env, check=True, timeout=300)
    run = subprocess.run([sys.executable, "manage.py", "shell", "-c", SCRIPT], cwd=ROOT, env=env, check=True,
                         timeout=300, capture_output=True, text=True)  # fmt: skip
    result = json.loads(run.stdout.strip().splitlines()[-1])
    # The statement waiting for the lock is the entry's INSERT (not a SELECT ... FOR UPDATE
    # whose answer the process would have to come back for before writing anything).
    assert result["waiting"].startswith("WITH h AS (SELECT seq + 1") and "INSERT INTO" in result["waiting"]
    assert result["done"] == [[2, 3, 4]]
    assert result["seqs"] == [1, 2, 3, 4]
    assert result["times_in_order"] and result["linked"] and result["ok"]
