"""SSH transport figures on the real testbed: connect+auth+exec latency, commands/s on an
open connection, connections/s with 16 threads, SFTP put with server-side SHA-256, and what
each algorithm choice costs a one-command connection (--algorithms).

    python bench/ssh_latency.py [--servers 16] [--rounds 50] [--algorithms [--connections 300]]

--algorithms: the same connection (connect, pinned host key, auth, one command, close; 16
threads) with the transport's own preference lists and with one choice changed at a time:
wall per connection, the controller's CPU and the testbed sshd's CPU per connection (sshd's
connection, privilege-separation, session and shell processes, read from /proc once reaped),
and what was negotiated. The variants run in turn, twice, so a change of load shows.
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import benchenv  # noqa: F401  (Django set up and migrated)

from execution import transport
from execution.transport import SSHTransport
from testbed import Testbed
from testbed.register import register_testbed


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--servers", type=int, default=16)
    parser.add_argument("--rounds", type=int, default=50)
    parser.add_argument("--algorithms", action="store_true", help="only the per-algorithm costs")
    parser.add_argument("--connections", type=int, default=300, help="connections per variant (--algorithms)")
    args = parser.parse_args()
    tb = Testbed(tempfile.mkdtemp(prefix="guardia-bench-ssh-"))
    tb.up(args.servers)
    try:
        servers = register_testbed(tb.manifest)
        if args.algorithms:
            algorithm_costs(tb, servers, args.connections)
            return
        # 1. one at a time: connect + host-key check + auth + one command + close
        lat = []
        for i in range(args.rounds):
            started = time.perf_counter()
            with SSHTransport(servers[i % len(servers)]) as ssh:
                assert ssh.run("true", timeout=10).ok
            lat.append(time.perf_counter() - started)
        print(
            f"connect+auth+exec+close: p50 {statistics.median(lat) * 1000:.1f} ms, "
            f"p95 {sorted(lat)[int(0.95 * (len(lat) - 1))] * 1000:.1f} ms ({args.rounds} rounds)"
        )
        # 2. commands on one open connection
        with SSHTransport(servers[0]) as ssh:
            n = args.rounds * 10
            started = time.perf_counter()
            for _ in range(n):
                assert ssh.run("true", timeout=10).ok
            took = time.perf_counter() - started
            print(f"commands on an open connection: {n / took:.0f}/s ({took / n * 1000:.2f} ms each)")
            payload = b"version=9.9.9\n" + bytes(1 << 20)
            started = time.perf_counter()
            for _ in range(10):
                ssh.put(payload, servers[0].deploy_path + "/bench.war")
            print(f"SFTP put 1 MiB + sha256sum on the server + rename: {(time.perf_counter() - started) * 100:.1f} ms")

        # 3. 16 threads opening connections
        def one(i: int) -> None:
            with SSHTransport(servers[i % len(servers)]) as ssh:
                assert ssh.run("true", timeout=30).ok

        total = args.rounds * 8
        started = time.perf_counter()
        with ThreadPoolExecutor(16) as pool:
            list(pool.map(one, range(total)))
        took = time.perf_counter() - started
        print(f"connections with 16 threads (connect+auth+exec+close): {total / took:.0f}/s ({total} in {took:.1f} s)")
    finally:
        tb.down()


# One choice changed at a time against the transport's own lists (the module's constants, which
# every new connection reads): (label, constant, value).
VARIANTS = [
    ("the transport's lists", "", ()),
    ("kex curve25519-sha256", "KEX_ALGORITHMS", ("curve25519-sha256@libssh.org",)),
    ("kex ecdh-sha2-nistp384", "KEX_ALGORITHMS", ("ecdh-sha2-nistp384",)),
    ("kex diffie-hellman-group14-sha256", "KEX_ALGORITHMS", ("diffie-hellman-group14-sha256",)),
    ("cipher aes128-ctr + hmac-sha2-256-etm", "CIPHERS", ("aes128-ctr",)),
    ("cipher aes256-gcm", "CIPHERS", ("aes256-gcm@openssh.com",)),
]


def cpu_of(pids: list[int]) -> float:
    """CPU seconds of these processes and of the children they reaped (utime stime cutime cstime)."""
    ticks = 0
    for pid in pids:
        try:
            ticks += sum(int(v) for v in Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[11:15])
        except OSError:
            continue
    return ticks / os.sysconf("SC_CLK_TCK")


def algorithm_costs(tb: Testbed, servers: list, connections: int) -> None:
    sshd = [entry["pid"] for entry in tb.manifest["sshd"]]
    chosen = {name: getattr(transport, name) for name in ("KEX_ALGORITHMS", "CIPHERS")}
    negotiated: dict[str, dict] = {}

    def one(i: int) -> None:
        with SSHTransport(servers[i % len(servers)]) as ssh:
            assert ssh.run("uptime", timeout=30).ok
            negotiated[label] = ssh.algorithms

    print(f"one command per connection, {connections} connections, 16 threads ({load()})")
    for _ in range(2):
        for label, name, value in VARIANTS:
            for constant, original in chosen.items():
                setattr(transport, constant, value if constant == name else original)
            before, testbed, started = resource.getrusage(resource.RUSAGE_SELF), cpu_of(sshd), time.perf_counter()
            with ThreadPoolExecutor(16) as pool:
                list(pool.map(one, range(connections)))
            wall = time.perf_counter() - started
            time.sleep(1)  # sshd reaps the last sessions' processes
            after = resource.getrusage(resource.RUSAGE_SELF)
            controller = (after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime) / connections
            print(
                f"  {label:40s} {wall / connections * 1000:5.1f} ms wall, controller {controller * 1000:4.1f} ms, "
                f"sshd {(cpu_of(sshd) - testbed) / connections * 1000:5.1f} ms CPU a connection; "
                f"{negotiated[label]} ({load()})",
                flush=True,
            )
    for constant, original in chosen.items():
        setattr(transport, constant, original)


def load() -> str:
    return f"load {os.getloadavg()[0]:.1f}"


if __name__ == "__main__":
    main()
