"""Append rates: SQLite (WAL) from one writer, PostgreSQL (synchronous commit) from 16
writers with p99, and the torture run (16 x 10,000 appends then a full verify).

    python bench/audit_append.py [--sqlite N] [--pg WRITERS PER_WRITER] [--torture]
Each run is a fresh database in a subprocess (tests/audit/concurrent_appends.py).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.pg import PostgresCluster, django_env


def run(env: dict, writers: int, per_writer: int) -> dict:
    subprocess.run([sys.executable, "manage.py", "migrate", "-v0"], cwd=ROOT, env=env, check=True)
    out = subprocess.run([sys.executable, "-m", "tests.audit.concurrent_appends", str(writers), str(per_writer)],
                         cwd=ROOT, env=env, check=True, capture_output=True, text=True).stdout  # fmt: skip
    return json.loads(out.strip().splitlines()[-1])


def show(label: str, r: dict) -> None:
    print(f"{label}: {r['count']} appends in {r['seconds']:.1f} s = {r['rate']:,.0f}/s; p50 {r['p50_ms']:.1f} ms, "
          f"p99 {r['p99_ms']:.1f} ms; seq {r['min_seq']}..{r['max_seq']}, distinct {r['distinct_seq']}, "
          f"forks {r['forks']}, errors {len(r['errors'])}; verify: {r['verify']}")  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sqlite", type=int, default=10000)
    parser.add_argument("--pg", nargs=2, type=int, default=[16, 1000])
    parser.add_argument("--torture", action="store_true", help="also 16 x 10,000 on PostgreSQL")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="guardia-bench-audit-") as tmp:
        env = dict(os.environ, GUARDIA_DATA_DIR=tmp, GUARDIA_DEBUG="false", GUARDIA_CHANNEL_LAYER="memory",
                   DJANGO_SETTINGS_MODULE="guardia.settings")  # fmt: skip
        env.pop("GUARDIA_DATABASE_URL", None)
        show("SQLite WAL, 1 writer", run(env, 1, args.sqlite))
    with PostgresCluster() as cluster, tempfile.TemporaryDirectory(prefix="guardia-bench-audit-") as tmp:
        env = django_env(cluster.url, tmp)
        show(f"PostgreSQL 15 (fsync on, synchronous_commit on), {args.pg[0]} writers", run(env, *args.pg))
        if args.torture:
            show("torture, PostgreSQL 16 x 10,000", run(env, 16, 10000))


if __name__ == "__main__":
    main()
