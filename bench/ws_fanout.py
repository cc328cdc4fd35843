"""Live status fan-out: browser-like WebSocket clients on Daphne, one task's transitions.

Each client signs in the way a browser does (a session cookie, the Origin header) and opens
ws/tasks/<task_id>/ on one of ``--servers`` Daphne processes sharing a Redis. This process
then commits real transitions of that task (row lock, FSM transition, audit entry, events
published after commit) and every client times the "transition" event from the moment the
transaction committed (an on-commit hook registered first in the transaction) to receipt.
Prints connected / failed counts, p50/p95/max commit→receipt (and, per transition, how much of
it passed before this process had published the events) and the load average, for each
``--sockets`` figure in turn (targets: 2,000 connected with zero errors; 1,000 subscribed,
p95 ≤ 200 ms; ``--servers 2`` with twice the clients).

The channel layer is the product's setting: GUARDIA_CHANNEL_LAYER=redis (pub/sub, the default)
or redis-lists (channels_redis's list-based layer), for both Daphne and this process.

Run: .venv/bin/python bench/ws_fanout.py [--sockets 1000,2000 --servers 1 --rounds 5]
     .venv/bin/python bench/ws_fanout.py --sockets 2000 --servers 2
     add --profile for each Daphne's cProfile over the timed transitions (guardia/asgi.py)
"""

from __future__ import annotations

import asyncio
import os
import pstats
import resource
import signal
import time

os.environ.setdefault("GUARDIA_CHANNEL_LAYER", "redis")  # before Django reads its settings

import benchenv
import websockets
from channels.layers import channel_layers
from django.conf import settings
from django.contrib.auth.models import Group, User
from django.db import transaction
from django.test import Client
from redis import asyncio as aioredis

from cmdb.models import Institution, System
from governance import events
from governance.models import OpsTask, Status
from governance.transitions import apply_transition, lock_task


def _own_arguments(parser) -> None:
    parser.add_argument("--sockets", default="1000,2000", help="comma-separated socket counts, run in turn")
    parser.add_argument("--rounds", type=int, default=5, help="transitions per socket count")
    parser.add_argument("--sessions", type=int, default=50, help="signed-in users the sockets share")
    parser.add_argument("--profile", action="store_true", help="cProfile each Daphne over the timed transitions")


ARGS = benchenv.web_load_arguments(_own_arguments)


def populate(sessions: int) -> tuple[OpsTask, list[str]]:
    """One task on one system, and ``sessions`` auditors (who may read every task) signed in."""
    inst = Institution.objects.create(code="WSB", name="웹소켓벤치", tier=2)
    requester = User.objects.create_user("req", password="x")
    system = System.objects.create(code="WSB1", name="팬아웃", institution=inst)
    task = OpsTask.objects.create(
        task_id="OPS-20261130-900", category="INFRA_CONTROL", sub_type="SERVICE_RESTART", title="fan-out",
        system=system, requester=requester, risk="MEDIUM", status=Status.EXECUTING,
    )  # fmt: skip
    auditors = Group.objects.get(name="auditor")
    cookies = []
    for n in range(sessions):
        user = User.objects.create_user(f"watcher{n}", password="x")
        user.groups.add(auditors)
        client = Client()
        client.force_login(user)
        cookies.append(client.cookies[settings.SESSION_COOKIE_NAME].value)
    return task, cookies


def commit_transition(task_pk: int) -> tuple[float, float]:
    """Put the task back to EXECUTING (not measured), then commit EXECUTING → STATE_UNCERTAIN
    through the product's transition path; returns the moment the transaction committed and
    the moment its events had been published to Redis."""
    OpsTask.objects.filter(pk=task_pk).update(status=Status.EXECUTING)
    committed: list[float] = []
    with transaction.atomic():
        transaction.on_commit(lambda: committed.append(time.perf_counter()))
        task = lock_task(pk=task_pk)
        apply_transition("bench", task, "lose_contact", "fan-out bench", reason="fan-out bench")
    return committed[0], PUBLISHED[-1]


PUBLISHED: list[float] = []
_deliver = events.deliver


async def timed_deliver(layer, items) -> None:
    await _deliver(layer, items)
    PUBLISHED.append(time.perf_counter())


events.deliver = timed_deliver  # events.send_many looks it up at each call


class Fleet:
    """``count`` sockets; each records when it saw each round's transition event."""

    def __init__(self) -> None:
        self.sockets: list = []
        self.failed: list[str] = []
        self.received: dict[int, list[float]] = {}
        self.closed: list[str] = []
        self.round = 0

    async def open(self, url: str, origin: str, cookie: str, gate: asyncio.Semaphore) -> None:
        headers = {"Cookie": f"{settings.SESSION_COOKIE_NAME}={cookie}", "Origin": origin}
        try:
            async with gate:
                sock = await websockets.connect(url, additional_headers=headers, open_timeout=120, ping_interval=None)
        except Exception as exc:  # a refused or dropped handshake is the figure, not a crash
            self.failed.append(repr(exc)[:160])
            return
        self.sockets.append(sock)
        asyncio.ensure_future(self.listen(sock))

    async def listen(self, sock) -> None:
        try:
            async for raw in sock:
                if '"kind": "transition"' in raw:  # no parse: this process should cost the figure little
                    self.received.setdefault(self.round, []).append(time.perf_counter())
        except websockets.exceptions.ConnectionClosed as closed:
            if closed.rcvd is None or closed.rcvd.code != 1000:
                self.closed.append(str(closed)[:160])

    async def close(self) -> None:
        await asyncio.gather(*(sock.close() for sock in self.sockets), return_exceptions=True)


async def run(count: int, addresses: list[str], redis_url: str, task: OpsTask, cookies: list[str], rounds: int) -> None:
    fleet = Fleet()
    gate = asyncio.Semaphore(20)  # handshakes in flight: browsers arriving over some seconds, not at once
    began = time.perf_counter()
    await asyncio.gather(
        *(
            fleet.open(
                f"ws://{addresses[i % len(addresses)]}/ws/tasks/{task.task_id}/",
                f"http://{addresses[i % len(addresses)]}",
                cookies[i % len(cookies)],
                gate,
            )
            for i in range(count)
        )
    )
    connect_seconds = time.perf_counter() - began
    latencies: list[float] = []
    publishing: list[float] = []  # commit → events published to Redis, per transition
    missing = 0
    servers, client = cpu_seconds(addresses), resource.getrusage(resource.RUSAGE_SELF)
    # Round 0 is not counted: this process's first publish loads the channel layer's code,
    # which a long-running worker did long before.
    for number in range(rounds + 1):
        if number == 1:
            servers, client = cpu_seconds(addresses), resource.getrusage(resource.RUSAGE_SELF)
            signal_daphne(addresses, signal.SIGUSR1 if ARGS.profile else 0)
        fleet.round = number
        committed, published = await asyncio.to_thread(commit_transition, task.pk)
        deadline = time.perf_counter() + 10
        while len(fleet.received.get(number, [])) < len(fleet.sockets) and time.perf_counter() < deadline:
            await asyncio.sleep(0.01)
        arrivals = fleet.received.get(number, [])
        if number:
            missing += len(fleet.sockets) - len(arrivals)
            latencies += [(at - committed) * 1000 for at in arrivals]
            publishing.append((published - committed) * 1000)
        await asyncio.sleep(0.2)
    servers = [after - before for before, after in zip(servers, cpu_seconds(addresses), strict=True)]
    signal_daphne(addresses, signal.SIGUSR2 if ARGS.profile else 0)
    mine = resource.getrusage(resource.RUSAGE_SELF)
    client_cpu = mine.ru_utime + mine.ru_stime - client.ru_utime - client.ru_stime
    await fleet.close()
    closed_at = time.perf_counter()
    left = await subscriptions_left(redis_url)
    summary = "  ".join(f"p{round(q * 100)} {benchenv.percentile(latencies, q):.1f}" for q in (0.5, 0.95, 0.99))
    print(
        f"{count} sockets on {len(addresses)} Daphne: connected {len(fleet.sockets)}, failed {len(fleet.failed)}, "
        f"closed with an error {len(fleet.closed)} (connected in {connect_seconds:.1f} s)"
    )
    print(
        f"  {rounds} transitions: commit→receipt ms {summary}  max {max(latencies, default=0):.1f}; "
        f"events missing {missing}; {benchenv.load_line()}"
    )
    print(
        "  of which commit→published to Redis (this process's on-commit hooks and publish) ms: "
        + ", ".join(f"{x:.1f}" for x in publishing)
    )
    per_socket = sum(servers) / max(1, rounds * len(fleet.sockets)) * 1e6
    print(
        f"  CPU over the {rounds} transitions: Daphne {' + '.join(f'{x:.2f}' for x in servers)} s "
        f"({per_socket:.0f} µs per socket per transition), this client and its commits {client_cpu:.2f} s"
    )
    print(
        f"  after all {len(fleet.sockets)} closed at once: {left} channel-layer subscriptions left in Redis "
        f"({time.perf_counter() - closed_at:.1f} s later)"
    )
    for problem in (fleet.failed + fleet.closed)[:3]:
        print("  e.g.", problem)
    if ARGS.profile:
        print_profiles()


def print_profiles() -> None:
    """Each Daphne's profile over the timed transitions, the functions that took most time themselves."""
    for path in sorted(benchenv.DATA_DIR.glob("daphne-profile.*")):
        stats = pstats.Stats(str(path))
        stats.sort_stats("tottime").print_stats(16)
        stats.sort_stats("cumulative").print_stats(24)
        path.rename(path.with_name(f"kept-{path.name}"))  # for pstats by hand; the run's data dir


async def subscriptions_left(redis_url: str, patience: float = 30) -> int:
    """The layer's channels and groups still subscribed in Redis, once none are or after ``patience`` s."""
    client = aioredis.Redis.from_url(redis_url)
    deadline = time.perf_counter() + patience
    try:
        while (left := len(await client.pubsub_channels("asgi*"))) and time.perf_counter() < deadline:
            await asyncio.sleep(0.1)
    finally:
        await client.aclose()
    return left


def daphne_processes() -> dict[str, tuple[int, float]]:
    """Each Daphne process (a child of this one) by its port: its pid and the user + system
    CPU seconds it has used."""
    ticks = os.sysconf("SC_CLK_TCK")
    found = {}
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            argv = open(f"/proc/{pid}/cmdline", "rb").read().split(b"\0")
            stat = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if b"daphne" in argv and b"-p" in argv:
            found[argv[argv.index(b"-p") + 1].decode()] = (int(pid), (int(stat[11]) + int(stat[12])) / ticks)
    return found


def cpu_seconds(addresses: list[str]) -> list[float]:
    found = daphne_processes()
    return [found.get(address.rsplit(":", 1)[1], (0, 0.0))[1] for address in addresses]


def signal_daphne(addresses: list[str], signum: int) -> None:
    """Start (SIGUSR1) or stop and write (SIGUSR2) each Daphne's profile; 0 sends nothing."""
    if not signum:
        return
    found = daphne_processes()
    for address in addresses:
        os.kill(found[address.rsplit(":", 1)[1]][0], signum)


def main() -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))  # Daphne inherits it
    task, cookies = populate(ARGS.sessions)
    counts = [int(n) for n in ARGS.sockets.split(",")]
    layer = os.environ["GUARDIA_CHANNEL_LAYER"]
    profile = {"GUARDIA_PROFILE_TO": str(benchenv.DATA_DIR / "daphne-profile")} if ARGS.profile else {}
    with benchenv.web_servers(ARGS.servers, GUARDIA_CHANNEL_LAYER=layer, **profile) as (addresses, redis_url):
        # This process publishes through the same Redis the Daphne processes subscribe to.
        settings.CHANNEL_LAYERS["default"]["CONFIG"]["hosts"][0]["address"] = redis_url
        channel_layers.backends.clear()
        print(benchenv.machine_line())
        print(f"channel layer: {settings.CHANNEL_LAYERS['default']['BACKEND']}, open files limit {hard}")
        for count in counts:
            asyncio.run(run(count, addresses, redis_url, task, cookies, ARGS.rounds))
    logged = "".join((benchenv.DATA_DIR / f"daphne{i}.log").read_text(errors="replace") for i in range(ARGS.servers))
    print(
        f"Daphne logs: {logged.count('Traceback')} tracebacks, "
        f"{logged.count('Too many connections')} 'Too many connections'"
    )


if __name__ == "__main__":
    main()
