"""Shared set-up for the audit benchmarks: a throwaway data dir, Django with DEBUG off,
migrated, and a fast seeder that writes a valid chain (same canonical form, hashes and
signed checkpoints as audit.record) straight into the table."""

from __future__ import annotations

import atexit
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
if "GUARDIA_DATA_DIR" not in os.environ:
    os.environ["GUARDIA_DATA_DIR"] = tempfile.mkdtemp(prefix="guardia-bench-audit-")
    atexit.register(shutil.rmtree, os.environ["GUARDIA_DATA_DIR"], True)
os.environ.setdefault("GUARDIA_CHANNEL_LAYER", "memory")
os.environ.setdefault("GUARDIA_LOG_LEVEL", "WARNING")
os.environ["GUARDIA_DEBUG"] = "false"  # DEBUG's query log would be measured too
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "guardia.settings")


def setup() -> Path:
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)
    return Path(os.environ["GUARDIA_DATA_DIR"])


def seed(n: int, every: int = 1000, batch: int = 20000, institutions: int = 4) -> float:
    """Append n realistic entries (~330-byte canonical form); returns seconds taken."""
    import datetime as dt

    from django.db import connection, transaction

    from audit import canonical as canon
    from audit import services, signing
    from audit.models import AuditCheckpoint

    started = time.perf_counter()
    seq, prev = 0, canon.GENESIS
    base = dt.datetime(2026, 5, 23, tzinfo=dt.UTC)
    columns = ("seq, created_at, actor, actor_id, action, institution, task, target, command, result_code, "
               "result_hash, payload, prev_hash, entry_hash, canonical")  # fmt: skip
    sql = f'INSERT INTO "TB_AUDIT_LOG" ({columns}) VALUES ({", ".join(["%s"] * 15)})'
    insts = ["MOEF", "MOIS", "MOLIT", "KOSTAT"] if institutions == 4 else [f"I{i:03d}" for i in range(institutions)]
    count = len(insts)
    while seq < n:
        rows, checkpoints = [], []
        for _ in range(min(batch, n - seq)):
            seq += 1
            when = base + dt.timedelta(milliseconds=seq * 10)
            inst, group = insts[seq % count], f"G{seq % 3 + 1}"
            payload = canon.payload_text({"institution": inst, "server_group": group, "step": "post-check"})
            fields = (f"user{seq % 50}", seq % 50 + 1, "execution.step", inst, f"OPS-20260523-{seq % 999 + 1:03d}",
                      f"was-{seq % 20:02d}", "systemctl restart tomcat", "0",
                      services.output_hash(f"output {seq}"), payload)  # fmt: skip
            text = canon.build(seq, canon.time_text(when), *fields)
            digest = canon.chain_hash(text.encode(), prev)
            created = connection.ops.adapt_datetimefield_value(when)
            rows.append((seq, created, *fields, prev, digest, text))
            prev = digest
            if seq % every == 0:
                kid, sig = signing.sign(signing.checkpoint_message(seq, digest, canon.time_text(when)))
                checkpoints.append(AuditCheckpoint(seq=seq, entry_hash=digest, created_at=when, key_id=kid,
                                                   signature=sig, reason="interval"))  # fmt: skip
        with transaction.atomic(), connection.cursor() as cursor:
            cursor.executemany(sql, rows)
            AuditCheckpoint.objects.bulk_create(checkpoints)
            cursor.execute('DELETE FROM "TB_AUDIT_HEAD"')
            cursor.execute('INSERT INTO "TB_AUDIT_HEAD" (id, seq, entry_hash) VALUES (1, %s, %s)', [seq, prev])
    return time.perf_counter() - started


def raw_chain_rate(texts: list[bytes]) -> float:
    """The ceiling: chained SHA-256 over the same canonical bytes, already in memory."""
    from hashlib import sha256

    started = time.perf_counter()
    prev = b"0" * 64
    for text in texts:
        prev = sha256(text + prev).hexdigest().encode()
    return len(texts) / (time.perf_counter() - started)
