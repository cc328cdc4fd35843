"""Admin server list (the CMDB console) with 10,000 servers (target < 300 ms per page).

Run: .venv/bin/python bench/cmdb_admin_list.py [--servers 10000 --requests 30]
Requests go through the full Django stack (middleware, admin, templates) with the test
client, logged in as a user of the admin role, DEBUG off as in production.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

os.environ.setdefault("GUARDIA_DEBUG", "false")

import benchenv
from django.contrib.auth.models import Group, User
from django.db import connection, transaction
from django.test import Client
from django.test.utils import CaptureQueriesContext

from cmdb.models import Institution, Server, System

PAGES = {
    "first page": "",
    "page 50": "?p=50",
    "filter tier+OS": "?tier=1&os=linux",
    "filter institution": "?institution={inst}",
    "search": "?q=was-0099",
}


def populate(n: int) -> int:
    with transaction.atomic():
        institutions = [
            Institution.objects.create(code=f"I{i:02d}", name=f"기관{i:02d}", tier=i % 3 + 1) for i in range(20)
        ]
        systems = [
            System.objects.create(code=f"S{i:03d}", name=f"시스템{i:03d}", institution=institutions[i % 20])
            for i in range(100)
        ]
        Server.objects.bulk_create(
            (
                Server(
                    server_id=f"was-{i:05d}",
                    system=systems[i % 100],
                    hostname=f"was-{i:05d}.go.kr",
                    ip=f"10.{i // 62500}.{i // 250 % 250}.{i % 250 + 1}",
                    os_type="aix" if i % 10 == 0 else "linux",
                    rolling_group=i % 4 + 1,
                    canary=i % 100 == 0,
                )
                for i in range(n)
            ),
            batch_size=1000,
        )
    return institutions[0].pk


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--servers", type=int, default=10_000)
    parser.add_argument("--requests", type=int, default=30)
    args = parser.parse_args()
    inst = populate(args.servers)
    admin = User.objects.create_user("bench-admin", password="x", is_staff=True)
    admin.groups.add(Group.objects.get(name="admin"))
    client = Client()
    client.force_login(admin)

    print(f"admin server list, {Server.objects.count()} servers, {args.requests} requests per page (100 rows/page)")
    worst = worst_p95 = 0.0
    for label, query in PAGES.items():
        url = "/admin/cmdb/server/" + query.format(inst=inst)
        client.get(url)  # warm caches (templates, permissions)
        timings = []
        for _ in range(args.requests):
            with CaptureQueriesContext(connection) as ctx:
                start = time.perf_counter()
                response = client.get(url)
                timings.append((time.perf_counter() - start) * 1000)
            assert response.status_code == 200
        p95 = benchenv.percentile(timings, 0.95)
        worst, worst_p95 = max(worst, statistics.median(timings)), max(worst_p95, p95)
        print(
            f"  {label:<20} median {statistics.median(timings):6.1f} ms  p95 {p95:6.1f} ms  "
            f"{len(ctx.captured_queries)} queries"
        )
    print(
        f"  target < 300 ms (median of every page): {'MET' if worst < 300 else 'MISSED'} "
        f"(worst median {worst:.1f} ms, worst p95 {worst_p95:.1f} ms; load average {os.getloadavg()[0]:.1f})"
    )


if __name__ == "__main__":
    main()
