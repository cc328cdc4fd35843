"""SSH transport figures on the real testbed: connect+auth+exec latency, commands/s on an
open connection, connections/s with 16 threads, SFTP put with server-side SHA-256.

    python bench/ssh_latency.py [--servers 16] [--rounds 50]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor

import benchenv  # noqa: F401  (Django set up and migrated)

from execution.transport import SSHTransport
from testbed import Testbed
from testbed.register import register_testbed


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--servers", type=int, default=16)
    parser.add_argument("--rounds", type=int, default=50)
    args = parser.parse_args()
    tb = Testbed(tempfile.mkdtemp(prefix="guardia-bench-ssh-"))
    tb.up(args.servers)
    try:
        servers = register_testbed(tb.manifest)
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


if __name__ == "__main__":
    main()
