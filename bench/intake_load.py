"""POST /api/v1/sr/intake under 20 concurrent clients against a real Daphne on SQLite.

Every request does the whole intake: the destructive-order screen, the caller's CMDB slice,
the rules parser (intent, system, server ordinal), the playbook's typed parameters, filing
through governance (plan rendered and hashed, approval policy, audit entries, SR request
row) and the live event. Each client has its own keep-alive connection, token and server,
and varies its wording. Prints requests/s, p50/p95/p99 and the load average
(targets: at least 150 requests/s, p95 under 150 ms).

With --parse-only the clients post the same requests to /api/v1/sr/parse (screen, parse, CMDB
mapping, plan rendering; nothing written), which shows what the filing itself costs.

Run: .venv/bin/python bench/intake_load.py [--clients 20 --seconds 15 --servers 1 --parse-only]
"""

from __future__ import annotations

import http.client
import json
import os
import time
from concurrent.futures import ThreadPoolExecutor

import benchenv
from django.contrib.auth.models import Group, User
from rest_framework.authtoken.models import Token

from cmdb.models import Institution, Server, System, SystemOwner
from governance.models import OpsTask
from intake.models import IntakeRequest


def _own_arguments(parser) -> None:
    parser.add_argument("--seconds", type=float, default=15.0, help="measured run length")
    parser.add_argument("--parse-only", action="store_true", help="POST /api/v1/sr/parse instead: no filing, no write")


ARGS = benchenv.web_load_arguments(_own_arguments)

PHRASES = (
    "{system} WAS{n}번 메모리 점검 부탁드립니다",
    "{system} {n}번 서버 메모리 확인해 주세요",
    "{system} was #{n} 메모리 사용량 점검",
    "{system} WAS{n} 메모리 점검 요청 (SR-2026-{sr:04d})",
)


def populate(clients: int) -> list[tuple[str, str]]:
    """One institution, a system per five clients with four WAS each; a site manager per client."""
    field = Group.objects.get(name="site_manager")
    lead = Group.objects.get(name="team_lead")
    supervisor = User.objects.create_user("sup", password="x")
    supervisor.groups.add(Group.objects.get(name="supervisor"))
    inst = Institution.objects.create(code="BENCH", name="벤치기관", tier=2)
    work = []
    for c in range(clients):
        if c % 5 == 0:
            system = System.objects.create(code=f"BENCH-S{c // 5}", name=f"벤치시스템{c // 5}", institution=inst)
            owner = User.objects.create_user(f"owner{c}", password="x")
            owner.groups.add(lead)
            SystemOwner.objects.create(system=system, owner=owner, supervisor=supervisor)
            for n in range(1, 5):
                Server.objects.create(
                    system=system,
                    server_id=f"bench{c // 5}-was{n:02d}",
                    hostname=f"bench{c // 5}-was{n:02d}",
                    ip=f"127.0.{c // 5}.{n}",
                )
        person = User.objects.create_user(f"field{c}", password="x")
        person.groups.add(field)
        inst.site_managers.add(person)
        work.append((Token.objects.create(user=person).key, system.name))
    return work


URL, EXPECTED = ("/api/v1/sr/parse", 200) if ARGS.parse_only else ("/api/v1/sr/intake", 201)


def client(address: str, token: str, system: str, until: float, number: int, latencies: list, errors: list) -> None:
    host, port = address.split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=30)
    headers = {"Authorization": f"Token {token}", "Content-Type": "application/json"}
    sent = 0
    while time.perf_counter() < until:
        text = PHRASES[sent % len(PHRASES)].format(system=system, n=sent % 4 + 1, sr=number * 1000 + sent)
        start = time.perf_counter()
        conn.request("POST", URL, json.dumps({"raw_request": text}), headers)
        response = conn.getresponse()
        payload = response.read()
        latencies.append(time.perf_counter() - start)
        sent += 1
        if response.status != EXPECTED:
            errors.append(f"{response.status} {payload[:200]!r}")
    conn.close()


def main() -> None:
    args = ARGS
    work = populate(args.clients)
    errors: list[str] = []
    latencies: list[float] = []
    with benchenv.web_servers(args.servers) as (addresses, _), ThreadPoolExecutor(args.clients) as pool:
        where = [addresses[i % len(addresses)] for i in range(len(work))]
        # Imports, connections and caches are warmed first and not measured.
        list(pool.map(lambda i: client(where[i], *work[i], time.perf_counter() + 0.2, i, [], errors), range(len(work))))
        before = OpsTask.objects.count()
        until = time.perf_counter() + args.seconds
        began = time.perf_counter()
        list(pool.map(lambda i: client(where[i], *work[i], until, 100 + i, latencies, errors), range(len(work))))
        wall = time.perf_counter() - began
    from django.conf import settings

    ms = sorted(x * 1000 for x in latencies)
    engine = settings.DATABASES["default"]["ENGINE"].rsplit(".", 1)[-1]
    summary = "  ".join(f"p{round(q * 100)} {benchenv.percentile(ms, q):.1f}" for q in (0.5, 0.95, 0.99))
    for line in (
        benchenv.machine_line(),
        f"endpoint: {URL}, database: {engine}, server: daphne × {args.servers}",
        f"clients: {args.clients}, requests: {len(ms)}, errors: {len(errors)}, "
        f"tasks filed: {OpsTask.objects.count() - before}, SR rows: {IntakeRequest.objects.count()}",
        f"latency ms: {summary}  max {ms[-1]:.1f}",
        f"throughput: {len(ms) / wall:.0f} requests/s over {wall:.1f} s (target ≥ 150 requests/s, p95 < 150 ms)",
        f"load average after the run: {', '.join(f'{x:.1f}' for x in os.getloadavg())}",
    ):
        print(line)
    if errors:
        print("first errors:", errors[:3])


if __name__ == "__main__":
    main()
