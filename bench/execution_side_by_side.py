"""APP_DEPLOY of a 1 MiB artifact on the same 100 testbed servers, one run each, side by side:

(a) ansible-core, tuned: forks 16, pipelining, a control connection per host, no facts;
(b) a bare paramiko reference: 16 threads, one connection per host, TCP_NODELAY;
(c) GUARDiA: execution.tasks.run_task() as the django-q2 worker calls it (the task's servers
    leased) through the real engine (database, audit, events, safety gate), three
    times: with a channel per step, with the step supervisor (SSH_STEP_SESSION, the default: one
    channel per connection runs every step, see execution.transport.SUPERVISOR), both with the
    default batches of 50 and a safety gate after each, and with the supervisor and all servers
    in one batch (one gate), as the bare script runs them.

Each run deploys its own version; the script checks every server serves it afterwards.
ansible-core is NOT a project dependency: install it into a separate venv
(python3 -m venv /tmp/ansible-venv && /tmp/ansible-venv/bin/pip install ansible-core).

The bare reference is the one place outside execution/transport.py that imports paramiko:
it is the yardstick the issue asks for, not product code.

Run: .venv/bin/python bench/execution_side_by_side.py [--servers 100] [--ansible /tmp/ansible-venv/bin]
"""

from __future__ import annotations

import argparse
import cProfile
import hashlib
import io
import json
import os
import pstats
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import execution_common as common

from execution.tasks import run_task  # as django-q2 runs it: holding the lease


def ansible_run(testbed, servers, body: bytes, sha: str, version: str, ansible_bin: str) -> float:
    work = Path(tempfile.mkdtemp(prefix="guardia-ansible-"))
    (work / "cp").mkdir()
    src = work / "app.war"
    src.write_bytes(body)
    key = testbed.manifest["credential"]["private_key_path"]
    hosts = {
        s.server_id: {
            "ansible_host": s.ip,
            "ansible_port": s.ssh_port,
            "ansible_user": "root",
            "ansible_ssh_private_key_file": key,
            "app": s.app_path,
            "deploy": s.deploy_path,
            "backup": s.backup_path,
            "scripts": s.script_path,
            "http_port": s.service_port,
            "health": s.health_url,
        }
        for s in servers
    }
    (work / "inventory.json").write_text(json.dumps({"all": {"hosts": hosts}}))
    (work / "ansible.cfg").write_text(f"""[defaults]
forks = 16
gathering = explicit
host_key_checking = False
interpreter_python = /usr/bin/python3
retry_files_enabled = False
[ssh_connection]
pipelining = True
control_path_dir = {work}/cp
control_path = %(directory)s/%%C
ssh_args = -o ControlMaster=auto -o ControlPersist=120s -o UserKnownHostsFile=/dev/null -o StrictHostKeyChecking=no
""")
    (work / "deploy.yml").write_text(f"""- hosts: all
  gather_facts: false
  tasks:
    - copy: {{src: "{src}", dest: "{{{{ deploy }}}}/app.war.new"}}
    - stat: {{path: "{{{{ deploy }}}}/app.war.new", checksum_algorithm: sha256}}
      register: staged
    - assert: {{that: ["staged.stat.checksum == '{sha}'"]}}
    - command: cp -p {{{{ app }}}}/app.war {{{{ backup }}}}/app.war.ansible
    - command: "{{{{ scripts }}}}/shutdown.sh"
    - command: mv -f {{{{ deploy }}}}/app.war.new {{{{ app }}}}/app.war
    - command: "{{{{ scripts }}}}/startup.sh"
    - wait_for: {{host: 127.0.0.1, port: "{{{{ http_port }}}}", timeout: 30}}
    - uri: {{url: "{{{{ health }}}}", return_content: true}}
      register: page
      failed_when: "'version={version}' not in page.content"
""")
    env = {**os.environ, "ANSIBLE_CONFIG": str(work / "ansible.cfg"), "PATH": f"{ansible_bin}:{os.environ['PATH']}"}
    started = time.monotonic()
    result = subprocess.run(
        [f"{ansible_bin}/ansible-playbook", "-i", str(work / "inventory.json"), str(work / "deploy.yml")],
        env=env,
        capture_output=True,
        text=True,
    )
    elapsed = time.monotonic() - started
    if result.returncode:
        print(result.stdout[-3000:], result.stderr[-2000:], file=sys.stderr)
    subprocess.run(["ssh", "-O", "exit", "-o", f"ControlPath={work}/cp/%C", "x"], capture_output=True)
    return elapsed


class Timeline:
    """One server's time, phase by phase, averaged over every server of a run: where the bare
    script and the engine spend a server's span, printed side by side."""

    def __init__(self) -> None:
        self.spans: dict[str, list[float]] = defaultdict(list)
        self.order: list[str] = []
        self._lock = threading.Lock()

    def add(self, name: str, seconds: float) -> None:
        with self._lock:
            if name not in self.spans:
                self.order.append(name)
            self.spans[name].append(seconds)

    def marker(self):
        """A function that records the time since its previous call under the name given."""
        last = [time.monotonic()]

        def mark(name: str) -> None:
            now = time.monotonic()
            self.add(name, now - last[0])
            last[0] = now

        return mark

    def print(self, title: str) -> None:
        total = sum(sum(v) / len(v) for v in self.spans.values())
        parts = ", ".join(f"{name} {1000 * sum(self.spans[name]) / len(self.spans[name]):.0f}" for name in self.order)
        print(f"  {title} timeline, mean ms per server ({total * 1000:.0f} in all): {parts}")


def bare_run(testbed, servers, body: bytes, sha: str, version: str) -> float:
    import paramiko

    key = paramiko.Ed25519Key.from_private_key_file(testbed.manifest["credential"]["private_key_path"])

    timeline = Timeline()

    def deploy(s) -> None:
        mark = timeline.marker()
        sock = socket.create_connection((s.ip, s.ssh_port), timeout=10)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        transport = paramiko.Transport(sock)
        transport.start_client(timeout=10)
        presented = transport.get_remote_server_key()
        import base64

        fp = "SHA256:" + base64.b64encode(hashlib.sha256(presented.asbytes()).digest()).decode().rstrip("=")
        assert fp == s.host_key_fingerprint, "host key"
        transport.auth_publickey("root", key)
        mark("connect")

        def run(command: str) -> str:
            channel = transport.open_session()
            channel.exec_command(command)
            out = channel.makefile("rb").read().decode()
            code = channel.recv_exit_status()
            assert code == 0, f"{command} -> {code}"
            return out

        staging = f"{s.deploy_path}/app.war.bare"
        sftp = paramiko.SFTPClient.from_transport(transport)
        sftp.putfo(io.BytesIO(body), staging)
        mark("sftp put")
        assert run(f"sha256sum {staging}").split()[0] == sha
        mark("sha256sum")
        run(f"cp -p {s.app_path}/app.war {s.backup_path}/app.war.bare")
        mark("backup")
        run(f"{s.script_path}/shutdown.sh")
        mark("shutdown")
        run(f"mv -f {staging} {s.app_path}/app.war")
        mark("swap")
        run(f"{s.script_path}/startup.sh")
        mark("startup")
        deadline = time.monotonic() + 30
        while True:
            try:
                socket.create_connection(("127.0.0.1", s.service_port), timeout=0.5).close()
                break
            except OSError:
                assert time.monotonic() < deadline, "port"
                time.sleep(0.05)
        mark("port")
        with urllib.request.urlopen(s.health_url, timeout=5) as response:
            assert f"version={version}" in response.read().decode()
        mark("http")
        sftp.close()
        transport.close()
        mark("close")

    def timed_deploy(s) -> float:
        began = time.monotonic()
        deploy(s)
        return time.monotonic() - began

    started = time.monotonic()
    with ThreadPoolExecutor(16) as pool:
        spans = list(pool.map(timed_deploy, servers))
    elapsed = time.monotonic() - started
    print(f"  bare per server: mean {sum(spans) / len(spans):.2f} s")
    timeline.print("bare")
    return elapsed


def guardia_run(servers, sha: str, version: str, step_session: bool, one_batch: bool = False) -> float:
    """The default strategy: batches of 50 (two here), a safety gate after each. ``one_batch``:
    all servers in one batch (one gate), as the bare script runs them, to show what the batch
    barriers cost."""
    from django.conf import settings

    settings.SSH_STEP_SESSION = step_session
    rollout = {"max_parallel": 16, "canary_share": 0, **({"batch_size": len(servers)} if one_batch else {})}
    task = common.approved_task(servers, "APP_DEPLOY", {"artifact_sha256": sha, "version": version, "rollout": rollout})
    spans = ServerWatch()
    started = time.time()
    try:
        outcome = run_task(task.pk)
    finally:
        spans.undo()
    ended = time.time()
    task.refresh_from_db()
    assert outcome == "SUCCEEDED", task.failure_reason
    print_step_times(task)
    print_timeline(task, spans)
    print_run_overhead(spans, started, ended)
    return ended - started


# What the run does outside the servers' own work, timed call by call (print_run_overhead):
# the owner's dotted name and attribute, then the label printed.
RUN_PARTS = """
execution.leases acquire                    start: the task's servers leased
governance.control execution_started        start: APPROVED -> EXECUTING
execution.services validate_parameters      start: parameters checked
governance.plans render_plan                start: plan rendered
governance.plans plan_sha256                start: plan hashed
execution.services criteria_for             start: health criteria
execution.services.ArtifactStore verify     start: artifact verified
execution.engine.Engine safety_gate         safety gate
execution.engine.Engine _close              between groups: undrain, close, collect
execution.engine.Engine _finish             end: run summary and package
execution.recorder.Recorder drain           recorder drain, every call (orchestrating thread)
governance.control execution_finished       end: EXECUTING -> PENDING_PM_VALIDATION
execution.leases release                    end: the lease released
"""


def _run_parts() -> list[tuple[str, object, str]]:
    """RUN_PARTS as (label, owner, attribute)."""
    import importlib

    parts = []
    for line in RUN_PARTS.strip().splitlines():
        owner_name, attribute, label = line.split(None, 2)
        try:
            owner: object = importlib.import_module(owner_name)
        except ModuleNotFoundError:  # a class: its module, then the class
            module_name, class_name = owner_name.rsplit(".", 1)
            owner = getattr(importlib.import_module(module_name), class_name)
        parts.append((label, owner, attribute))
    return parts


class ServerWatch:
    """Each server's worker span and connect time as the engine's worker thread sees them
    (wall clock, like the step rows), and the run's own parts (_run_parts), taken by wrapping
    methods for this run only."""

    def __init__(self) -> None:
        from execution.engine import Engine
        from execution.rolling import ServerContext

        self.forward: dict[str, tuple[float, float]] = {}
        self.connect: dict[str, float] = {}
        self.calls: dict[str, list[tuple[float, float]]] = defaultdict(list)
        self._originals = [
            (Engine, "_forward_one", Engine._forward_one),
            (ServerContext, "connect", ServerContext.connect),
        ]
        for label, owner, name in _run_parts():
            original = getattr(owner, name)
            self._originals.append((owner, name, original))
            setattr(owner, name, self._timed(label, original))
        forward_one, connect = Engine._forward_one, ServerContext.connect

        def timed_forward(engine, ctx):
            began = time.time()
            try:
                return forward_one(engine, ctx)
            finally:
                self.forward[ctx.server.server_id] = (began, time.time())

        def timed_connect(ctx):
            fresh = ctx.transport is None
            began = time.monotonic()
            try:
                return connect(ctx)
            finally:
                if fresh:
                    self.connect[ctx.server.server_id] = time.monotonic() - began

        Engine._forward_one, ServerContext.connect = timed_forward, timed_connect

    def _timed(self, label: str, original):
        def timed(*args, **kwargs):
            began = time.time()
            try:
                return original(*args, **kwargs)
            finally:
                self.calls[label].append((began, time.time()))

        return timed

    def undo(self) -> None:
        for owner, name, original in reversed(self._originals):
            setattr(owner, name, original)


def print_run_overhead(spans: ServerWatch, started: float, ended: float) -> None:
    """Where the run's time outside the servers' spans goes: from run_task's call to the first
    server's start, the gaps while no server of the run was working (the gate between batches),
    and from the last server's end to run_task's return; then each timed part of the run
    (_run_parts) with its calls and total wall time (the recorder's drain in all its calls)."""
    intervals = sorted(spans.forward.values())
    if not intervals:
        return
    idle, reach = 0.0, intervals[0][1]
    for began, finished in intervals[1:]:
        if began > reach:
            idle += began - reach
        reach = max(reach, finished)
    head, tail = intervals[0][0] - started, ended - reach
    print(
        f"  run outside the servers: before the first {1000 * head:.0f} ms, no server working between them "
        f"{1000 * idle:.0f} ms, after the last {1000 * tail:.0f} ms ({1000 * (head + idle + tail):.0f} ms in all)"
    )
    parts = []
    for label, calls in spans.calls.items():
        total = sum(b - a for a, b in calls)
        parts.append(f"{label} {1000 * total:.0f} ms x{len(calls)}")
    print("  run parts (wall, summed over calls): " + "; ".join(parts))


def print_timeline(task, spans: ServerWatch) -> None:
    """Each forward step's mean start and end, in ms from the worker taking the server (its
    connect included), in the order the steps began. Steps that ran at the same time (the
    upload beside the pre-check and the backup) show overlapping intervals, marked "||" when a
    step began before the one listed before it had ended; "span" is the worker's whole time."""
    from execution.models import StepResult

    offsets: dict[str, list[tuple[float, float]]] = defaultdict(list)
    whole: list[float] = []
    rows = StepResult.objects.filter(server_run__execution__task=task, phase="forward")
    for row in rows.values("server_run__server_ref", "name", "started_at", "duration_ms"):
        sid = row["server_run__server_ref"]
        if sid not in spans.forward:
            continue
        began = spans.forward[sid][0]
        start = row["started_at"].timestamp() - began
        offsets[row["name"]].append((start, start + row["duration_ms"] / 1000))
    for sid, (began, ended) in spans.forward.items():
        whole.append(ended - began)
        offsets["connect"].append((0.0, spans.connect.get(sid, 0.0)))
    means = {
        name: (sum(a for a, _ in pairs) / len(pairs), sum(b for _, b in pairs) / len(pairs))
        for name, pairs in offsets.items()
    }
    parts, last_end = [], 0.0
    for name, (a, b) in sorted(means.items(), key=lambda item: item[1]):
        parts.append(f"{'|| ' if a < last_end - 0.001 else ''}{name} {1000 * a:.0f}-{1000 * b:.0f}")
        last_end = max(last_end, b)
    span = 1000 * sum(whole) / max(1, len(whole))
    print(f"  GUARDiA timeline, mean ms from the server's start (span {span:.0f}): {', '.join(parts)}")


def print_step_times(task) -> None:
    """Where a server's time goes: the mean duration of each step and of a whole server."""
    from django.db.models import Avg, Count, F

    from execution.models import ServerRun, StepResult

    rows = (
        StepResult.objects.filter(server_run__execution__task=task)
        .values("name", "phase")
        .annotate(n=Count("id"), ms=Avg("duration_ms"))
        .order_by("-ms")
    )
    print("  " + ", ".join(f"{r['name']}/{r['phase']} {r['ms']:.0f} ms x{r['n']}" for r in rows))
    spans = ServerRun.objects.filter(execution__task=task).annotate(span=F("finished_at") - F("started_at"))
    seconds = [r.span.total_seconds() for r in spans if r.span]
    print(f"  per server (RUNNING to SUCCEEDED): mean {sum(seconds) / max(1, len(seconds)):.2f} s")


class ThreadProfile:
    """cProfile in this thread and in every thread started meanwhile (the engine's workers,
    paramiko's readers, the upload and probe threads), merged and written to ``path``; the top
    entries by own time are printed. On the wall clock (the default), calls that release the GIL
    count their wait for it too; with ``cpu`` each thread's own CPU time (time.thread_time) is
    counted instead, so waits and the GIL drop out and what is left is where the CPU goes, except
    for the calls still open when the run ends (the pools' threads waiting in SimpleQueue.get,
    paramiko's readers in recv): those are closed on the main thread's clock, so their times are
    meaningless. The timer's calls make the profiled run two to three times slower."""

    def __init__(self, path: str | None, cpu: bool = False) -> None:
        self.path, self.profiles, self.cpu = path, [], cpu

    def _start(self, *_args) -> None:
        profile = cProfile.Profile(time.thread_time) if self.cpu else cProfile.Profile()
        self.profiles.append(profile)
        profile.enable()  # replaces this hook in the thread it runs in

    def __enter__(self) -> ThreadProfile:
        if self.path:
            threading.setprofile(self._start)
            self._start()
        return self

    def __exit__(self, *exc) -> None:
        if not self.path:
            return
        threading.setprofile(None)
        self.profiles[0].disable()
        stats = pstats.Stats(self.profiles[0])
        for profile in self.profiles[1:]:
            profile.create_stats()
            stats.add(profile)
        stats.dump_stats(self.path)
        print(f"  profile of every thread ({len(self.profiles)}) written to {self.path}; top by own time:")
        stats.sort_stats("tottime").print_stats(25)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--servers", type=int, default=100)
    parser.add_argument("--ansible", default="/tmp/ansible-venv/bin")
    parser.add_argument("--skip-ansible", action="store_true")
    parser.add_argument(
        "--profile", metavar="PATH", help="cProfile every thread of the supervisor run, merged, written to PATH"
    )
    parser.add_argument(
        "--profile-cpu", action="store_true", help="with --profile: each thread's CPU time instead of the wall clock"
    )
    parser.add_argument(
        "--skip-channels", action="store_true", help="leave out the run with a channel per step (shorter A/B runs)"
    )
    args = parser.parse_args()
    testbed, servers = common.start_testbed(args.servers)
    urls = [s.health_url for s in servers]
    times: dict[str, float] = {}
    try:
        runs = [
            ("bare paramiko", "3.0.0"),
            ("GUARDiA channels", "4.0.0"),
            ("GUARDiA supervisor", "5.0.0"),
            ("GUARDiA one batch", "6.0.0"),
            # The load moves during a run (the machine is shared, and the run itself drives it):
            # the bare script again at the end, so each ratio is against the mean of the two.
            ("bare paramiko again", "7.0.0"),
        ]
        if not args.skip_ansible:
            runs.insert(0, ("ansible-core", "2.0.0"))
        if args.skip_channels:
            runs.remove(("GUARDiA channels", "4.0.0"))
        for name, version in runs:
            body, info = common.artifact(version)
            cpu = os.times()
            if name == "ansible-core":
                times[name] = ansible_run(testbed, servers, body, info["sha256"], version, args.ansible)
            elif name.startswith("bare paramiko"):
                times[name] = bare_run(testbed, servers, body, info["sha256"], version)
            else:
                with ThreadProfile(args.profile if name == "GUARDiA supervisor" else None, cpu=args.profile_cpu):
                    times[name] = guardia_run(
                        servers,
                        info["sha256"],
                        version,
                        step_session=name != "GUARDiA channels",
                        one_batch=name.endswith("batch"),
                    )
            # This process's CPU (workers, paramiko, the engine's own thread): what it takes from
            # the two cores the sshd, shells and WAS stand-ins share.
            used = os.times()
            cpu_s = used.user - cpu.user + used.system - cpu.system
            served = common.served_versions(urls)
            print(
                f"{name:19s} {times[name]:8.2f} s   controller CPU {cpu_s:5.1f} s   "
                f"load %.1f %.1f %.1f   served afterwards: {served}" % os.getloadavg(),
                flush=True,
            )
    finally:
        testbed.down()
    bare = (times["bare paramiko"] + times["bare paramiko again"]) / 2
    best = times["GUARDiA supervisor"]
    print(f"\nAPP_DEPLOY, 1 MiB artifact, {args.servers} servers, 16 in parallel")
    for name, seconds in times.items():
        print(f"  {name:19s} {seconds:8.2f} s   {seconds / bare:6.2f}x bare (mean of the two bare runs)")
    if "ansible-core" in times:
        print(f"  GUARDiA (supervisor) is {times['ansible-core'] / best:.1f}x faster than ansible-core")
    print(f"  target GUARDiA <= 1.0x bare: {'met' if best <= bare else 'MISSED'} ({best / bare:.2f}x)")
    print("  load {:.1f} {:.1f} {:.1f}".format(*os.getloadavg()))


if __name__ == "__main__":
    main()
