"""One command on 1,000 logical servers of a scale-mode testbed (target <= 20 s).

    python bench/ssh_scale.py [--servers 1000] [--sshd 20] [--threads 16]

Each server gets its own connection (connect, pinned host key, auth, one command, close),
16 at a time, like the engine's bounded parallelism. Also prints the testbed start-up time,
this process's peak memory, the negotiated algorithms, and the CPU per server on both sides
(this process; the testbed's sshd with every connection, session and shell process it reaped),
which on two cores is what bounds the figure.
"""

from __future__ import annotations

import argparse
import os
import resource
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor

import benchenv  # noqa: F401  (Django set up and migrated)
from ssh_latency import cpu_of

from execution.transport import SSHTransport
from testbed import Testbed
from testbed.register import register_testbed


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--servers", type=int, default=1000)
    parser.add_argument("--sshd", type=int, default=20)
    parser.add_argument("--threads", type=int, default=16)
    args = parser.parse_args()
    tb = Testbed(tempfile.mkdtemp(prefix="guardia-bench-scale-"))
    started = time.perf_counter()
    tb.up(args.servers, sshd_processes=args.sshd)
    print(f"testbed up: {args.servers} logical servers on {args.sshd} sshd in {time.perf_counter() - started:.1f} s")
    try:
        servers = register_testbed(tb.manifest)

        negotiated: dict = {}

        def one(server) -> bool:
            with SSHTransport(server) as ssh:
                result = ssh.run("cat " + server.app_path + "/app.war", timeout=30)
                negotiated.update(ssh.algorithms)
                return result.ok and result.stdout.startswith("version=1.0.0")

        sshd = [entry["pid"] for entry in tb.manifest["sshd"]]
        before, testbed = resource.getrusage(resource.RUSAGE_SELF), cpu_of(sshd)
        started = time.perf_counter()
        with ThreadPoolExecutor(args.threads) as pool:
            results = list(pool.map(one, servers))
        took = time.perf_counter() - started
        time.sleep(1)  # sshd reaps the last sessions' processes
        after = resource.getrusage(resource.RUSAGE_SELF)
        controller = after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime
        testbed = cpu_of(sshd) - testbed
        peak = after.ru_maxrss / 1024
        print(
            f"one command on {len(servers)} servers, {args.threads} threads: {took:.1f} s "
            f"({len(servers) / took:.0f} servers/s), {sum(results)} ok; peak RSS {peak:.0f} MB "
            f"(load {os.getloadavg()[0]:.1f})\n"
            f"CPU: this process {controller:.1f} s ({controller / len(servers) * 1000:.1f} ms a server), "
            f"testbed sshd, sessions and shells {testbed:.1f} s ({testbed / len(servers) * 1000:.1f} ms a server), "
            f"{(controller + testbed) / took:.2f} cores busy on average; negotiated {negotiated}"
        )
        if took > 20:
            print("TARGET MISSED: <= 20 s")
    finally:
        tb.down()


if __name__ == "__main__":
    main()
