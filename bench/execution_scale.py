"""Scale run on 1,000 logical testbed servers (a few dozen sshd processes, one WAS host):

1. APP_DEPLOY rolling in batches of 10 % (canary 1 % first), 16 in parallel   target <= 60 s
2. one command (RAW_COMMAND `uptime`) on all 1,000                              target <= 20 s
3. a failed batch of 100 rolled back (one server's new version never opens)    target <= 10 s
4. the worker's peak memory (this process runs the engine)                     target < 300 MB

Plus the bare paramiko reference (execution_side_by_side.bare_run: same steps, 16 threads, no
batches) on the same servers first, so the engine's ratio at this scale is known. Every figure
is printed with the load average: the machine is shared, and the figures move with it.

Run: .venv/bin/python bench/execution_scale.py [--servers 1000 --sshd 40] [--skip-bare]
"""

from __future__ import annotations

import argparse
import os
import time

import execution_common as common

from cmdb.models import HealthCriteria
from execution.models import StepResult
from execution.services import run_task


def load() -> str:
    return "load {:.1f} {:.1f} {:.1f}".format(*os.getloadavg())


def timed(servers, sub_type: str, parameters: dict) -> tuple[float, object, str]:
    task = common.approved_task(servers, sub_type, parameters)
    started = time.monotonic()
    outcome = run_task(task.pk)
    elapsed = time.monotonic() - started
    task.refresh_from_db()
    return elapsed, task, outcome


def timed_deploy(servers, version: str, rollout: dict) -> tuple[float, object, str]:
    """timed() for a deploy of a fresh artifact of ``version`` with the rollout settings given."""
    _body, info = common.artifact(version)
    return timed(servers, "APP_DEPLOY", {"artifact_sha256": info["sha256"], "version": version, "rollout": rollout})


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--servers", type=int, default=1000)
    parser.add_argument("--sshd", type=int, default=40)
    parser.add_argument("--skip-bare", action="store_true")
    args = parser.parse_args()
    started = time.monotonic()
    testbed, servers = common.start_testbed(args.servers, args.sshd)
    print(
        f"testbed: {args.servers} servers on {args.sshd} sshd up in {time.monotonic() - started:.1f} s ({load()})",
        flush=True,
    )
    urls = [s.health_url for s in servers]
    results = {}
    bare = None
    try:
        if not args.skip_bare:
            from execution_side_by_side import bare_run

            body, info = common.artifact("1.5.0")
            bare = bare_run(testbed, servers, body, info["sha256"], "1.5.0")
            print(
                f"bare paramiko reference: {bare:.1f} s ({load()}) served: {common.served_versions(urls)}", flush=True
            )
        seconds, task, outcome = timed_deploy(servers, "2.0.0", {"batch_percent": 0.1, "max_parallel": 16})
        results["rolling deploy, 10 % batches"] = (seconds, 60, outcome)
        print(
            f"rolling deploy: {seconds:.1f} s ({load()}) {outcome} {task.failure_reason} "
            f"served: {common.served_versions(urls)}",
            flush=True,
        )

        seconds, task, outcome = timed(servers, "RAW_COMMAND", {"command": "uptime", "rollout": {"max_parallel": 16}})
        results["one command on all"] = (seconds, 20, outcome)
        print(f"one command: {seconds:.1f} s ({load()}) {outcome} {task.failure_reason}", flush=True)

        HealthCriteria.objects.filter(system=servers[0].system).update(port_wait_seconds=3)
        batch = [s for s in servers if s.rolling_group == 1][:100]
        testbed.fault(batch[50].server_id, "health_fail")
        rollout = {"batch_size": 100, "max_parallel": 16, "canary_share": 0}
        seconds, task, outcome = timed_deploy(batch, "3.0.0", rollout)
        steps = StepResult.objects.filter(server_run__execution__task=task, phase="rollback")
        first = min(s.started_at.timestamp() for s in steps)
        last = max(s.started_at.timestamp() + s.duration_ms / 1000 for s in steps)
        results["failed batch of 100 rolled back"] = (last - first, 10, outcome)
        served = common.served_versions([s.health_url for s in batch])
        print(
            f"failed batch: whole run {seconds:.1f} s, rollback phase {last - first:.1f} s ({load()}), {outcome}: "
            f"{task.failure_reason}; served: {served}",
            flush=True,
        )
    finally:
        testbed.down()
    print(f"\nscale run, {args.servers} logical servers on {args.sshd} sshd, 16 in parallel")
    for name, (seconds, limit, outcome) in results.items():
        verdict = "met" if seconds <= limit else "MISSED"
        print(f"  {name:34s} {seconds:7.1f} s  (target <= {limit} s: {verdict}; outcome {outcome})")
    if bare:
        deploy = results["rolling deploy, 10 % batches"][0]
        print(
            f"  {'bare paramiko reference (no batches)':34s} {bare:7.1f} s  "
            f"(engine rolling deploy = {deploy / bare:.2f}x)"
        )
    print(f"  {load()}")
    peak = common.peak_rss_mb()
    print(f"  {'worker peak memory':34s} {peak:7.0f} MB (target < 300 MB: {'met' if peak < 300 else 'MISSED'})")


if __name__ == "__main__":
    main()
