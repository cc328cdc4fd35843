"""POST /api/v1/approval/process under 20 concurrent clients against a real Daphne.

Each client has its own keep-alive HTTP connection and token and approves distinct steps,
so every request does the full work: lock, decide, audit, notify, enqueue execution.
Prints p50/p95/p99 latency and requests/s (target p95 < 100 ms on SQLite).

Run: .venv/bin/python bench/governance_approval_api.py [--clients 20 --requests 1000 --servers 1 --postgres]
(--postgres starts a throwaway PostgreSQL 15 cluster, synchronous commit on, and runs against it.)
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import sys
import threading
import time
from contextlib import ExitStack
from pathlib import Path

PARSER = argparse.ArgumentParser()
PARSER.add_argument("--clients", type=int, default=20)
PARSER.add_argument("--requests", type=int, default=1000, help="total requests")
PARSER.add_argument("--servers", type=int, default=1, help="Daphne processes (clients spread round-robin)")
PARSER.add_argument("--postgres", action="store_true", help="run against a throwaway PostgreSQL cluster")
ARGS = PARSER.parse_args()
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
if ARGS.postgres:
    from tests.pg import PostgresCluster

    CLUSTER = PostgresCluster().start()
    os.environ["GUARDIA_DATABASE_URL"] = CLUSTER.url

import benchenv
from django.contrib.auth.models import Group, User
from django.db import transaction

from cmdb.models import Institution
from governance.models import OpsTask, Status
from tests.approval_work import pending_owner_approvals
from tests.live import daphne, redis_server, service_env


def populate(clients: int, per_client: int) -> list[tuple[str, list[int]]]:
    lead, sup, field = (Group.objects.get(name=n) for n in ("team_lead", "supervisor", "site_manager"))
    requester = User.objects.create_user("req", password="x")
    requester.groups.add(field)
    supervisor = User.objects.create_user("sup", password="x")
    supervisor.groups.add(sup)
    inst = Institution.objects.create(code="BENCH", name="벤치기관", tier=2)
    work = []
    with transaction.atomic():
        for c in range(clients):
            owner = User.objects.create_user(f"owner{c}", password="x")
            owner.groups.add(lead)
            work.append(
                pending_owner_approvals(
                    owner=owner,
                    supervisor=supervisor,
                    requester=requester,
                    institution=inst,
                    code=f"B{c:02d}",
                    name=f"시스템{c}",
                    count=per_client,
                    title="bench",
                )
            )
    return work


def client(address: str, token: str, step_ids: list[int], latencies: list[float], errors: list[str]) -> None:
    host, port = address.split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=30)
    headers = {"Authorization": f"Token {token}", "Content-Type": "application/json"}
    for step_id in step_ids:
        body = json.dumps({"step_id": step_id, "decision": "APPROVED", "comments": "bench"})
        start = time.perf_counter()
        conn.request("POST", "/api/v1/approval/process", body, headers)
        response = conn.getresponse()
        payload = response.read()
        latencies.append(time.perf_counter() - start)
        if response.status != 200:
            errors.append(f"{response.status} {payload[:200]!r}")
    conn.close()


def main() -> None:
    args = ARGS
    per_client = args.requests // args.clients
    work = populate(args.clients, per_client)
    from django.conf import settings

    db_url = os.environ.get("GUARDIA_DATABASE_URL") or f"sqlite:///{settings.DATABASES['default']['NAME']}"
    with redis_server() as redis_url, ExitStack() as stack:
        env = service_env(db_url, redis_url, GUARDIA_LOG_LEVEL="WARNING")
        addresses = [
            stack.enter_context(daphne(env, benchenv.DATA_DIR / f"daphne{i}.log")) for i in range(args.servers)
        ]
        # Warm-up: one request per client so imports and connections are not measured.
        warm: list[float] = []
        errors: list[str] = []
        for i, (token, steps) in enumerate(work):
            client(addresses[i % len(addresses)], token, steps[:1], warm, errors)
        latencies: list[float] = []
        threads = [
            threading.Thread(target=client, args=(addresses[i % len(addresses)], token, steps[1:], latencies, errors))
            for i, (token, steps) in enumerate(work)
        ]
        start = time.perf_counter()
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        wall = time.perf_counter() - start
    done = OpsTask.objects.filter(status=Status.APPROVED).count()
    ms = [x * 1000 for x in latencies]
    print(benchenv.machine_line())
    print(f"database: {settings.DATABASES['default']['ENGINE'].rsplit('.', 1)[-1]}, server: daphne × {args.servers}")
    print(f"clients: {args.clients}, requests: {len(ms)}, errors: {len(errors)}, tasks approved: {done}")
    print(
        f"latency ms: p50 {benchenv.percentile(ms, 0.5):.1f}  p95 {benchenv.percentile(ms, 0.95):.1f}  "
        f"p99 {benchenv.percentile(ms, 0.99):.1f}  max {max(ms):.1f}"
    )
    print(f"throughput: {len(ms) / wall:.0f} requests/s over {wall:.1f} s (target p95 < 100 ms)")
    if errors:
        print("first errors:", errors[:3])


if __name__ == "__main__":
    try:
        main()
    finally:
        if ARGS.postgres:
            from django.db import connections

            connections.close_all()
            CLUSTER.stop()
