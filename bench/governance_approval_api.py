"""POST /api/v1/approval/process against real Daphne processes: closed loop, then open loop.

Each approval is the full decision: lock, decide, audit, inbox row, live events, the execution
queued on the ORM broker. Clients approve distinct steps, each with its owner's token.

- closed loop: ``--clients`` keep-alive clients, each sending its next request as soon as the
  last one answers (targets: SQLite ≥ 100 approvals/s, p95 ≤ 400 ms; PostgreSQL with two
  Daphne processes ≥ 150 approvals/s, p95 ≤ 250 ms; zero errors);
- open loop: approvals arriving at ``--rate`` per second with Poisson (exponential) gaps for
  ``--seconds``, each timed from its arrival, so a slow answer cannot hold the next one back
  (target p95 ≤ 100 ms).

Also printed: the SQL statements of one decision (counted in this process through the same
REST endpoint), the CPU time the Daphne processes spent per approval in the closed loop (what
bounds the throughput on a machine's cores, and far less skewed by other load than the
rates) and the benchmark clients' own CPU per request (they share the cores); the floor: the
same clients, URL and tokens sending an authenticated GET that DRF answers 405 before any view
code (middleware, token, Daphne and Django's handler: what any API request costs), with its
rate, latency and CPU; the load average, and the audit chain verified after the run. With
``--postgres`` also, for the closed loop: what the database's backends wait on (pg_stat_activity
sampled every few ms: the chain head's row lock, the client, the WAL flush) and PostgreSQL's CPU
per approval.

Run: .venv/bin/python bench/governance_approval_api.py                        (SQLite, 1 Daphne)
     .venv/bin/python bench/governance_approval_api.py --postgres --servers 2 (PostgreSQL 15)
"""

from __future__ import annotations

import http.client
import json
import os
import random
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path

# As in production: DEBUG's cursor wrapper would format and keep every statement in the web
# processes (the statement count below captures them on purpose, DEBUG or not).
os.environ.setdefault("GUARDIA_DEBUG", "false")

import benchenv
from django.contrib.auth.models import Group, User
from django.db import connection, transaction
from django.test import Client
from django.test.utils import CaptureQueriesContext

from audit.verify import verify_chain
from cmdb.models import Institution
from governance.models import OpsTask, Status
from tests.approval_work import pending_owner_approvals

URL = "/api/v1/approval/process"


def _own_arguments(parser) -> None:
    parser.add_argument("--requests", type=int, default=1000, help="closed loop: total requests")
    parser.add_argument("--rate", type=float, default=20.0, help="open loop: approvals per second")
    parser.add_argument("--seconds", type=float, default=15.0, help="open loop: run length")


ARGS = benchenv.web_load_arguments(_own_arguments)


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


def approve(conn: http.client.HTTPConnection, token: str, step_id: int) -> tuple[int, bytes]:
    if step_id < 0:  # the floor: the same URL, authenticated, answered 405 by DRF before any view code
        conn.request("GET", URL, headers={"Authorization": f"Token {token}"})
        response = conn.getresponse()
        return (200 if response.status == 405 else response.status), response.read()
    body = json.dumps({"step_id": step_id, "decision": "APPROVED", "comments": "bench"})
    conn.request("POST", URL, body, {"Authorization": f"Token {token}", "Content-Type": "application/json"})
    response = conn.getresponse()
    return response.status, response.read()


def connect(address: str) -> http.client.HTTPConnection:
    host, port = address.split(":")
    return http.client.HTTPConnection(host, int(port), timeout=60)


def closed_client(address: str, token: str, step_ids: list[int], latencies: list[float], errors: list[str]) -> None:
    conn = connect(address)
    for step_id in step_ids:
        start = time.perf_counter()
        status, payload = approve(conn, token, step_id)
        latencies.append(time.perf_counter() - start)
        if status != 200:
            errors.append(f"{status} {payload[:200]!r}")
    conn.close()


def open_loop(addresses: list[str], jobs: list[tuple[str, int]], rate: float, clients: int):
    """Arrivals at Poisson times; each is sent on a pooled keep-alive connection and timed from
    its arrival (a request that waits for a free connection counts that wait)."""
    gaps = random.Random(20).expovariate
    local = threading.local()
    latencies: list[float] = []
    errors: list[str] = []
    turn = iter(range(10**9))

    def send(token: str, step_id: int, arrived: float) -> None:
        if not hasattr(local, "conn"):
            local.conn = connect(addresses[next(turn) % len(addresses)])
        status, payload = approve(local.conn, token, step_id)
        latencies.append(time.perf_counter() - arrived)
        if status != 200:
            errors.append(f"{status} {payload[:200]!r}")

    with ThreadPoolExecutor(clients) as pool:
        began = due = time.perf_counter()
        for token, step_id in jobs:
            due += gaps(rate)
            time.sleep(max(0.0, due - time.perf_counter()))
            pool.submit(send, token, step_id, due)
    return latencies, errors, time.perf_counter() - began


def statements_per_decision(token: str, step_id: int) -> int:
    """One decision through the same REST endpoint in this process, its SQL statements counted."""
    client = Client(HTTP_AUTHORIZATION=f"Token {token}", HTTP_HOST="localhost")
    body = json.dumps({"step_id": step_id, "decision": "APPROVED", "comments": "bench"})
    with CaptureQueriesContext(connection) as queries:
        response = client.post(URL, body, content_type="application/json")
    assert response.status_code == 200, response.content
    return len(queries)


def web_cpu_seconds() -> float:
    """CPU time (user + system) used so far by this run's Daphne processes (its children):
    per approval, the web tier's own cost, which the machine's load does not inflate much."""
    total = 0.0
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
            cmdline = (stat.parent / "cmdline").read_bytes()
        except OSError:
            continue
        if int(fields[1]) == os.getpid() and b"daphne" in cmdline:
            total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return total


def own_cpu_seconds() -> float:
    """CPU time (user + system) of this benchmark process so far: its clients share the cores."""
    usage = os.times()
    return usage.user + usage.system


@dataclass
class Phase:
    latencies: list[float]
    errors: list[str]
    wall: float
    web_cpu: float
    client_cpu: float

    @property
    def timed(self) -> tuple[list[float], list[str], float]:
        return self.latencies, self.errors, self.wall

    def print_cpu(self, what: str) -> None:
        count = max(len(self.latencies), 1)
        print(
            f"  CPU per {what}: web processes {self.web_cpu / count * 1000:.1f} ms, "
            f"benchmark clients {self.client_cpu / count * 1000:.1f} ms"
        )


def closed_phase(pool: ThreadPoolExecutor, where: list[str], jobs: list[tuple[str, list[int]]]) -> Phase:
    """Each client (one per job) sends its requests back to back on its own keep-alive connection."""
    latencies: list[float] = []
    errors: list[str] = []
    began, web_began, own_began = time.perf_counter(), web_cpu_seconds(), own_cpu_seconds()
    list(pool.map(lambda i: closed_client(where[i], jobs[i][0], jobs[i][1], latencies, errors), range(len(jobs))))
    wall = time.perf_counter() - began
    return Phase(latencies, errors, wall, web_cpu_seconds() - web_began, own_cpu_seconds() - own_began)


class WaitSampler:
    """PostgreSQL only: what the database's client backends are doing during the closed loop,
    sampled every few ms from pg_stat_activity on a connection of its own. A backend waiting for a
    row lock shows ``active Lock:transactionid`` (or ``Lock:tuple``) with the statement it waits in;
    one holding locks while the web process works shows ``idle in transaction`` with its last
    statement; the commit's WAL flush shows ``IO:WALSync`` / ``LWLock:WALWrite``."""

    QUERY = (
        "SELECT state, coalesce(wait_event_type || ':' || wait_event, 'CPU'), left(regexp_replace(query, "
        "'\\s+', ' ', 'g'), 48) FROM pg_stat_activity WHERE backend_type = 'client backend' "
        "AND pid <> pg_backend_pid() AND datname = current_database() AND state <> 'idle'"
    )

    def __init__(self, url: str) -> None:
        self.url, self.samples, self.counts = url, 0, Counter[tuple[str, str, str]]()
        self.port = url.rsplit(":", 1)[1].split("/")[0].encode()
        self.cpu, self.own = [0.0, 0.0], 0
        self.busy = Counter[int]()
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        import psycopg

        with psycopg.connect(self.url, autocommit=True) as conn:
            self.own = conn.info.backend_pid
            while not self.stop.wait(0.004):
                rows = conn.execute(self.QUERY).fetchall()
                self.samples += 1
                self.busy[len(rows)] += 1
                self.counts.update((state, wait, query.split(" WHERE")[0]) for state, wait, query in rows)

    def server_cpu_seconds(self) -> list[float]:
        """CPU time (user + system) of this cluster's client backends, and of all its processes (its
        postmaster, ``-p PORT``, and its children: the WAL writer, autovacuum, the checkpointer)."""
        stats = []
        for stat in Path("/proc").glob("[0-9]*/stat"):
            try:
                fields = stat.read_text().rsplit(")", 1)[1].split()
                cmdline = (stat.parent / "cmdline").read_bytes().split(b"\0")
            except OSError:
                continue
            stats.append((int(stat.parent.name), int(fields[1]), int(fields[11]) + int(fields[12]), cmdline))
        main = {pid for pid, _, _, cmd in stats if cmd[0].endswith(b"postgres") and self._on_port(cmd)}
        # Not the sampler's own backend: its queries are not the decisions' cost.
        ours = [(cpu, cmd[0]) for pid, parent, cpu, cmd in stats if pid != self.own and (pid in main or parent in main)]
        ticks = [sum(cpu for cpu, title in ours if b"127.0.0.1(" in title), sum(cpu for cpu, _ in ours)]
        return [t / os.sysconf("SC_CLK_TCK") for t in ticks]

    def _on_port(self, cmdline: list[bytes]) -> bool:
        return any(a == b"-p" and b == self.port for a, b in zip(cmdline, cmdline[1:], strict=False))

    def __enter__(self) -> WaitSampler:
        self.cpu = [-x for x in self.server_cpu_seconds()]
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.cpu = [a + b for a, b in zip(self.cpu, self.server_cpu_seconds(), strict=True)]
        self.stop.set()
        self.thread.join()

    def print(self, approvals: int) -> None:
        n = max(self.samples, 1)
        backends, everything = (x / max(approvals, 1) * 1000 for x in self.cpu)
        print(f"  CPU per approval: PostgreSQL {everything:.1f} ms, of which its client backends {backends:.1f} ms")
        mean = sum(k * v for k, v in self.busy.items()) / n
        print(f"  PostgreSQL backends in a transaction or statement, {self.samples} samples: mean {mean:.1f}")
        for (state, wait, query), count in self.counts.most_common(24):
            print(f"    {count / n:5.2f}  {state:<20} {wait:<26} {query}")


def figures(name: str, latencies: list[float], errors: list[str], wall: float, target: str) -> None:
    ms = [x * 1000 for x in latencies]
    summary = "  ".join(f"p{round(q * 100)} {benchenv.percentile(ms, q):.1f}" for q in (0.5, 0.95, 0.99))
    print(f"{name}: {len(ms)} approvals, errors {len(errors)}, {len(ms) / wall:.1f} approvals/s over {wall:.1f} s")
    print(f"  latency ms: {summary}  max {max(ms):.1f}   ({target}; {benchenv.load_line()})")
    if errors:
        print("  first errors:", errors[:3])


def main() -> None:
    args = ARGS
    per_client = args.requests // args.clients
    open_count = int(args.rate * args.seconds * 1.5) + 10
    work = populate(args.clients, per_client + 2 + open_count // args.clients + 1)
    # Per client: step 0 counts the statements, step 1 warms up, then the closed loop's share,
    # then the rest is dealt out to the open loop.
    statements = statements_per_decision(work[0][0], work[0][1][0])
    spare = [
        (token, s)
        for index in range(per_client + 2, len(work[0][1]))
        for token, steps in work
        for s in steps[index : index + 1]
    ]
    engine = connection.vendor
    with benchenv.web_servers(args.servers) as (addresses, _):
        where = [addresses[i % len(addresses)] for i in range(len(work))]
        with ThreadPoolExecutor(args.clients) as pool:
            # Warm-up: one request per client, so imports and connections are not measured.
            closed_phase(pool, where, [(token, steps[1:2]) for token, steps in work])
            url = os.environ.get("GUARDIA_DATABASE_URL", "")
            with WaitSampler(url) if engine == "postgresql" else nullcontext() as sampler:
                closed = closed_phase(pool, where, [(token, steps[2 : per_client + 2]) for token, steps in work])
            # The floor: the same clients, URL and token, answered by DRF (405) before any view code.
            floor = closed_phase(pool, where, [(token, [-1] * per_client) for token, _ in work])
        jobs = spare[: int(args.rate * args.seconds)]
        open_latencies, open_errors, open_wall = open_loop(addresses, jobs, args.rate, args.clients)
    report = verify_chain()
    print(benchenv.machine_line())
    print(f"database: {engine}, server: daphne × {args.servers}, statements per decision: {statements}")
    closed_target = "target ≥ 150/s, p95 ≤ 250 ms" if engine == "postgresql" else "target ≥ 100/s, p95 ≤ 400 ms"
    figures(f"closed loop, {args.clients} clients", *closed.timed, closed_target)
    closed.print_cpu("approval")
    if sampler is not None:
        sampler.print(len(closed.latencies))
    figures(f"floor: authenticated GET of the same URL (405), {args.clients} clients", *floor.timed, "no target")
    floor.print_cpu("request")
    figures(f"open loop, {args.rate:g}/s Poisson", open_latencies, open_errors, open_wall, "target p95 ≤ 100 ms")
    print(
        f"tasks approved: {OpsTask.objects.filter(status=Status.APPROVED).count()}; audit chain: "
        f"{'intact' if report.ok else f'BROKEN at {report.first_broken_seq} ({report.kind})'}, {report.entries} entries"
    )


if __name__ == "__main__":
    main()
