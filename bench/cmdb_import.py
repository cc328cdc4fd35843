"""CSV import of 1,000 servers through the admin upload view (target < 5 s).

Run: .venv/bin/python bench/cmdb_import.py [--rows 1000 --runs 3]
Each run uploads a fresh file into an empty server table, so every run does the full
validation (row checks, duplicate checks against the DB) and the bulk insert.
"""

from __future__ import annotations

import argparse
import io
import statistics
import time

import benchenv  # noqa: F401  (sets up Django)
from django.contrib.auth.models import Group, User
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext

from cmdb.models import Institution, Server, System

HEADER = (
    "server_id,system,hostname,ip,os_type,ssh_port,ssh_user,app_path,log_path,service_port,health_url,"
    "rolling_group,canary\n"
)


def make_csv(rows: int, run: int) -> bytes:
    lines = [HEADER]
    for i in range(rows):
        ip = f"10.{run}.{i // 250}.{i % 250 + 1}"
        lines.append(
            f"bench-{run}-{i:05d},BENCH-SYS-{i % 8},was{i}.bench.go.kr,{ip},linux,22,deploy,/app/was,"
            f"/app/logs/catalina.out,8080,http://{ip}:8080/health,{i % 4 + 1},{'yes' if i == 0 else 'no'}\n"
        )
    return "".join(lines).encode()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=1000)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()

    institution = Institution.objects.create(code="BENCH", name="벤치기관", tier=2)
    for n in range(8):
        System.objects.create(code=f"BENCH-SYS-{n}", name=f"벤치시스템{n}", institution=institution)
    admin = User.objects.create_user("bench-admin", password="x", is_staff=True)
    admin.groups.add(Group.objects.get(name="admin"))
    client = Client()
    client.force_login(admin)

    timings, queries = [], []
    for run in range(args.runs):
        Server.objects.all().delete()
        upload = io.BytesIO(make_csv(args.rows, run))
        upload.name = "servers.csv"
        with CaptureQueriesContext(connection) as ctx:
            start = time.perf_counter()
            response = client.post("/admin/cmdb/server/import/", {"file": upload})
            timings.append(time.perf_counter() - start)
        assert response.status_code == 302, response.content[:2000]
        assert Server.objects.count() == args.rows
        queries.append(len(ctx.captured_queries))

    print(f"CSV import via admin upload: {args.rows} rows, {args.runs} runs")
    print(
        f"  per upload: median {statistics.median(timings):.3f} s, max {max(timings):.3f} s "
        f"({args.rows / statistics.median(timings):.0f} rows/s), {queries[-1]} SQL queries"
    )
    print(f"  target < 5 s: {'MET' if max(timings) < 5 else 'MISSED'}")


if __name__ == "__main__":
    main()
