"""Scale run on 1,000 logical testbed servers (a few dozen sshd processes, one WAS host):

1. APP_DEPLOY rolling in batches of 10 % (canary 1 % first), 16 in parallel   target <= 45 s, <= 1.1x bare
2. one command (RAW_COMMAND `uptime`) on all 1,000                              target <= 12 s
3. a failed batch of 100 rolled back (one server's new version never opens)    target <= 4 s
4. the worker's peak memory (this process runs the engine)                     target < 200 MB

Plus the bare paramiko reference (execution_side_by_side.bare_run: same steps, 16 threads, no
batches) on the same servers first, so the engine's ratio at this scale is known. Every figure
is printed with the load average: the machine is shared, and the figures move with it.
Steps run through the step supervisor (SSH_STEP_SESSION) unless --channels is given.
--profile FILE: cProfile of the orchestrating thread during the rolling deploy (the thread
that calls run_task: recorder, audit appends, events, waits on the workers), summarised by
where the time goes, and saved to FILE for pstats.

Run: .venv/bin/python bench/execution_scale.py [--servers 1000 --sshd 40] [--skip-bare] [--channels] [--profile F]
     [--command-parallel 16,32] [--preconnect N] [--ab-preconnect] [--memory | --memory-trace]
--memory: the worker's memory sampled per phase and rolling group (bench/execution_memory.py).
"""

from __future__ import annotations

import argparse
import cProfile
import json
import os
import pstats
import resource
import time
from contextlib import contextmanager
from pathlib import Path

import execution_common as common
from django.conf import settings

from cmdb.models import HealthCriteria
from execution.engine import limit_malloc_arenas
from execution.models import ServerRun, StepResult
from execution.services import run_task


def load() -> str:
    return "load {:.1f} {:.1f} {:.1f}".format(*os.getloadavg())


PEAKS: dict[str, float] = {}
SAMPLER: list = []  # the --memory sampler (execution_memory.MemorySampler), when on
TESTBED_PIDS: list[int] = []  # the testbed's sshd listeners and WAS host (see testbed_cpu)


def testbed_cpu() -> float:
    """CPU seconds of the testbed so far: its sshd listeners and WAS host with everything they
    started and reaped (sessions, shells, the servers' scripts), read from /proc."""
    total = 0
    for pid in TESTBED_PIDS:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += sum(int(v) for v in fields[11:15])  # utime stime cutime cstime
    return total / os.sysconf("SC_CLK_TCK")


def _rss_mb(field: str) -> float:
    with open("/proc/self/status") as status:
        line = next(row for row in status if row.startswith(field + ":"))
    return int(line.split()[1]) / 1024


@contextmanager
def phase(name: str):
    """CPU seconds of this whole process (every thread) and its peak RSS during one phase: the
    kernel's high-water mark is reset first (/proc/self/clear_refs), so the bare script's peak
    is not counted as the engine's."""
    PEAKS["before"] = max(PEAKS.get("before", 0.0), _rss_mb("VmHWM"))
    for sampler in SAMPLER:
        sampler.phase, sampler.group = name, "-"
    try:
        with open("/proc/self/clear_refs", "w") as refs:
            refs.write("5")
    except OSError:
        pass
    before, thread, servers = resource.getrusage(resource.RUSAGE_SELF), time.thread_time(), testbed_cpu()
    try:
        yield
    finally:
        after, thread = resource.getrusage(resource.RUSAGE_SELF), time.thread_time() - thread
        cpu = after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime
        PEAKS[name] = _rss_mb("VmHWM")
        for sampler in SAMPLER:
            sampler.phase = f"after {name}"
        print(
            f"  [{name}] process CPU {cpu:.1f} s (orchestrating thread {thread:.1f} s), "
            f"testbed CPU (sshd, sessions, scripts) {testbed_cpu() - servers:.1f} s, "
            f"peak RSS {PEAKS[name]:.0f} MB, after {_rss_mb('VmRSS'):.0f} MB ({load()})",
            flush=True,
        )


def breakdown(task) -> None:
    """Where the rolling deploy's wall time goes, from the step rows' own clocks: the mean server
    span (first step start to last step end), each group's wall and the hand-offs between groups
    (safety gate, undrain, the group's bookkeeping)."""
    spans: dict[tuple[int, str], list[float]] = {}
    rows = StepResult.objects.filter(server_run__execution__task=task, phase="forward").values_list(
        "server_run__group_index", "server_run__server_ref", "started_at", "duration_ms"
    )
    for group, server, started, duration_ms in rows:
        start = started.timestamp()
        span = spans.setdefault((group, server), [start, start])
        span[0], span[1] = min(span[0], start), max(span[1], start + duration_ms / 1000)
    if not spans:
        return
    per_server = [end - start for start, end in spans.values()]
    groups: dict[int, list[float]] = {}
    for (group, _server), (start, end) in spans.items():
        wall = groups.setdefault(group, [start, end])
        wall[0], wall[1] = min(wall[0], start), max(wall[1], end)
    ordered = [groups[g] for g in sorted(groups)]
    walls = sum(end - start for start, end in ordered)
    gaps = sum(nxt[0] - cur[1] for cur, nxt in zip(ordered, ordered[1:], strict=False))
    print(
        f"  {ServerRun.objects.filter(execution__task=task).count()} servers: span mean "
        f"{sum(per_server) / len(per_server):.2f} s; {len(ordered)} groups, walls {walls:.1f} s, "
        f"between groups {gaps:.1f} s; run start to first step {ordered[0][0] - LAST_RUN[0]:.1f} s, "
        f"last step to run end {LAST_RUN[1] - ordered[-1][1]:.1f} s",
        flush=True,
    )


LAST_RUN: list[float] = [0.0, 0.0]  # the last timed run's wall-clock start and end


def timed(task, profile: str = "") -> tuple[float, object, str]:
    """run_task on an approved task (filed and approved before the phase: the web tier's work,
    with the plan rendered for approval, is not the worker's), optionally under cProfile."""
    profiler = cProfile.Profile() if profile else None
    started, LAST_RUN[0] = time.monotonic(), time.time()
    if profiler is not None:
        profiler.enable()
    try:
        outcome = run_task(task.pk)
    finally:
        if profiler is not None:
            profiler.disable()
            profiler.dump_stats(profile)
            summarise(pstats.Stats(profiler))
    elapsed, LAST_RUN[1] = time.monotonic() - started, time.time()
    task.refresh_from_db()
    return elapsed, task, outcome


def deploy_task(servers, version: str, rollout: dict):
    """An approved deploy of a fresh artifact of ``version`` with the rollout settings given."""
    _body, info = common.artifact(version)
    parameters = {"artifact_sha256": info["sha256"], "version": version, "rollout": rollout}
    return common.approved_task(servers, "APP_DEPLOY", parameters)


# Where the orchestrating thread's time goes: cumulative time of the functions that stand for
# each kind of work (they nest: audit appends are part of the recorder's drain), as
# [label, file, function] rows of a data file beside this script.
PROFILE_PARTS = json.loads(Path(__file__).with_name("execution_scale_profile.json").read_text(encoding="utf-8"))


def summarise(stats: pstats.Stats) -> None:
    table = stats.stats  # type: ignore[attr-defined]  # {(file, line, name): (cc, nc, tt, ct, callers)}
    total = max((v[3] for v in table.values()), default=0.0)
    print(f"orchestrating thread: {total:.1f} s in the rolling deploy")
    for label, path, name in PROFILE_PARTS:
        hits = [v for k, v in table.items() if k[0].endswith(path) and k[2] == name]
        calls = sum(v[1] for v in hits)
        seconds = sum(v[3] for v in hits)
        print(f"  {label:46s} {seconds:6.1f} s  {calls:7d} calls")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--servers", type=int, default=1000)
    parser.add_argument("--sshd", type=int, default=40)
    parser.add_argument("--skip-bare", action="store_true")
    parser.add_argument("--channels", action="store_true", help="a channel per step (no step supervisor)")
    parser.add_argument("--profile", default="", help="cProfile the rolling deploy's orchestrating thread")
    parser.add_argument(
        "--command-parallel",
        type=lambda text: [int(v) for v in text.split(",")],
        default=[16],
        help="max_parallel of the one-command runs, one run each (e.g. 16,32)",
    )
    parser.add_argument("--ab-preconnect", action="store_true", help="also deploy once without pre-connection")
    parser.add_argument(
        "--preconnect", type=int, default=None, help="EXECUTION_PRECONNECT (0: none; default: the setting's)"
    )
    parser.add_argument("--memory", action="store_true", help="sample the memory per phase and group")
    parser.add_argument("--memory-trace", action="store_true", help="--memory with tracemalloc at the peak (slow)")
    args = parser.parse_args()
    if args.memory or args.memory_trace:
        from execution_memory import MemorySampler

        SAMPLER.append(MemorySampler(trace=args.memory_trace))
        SAMPLER[0].start()
    settings.SSH_STEP_SESSION = not args.channels
    if args.preconnect is not None:
        settings.EXECUTION_PRECONNECT = args.preconnect
    # As in a worker, whose first threads are the engine's: the testbed's and the served-version
    # checks' threads below would otherwise get their own malloc arenas first.
    limit_malloc_arenas()
    started = time.monotonic()
    testbed, servers = common.start_testbed(args.servers, args.sshd)
    host = testbed.manifest.get("was_host") or {}
    TESTBED_PIDS.extend(p for p in [*(s.get("pid") for s in testbed.manifest["sshd"]), host.get("pid")] if p)
    print(
        f"testbed: {args.servers} servers on {args.sshd} sshd up in {time.monotonic() - started:.1f} s ({load()}); "
        f"this process: {_rss_mb('VmRSS'):.0f} MB",
        flush=True,
    )
    urls = [s.health_url for s in servers]
    results = {}
    bare = None
    try:
        if not args.skip_bare:
            from execution_side_by_side import bare_run

            body, info = common.artifact("1.5.0")
            with phase("bare"):
                bare = bare_run(testbed, servers, body, info["sha256"], "1.5.0")
            print(
                f"bare paramiko reference: {bare:.1f} s ({load()}) served: {common.served_versions(urls)}", flush=True
            )
        rollout = {"batch_percent": 0.1, "max_parallel": 16}
        if args.ab_preconnect:  # the same deploy without the next group's connections opened early, first
            chosen = getattr(settings, "EXECUTION_PRECONNECT", None)
            settings.EXECUTION_PRECONNECT = 0
            task = deploy_task(servers, "1.9.0", rollout)
            with phase("rolling deploy, no pre-connection"):
                seconds, task, outcome = timed(task)
            breakdown(task)
            results["rolling deploy, no pre-connection"] = (seconds, 45, outcome)
            print(f"rolling deploy, no pre-connection: {seconds:.1f} s ({load()}) {outcome}", flush=True)
            if chosen is None:
                del settings.EXECUTION_PRECONNECT
            else:
                settings.EXECUTION_PRECONNECT = chosen
        task = deploy_task(servers, "2.0.0", rollout)
        with phase("rolling deploy"):
            seconds, task, outcome = timed(task, args.profile)
        results["rolling deploy, 10 % batches"] = (seconds, 45, outcome)
        breakdown(task)
        print(
            f"rolling deploy: {seconds:.1f} s ({load()}) {outcome} {task.failure_reason} "
            f"served: {common.served_versions(urls)}",
            flush=True,
        )

        for width in args.command_parallel:
            name = "one command on all" + ("" if width == 16 else f", {width} in parallel")
            command = {"command": "uptime", "rollout": {"max_parallel": width}}
            task = common.approved_task(servers, "RAW_COMMAND", command)
            with phase(name):
                seconds, task, outcome = timed(task)
            breakdown(task)
            results[name] = (seconds, 12, outcome)
            print(f"{name}: {seconds:.1f} s ({load()}) {outcome} {task.failure_reason}", flush=True)

        HealthCriteria.objects.filter(system=servers[0].system).update(port_wait_seconds=3)
        batch = [s for s in servers if s.rolling_group == 1][:100]
        testbed.fault(batch[50].server_id, "health_fail")
        rollout = {"batch_size": 100, "max_parallel": 16, "canary_share": 0}
        task = deploy_task(batch, "3.0.0", rollout)
        with phase("failed batch"):
            seconds, task, outcome = timed(task)
        steps = StepResult.objects.filter(server_run__execution__task=task, phase="rollback")
        first = min(s.started_at.timestamp() for s in steps)
        last = max(s.started_at.timestamp() + s.duration_ms / 1000 for s in steps)
        results["failed batch of 100 rolled back"] = (last - first, 4, outcome)
        served = common.served_versions([s.health_url for s in batch])
        print(
            f"failed batch: whole run {seconds:.1f} s, rollback phase {last - first:.1f} s ({load()}), {outcome}: "
            f"{task.failure_reason}; served: {served}",
            flush=True,
        )
    finally:
        testbed.down()
    mode = "a channel per step" if args.channels else "step supervisor"
    print(f"\nscale run, {args.servers} logical servers on {args.sshd} sshd, 16 in parallel, {mode}")
    for name, (seconds, limit, outcome) in results.items():
        verdict = "met" if seconds <= limit else "MISSED"
        print(f"  {name:34s} {seconds:7.1f} s  (target <= {limit} s: {verdict}; outcome {outcome})")
    if bare:
        deploy = results["rolling deploy, 10 % batches"][0]
        verdict = "met" if deploy <= 1.1 * bare else "MISSED"
        print(
            f"  {'bare paramiko reference (no batches)':34s} {bare:7.1f} s  "
            f"(engine rolling deploy = {deploy / bare:.2f}x; target <= 1.1x: {verdict})"
        )
    print(f"  {load()}")
    # The worker's peak: the engine's runs (a worker never runs the bare script, which shares this
    # process here); the process's whole peak is printed beside it.
    engine = [mb for name, mb in PEAKS.items() if name not in ("bare", "before")]
    peak = max(engine) if engine else common.peak_rss_mb()
    whole = max([*PEAKS.values(), common.peak_rss_mb()])
    verdict = "met" if peak < 200 else "MISSED"
    print(
        f"  {'worker peak memory (engine runs)':34s} {peak:7.0f} MB (target < 200 MB: {verdict}; "
        f"whole process incl. the bare script {whole:.0f} MB)"
    )
    for sampler in SAMPLER:
        sampler.stop()
        sampler.report()


if __name__ == "__main__":
    main()
