"""Workers SIGKILLed at seeded points of every step kind, recovered by resuming from the journal.

Each trial is one task run by its own worker process (``execution.tasks.run_task`` in a fresh
Python, as a django-q2 worker runs it) against the sshd testbed; the worker is SIGKILLed right
after a chosen step was journaled on a chosen server (plus a seeded delay, so the kill lands
inside the next step or the one after). Trials on disjoint servers run side by side; after the
lease runs out, one sweep of the reaper must bring every task to a definite state, and:

- no server's own command log (every command its sshd received) shows a changing step twice;
- every server is in the state the task reports (the new version, tree, rotation or cleanup
  where it reports success, the old one where it reports a rollback);
- the audit chain verifies.

The recovery policy is ``resume``; rollback on worker loss: test_worker_kill.py.
"""

from __future__ import annotations

import dataclasses
import io
import os
import random
import re
import signal
import subprocess
import sys
import tarfile
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from django.utils import timezone

from audit.models import AuditEntry
from audit.verify import verify_chain
from execution import reaper
from execution.models import Execution, ExecutionLease, RunState, ServerLease, StepResult
from execution.services import store_artifact
from governance.attachments import store_attachment
from governance.models import OpsTask, Status
from testbed.register import register_testbed
from tests.execution.engine_helpers import (
    SETTLED,
    approved_task,
    deploy_parameters,
    fast_port_wait,
    served,
    version_of,
)
from tests.execution.test_playbooks_ssl import HOST, TlsFront, _cert, _key, _pem, _pem_key
from tests.execution.test_worker_kill import wait_for, worker_env

pytestmark = [pytest.mark.testbed, pytest.mark.slow, pytest.mark.django_db(transaction=True)]

ROOT = Path(__file__).resolve().parents[2]
SEED = int(os.getenv("GUARDIA_KILL_SEED", "19"))
LEASE = 2
WORKER = "import sys, django; django.setup(); from execution.tasks import run_task; run_task(int(sys.argv[1]))"
PURGE_SH = """#!/bin/sh
# A site's data script: backup <dir> | run | restore <dir>, on the rows under <root>/data.
set -e
ROOT=$(dirname "$(dirname "$(dirname "$0")")")
case "$1" in
  backup) mkdir -p "$2" && cp -p "$ROOT"/data/* "$2"/ ;;
  run) sleep 0.4; rm -f "$ROOT"/data/* ;;
  restore) cp -p "$2"/* "$ROOT"/data/ ;;
esac
"""


def root_of(srv) -> Path:
    return Path(srv.app_path).parent


@dataclasses.dataclass
class Scenario:
    playbook: str
    steps: list[str]  # forward steps on one server, in order: the kill points
    parameters: Callable[[list, str], dict]
    prepare: Callable[[list, str], None]
    matches: Callable[[Trial, object, bool], None]  # the server's state agrees with the task's report
    once: list[str]  # commands that change the server: at most once each in its command log
    servers: int = 1


def _app_deploy_params(servers, tag):
    return deploy_parameters(f"2.{tag}", max_parallel=1)


def _app_deploy_matches(trial, srv, succeeded):
    assert version_of(srv) == (trial.task.parameters["version"] if succeeded else "1.0.0"), (trial.number, srv)
    if succeeded:  # and the result package reports what the server serves
        after = {s["server"]: s["version_after"] for s in trial.task.result_package["servers"]}
        assert after[srv.server_id] == trial.task.parameters["version"], after


def _served_old(trial, srv, succeeded):
    status, body = served(srv)
    assert status == 200 and body.endswith("version=1.0.0"), (srv.server_id, status, body)


def _static_params(servers, tag):
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        data = f"static {tag}\n".encode()
        info = tarfile.TarInfo("index.html")
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    artifact = store_artifact(buffer.getvalue(), f"static-{tag}.tar.gz")
    return {"artifact_sha256": artifact["sha256"], "target_path": "static"}


def _static_prepare(servers, tag):
    for srv in servers:
        (Path(srv.app_path) / "static").mkdir(exist_ok=True)
        (Path(srv.app_path) / "static" / "index.html").write_text("static old\n")


def _static_matches(trial, srv, succeeded):
    text = (Path(srv.app_path) / "static" / "index.html").read_text()
    assert text == (f"static {trial.tag}\n" if succeeded else "static old\n"), text
    _served_old(trial, srv, succeeded)


def _rotate_matches(trial, srv, succeeded):
    rotated = Path(f"{srv.log_path}.{trial.task.task_id}.gz")
    assert rotated.exists() == succeeded
    _served_old(trial, srv, succeeded)


def _old_logs_prepare(servers, tag):
    stale = time.time() - 10 * 86400
    for srv in servers:
        for n in range(3):
            path = Path(srv.log_path).parent / f"old-{n}.log"
            path.write_text("old\n")
            os.utime(path, (stale, stale))


def _old_logs_matches(trial, srv, succeeded):
    left = list(Path(srv.log_path).parent.glob("old-*.log"))
    assert (not left) == succeeded, (trial.task.status, left)
    _served_old(trial, srv, succeeded)


def _data_prepare(servers, tag):
    for srv in servers:
        script = Path(srv.script_path) / "data" / "purge.sh"
        script.parent.mkdir(exist_ok=True)
        script.write_text(PURGE_SH)
        data = root_of(srv) / "data"
        data.mkdir(exist_ok=True)
        for n in range(3):
            (data / f"row-{n}").write_text(f"row {n}\n")


def _data_matches(trial, srv, succeeded):
    rows = sorted(p.name for p in (root_of(srv) / "data").iterdir())
    assert rows == ([] if succeeded else ["row-0", "row-1", "row-2"]), (trial.task.status, rows)


def _nothing(servers, tag):
    return None


FRONTS: dict[str, TlsFront] = {}  # server id -> the TLS front serving its conf/server.crt
OLD_CERTS: dict[str, bytes] = {}
PKI: dict = {}


def _pki() -> dict:
    if not PKI:
        ca_key, leaf = _key(), _key()
        ca = _cert("GUARDiA Test CA", ca_key, ca_key, ca=True, days=(-10, 3650))
        PKI.update(ca=_pem(ca), key=_pem_key(leaf), cert=_pem(_cert(HOST, leaf, ca_key, ca.subject, names=[HOST])))
    return PKI


def _ssl_prepare(servers, tag):
    for srv in servers:
        conf = Path(srv.app_path) / "conf"
        conf.mkdir(exist_ok=True)
        old = _key()
        OLD_CERTS[srv.server_id] = _pem(_cert(f"old {tag}", old, old, names=[HOST]))
        (conf / "server.crt").write_bytes(OLD_CERTS[srv.server_id])
        (conf / "server.key").write_bytes(_pem_key(old))
        if srv.server_id not in FRONTS:
            FRONTS[srv.server_id] = TlsFront(conf / "server.crt", conf / "server.key")


def _ssl_params(servers, tag):
    pki, conf = _pki(), Path(servers[0].app_path) / "conf"
    return {
        "cert_sha256": store_artifact(pki["cert"], "server.crt")["sha256"],
        "key_sha256": store_attachment(pki["key"], "server.key", field="key_file", kind="private_key")["sha256"],
        "chain_sha256": store_artifact(pki["ca"], "ca.crt")["sha256"],
        "hostname": HOST,
        "cert_path": str(conf / "server.crt"),
        "key_path": str(conf / "server.key"),
        "https_port": FRONTS[servers[0].server_id].port,
        "rollout": {"canary_share": 0},
    }


def _ssl_matches(trial, srv, succeeded):
    installed = (Path(srv.app_path) / "conf" / "server.crt").read_bytes()
    assert installed == (_pki()["cert"] if succeeded else OLD_CERTS[srv.server_id]), trial.task.status
    _served_old(trial, srv, succeeded)


SCENARIOS = [
    Scenario(
        "APP_DEPLOY",
        # As recorded: the upload's row when its transfer is collected, after the steps beside it.
        ["pre-check", "backup", "upload", "upload-verify", "shutdown", "swap", "startup", "port", "post-check", "http"],
        _app_deploy_params,
        _nothing,
        _app_deploy_matches,
        [
            r"cp -p \S*/app/app\.war \S*/backup/{task}/app\.war",
            r"mv -f \S*/deploy/app\.war\.\w+ \S*/app/app\.war",
            r"cp -p \S*/backup/{task}/app\.war \S*/app/app\.war",
        ],
        servers=2,
    ),
    Scenario(
        "SERVICE_RESTART",
        ["pid-before", "shutdown", "log-offset", "startup", "port"],
        lambda servers, tag: {"rollout": {"canary_share": 0, "max_parallel": 1}},
        _nothing,
        _served_old,
        [],
    ),
    Scenario(
        "STATIC_SYNC",
        ["upload", "unpack", "swap", "verify"],
        _static_params,
        _static_prepare,
        _static_matches,
        [r"tar -xzf \S*/deploy/static-{task}\.tar\.gz", r"mv \S*/app/static \S*/app/static\.guardia-old-{task}"],
    ),
    Scenario(
        "SSL_REPLACE",
        ["backup-cert", "backup-chain", "shutdown", "upload-key", "chmod-key", "startup"],
        _ssl_params,
        _ssl_prepare,
        _ssl_matches,
        [
            r"cp -p \S*/conf/server\.crt \S*/backup/{task}/ssl/server\.crt",
            r"cp -p \S*/backup/{task}/ssl/server\.crt \S*/conf/server\.crt",
            r"chmod 600 \S*/conf/server\.key",
        ],
    ),
    Scenario(
        "LOGROTATE",
        ["guard-file", "rotate", "prune"],
        lambda servers, tag: {},
        _nothing,
        _rotate_matches,
        [r"truncate -s 0 \S*/catalina\.out"],
    ),
    Scenario(
        "LOG_CLEANUP",
        ["list", "delete"],
        lambda servers, tag: {"name_pattern": "old-*.log", "older_than_days": 1, "dry_run": False},
        _old_logs_prepare,
        _old_logs_matches,
        [r"-mtime \+1 -print -delete"],
    ),
    Scenario(
        "DATA_CLEANUP",
        ["backup", "run"],
        lambda servers, tag: {"script": "purge"},
        _data_prepare,
        _data_matches,
        [r"purge\.sh backup", r"purge\.sh run", r"purge\.sh restore"],
    ),
]
RESTARTS = {"APP_DEPLOY", "SERVICE_RESTART", "SSL_REPLACE"}


@dataclasses.dataclass
class Trial:
    number: int
    scenario: Scenario
    after: str  # kill once this step is journaled on the victim ("": once the victim started)
    victim_index: int
    delay: float
    servers: list = dataclasses.field(default_factory=list)
    task: OpsTask | None = None
    proc: subprocess.Popen | None = None
    killed_at: float | None = None
    log_start: dict = dataclasses.field(default_factory=dict)

    @property
    def tag(self) -> str:
        return f"{self.number}.{SEED}"

    @property
    def victim(self):
        return self.servers[self.victim_index]

    def reached(self) -> bool:
        if self.proc.poll() is not None:
            return True  # the run ended before the kill point: nothing to kill
        runs = StepResult.objects.filter(
            server_run__execution__task=self.task, server_run__server_ref=self.victim.server_id, phase="forward"
        )
        if self.after:
            return runs.filter(name=self.after).exists()
        return Execution.objects.filter(
            task=self.task, server_runs__server_ref=self.victim.server_id, server_runs__state=RunState.RUNNING
        ).exists()


def trials() -> list[Trial]:
    """Every step kind of every scenario is a kill point once: deterministic from the seed."""
    rng = random.Random(SEED)
    found = []
    for scenario in SCENARIOS:
        for index in range(len(scenario.steps)):
            after = scenario.steps[index - 1] if index else ""
            found.append(
                Trial(len(found), scenario, after, rng.randrange(scenario.servers), round(rng.uniform(0, 0.12), 3))
            )
    return found


def batches(all_trials: list[Trial], fleet: list) -> list[list[Trial]]:
    """Trials on disjoint servers; a two-server trial takes one of each rolling group."""
    out: list[list[Trial]] = []
    pending = list(all_trials)
    while pending:
        free = {1: [s for s in fleet if s.rolling_group == 1], 2: [s for s in fleet if s.rolling_group == 2]}
        batch = []
        for trial in list(pending):
            need = trial.scenario.servers
            if need == 2 and free[1] and free[2]:
                trial.servers = [free[1].pop(0), free[2].pop(0)]
            elif need == 1 and (free[1] or free[2]):
                trial.servers = [(free[1] or free[2]).pop(0)]
            else:
                continue
            batch.append(trial)
            pending.remove(trial)
        out.append(batch)
    return out


def story(trial: Trial) -> str:
    """What happened to the trial's task, for a failure message."""
    lines = [f"trial {trial.number} {trial.scenario.playbook} killed after {trial.after!r} on {trial.victim}"]
    for step in StepResult.objects.filter(server_run__execution__task=trial.task).order_by("started_at", "pk"):
        lines.append(f"  {step.server_run.server_ref} {step.phase} {step.name} {step.state} {step.command[:60]!r}")
    for entry in AuditEntry.objects.filter(task=trial.task.task_id, action="execution.recovered"):
        lines.append(f"  recovered: {entry.payload}")
    return "\n".join(lines)


def start(trial: Trial, testbed, env: dict) -> None:
    scenario = trial.scenario
    scenario.prepare(trial.servers, trial.tag)
    trial.task = approved_task(trial.servers, scenario.playbook, scenario.parameters(trial.servers, trial.tag))
    assert trial.task.plan, trial.task.parameters
    trial.log_start = {s.server_id: len(commands_applied(testbed, s.server_id)) for s in trial.servers}
    trial.proc = subprocess.Popen(
        [sys.executable, "-c", WORKER, str(trial.task.pk)],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )


def kill_at_their_points(batch: list[Trial]) -> None:
    due: dict[int, float] = {}
    deadline = time.monotonic() + 90
    while any(t.killed_at is None for t in batch):
        assert time.monotonic() < deadline, [(t.number, t.after) for t in batch if t.killed_at is None]
        now = time.monotonic()
        for trial in batch:
            if trial.killed_at is not None:
                continue
            if trial.number not in due and trial.reached():
                due[trial.number] = now + trial.delay
            if trial.number in due and now >= due[trial.number]:
                if trial.proc.poll() is None:
                    os.killpg(trial.proc.pid, signal.SIGKILL)
                trial.proc.wait(10)
                trial.killed_at = time.monotonic()
        time.sleep(0.005)


def commands_applied(testbed, server_id: str) -> str:
    """The commands the server ran to the end with exit status 0 (the testbed's <log>.exit)."""
    path = Path(testbed.server(server_id)["command_log"] + ".exit")
    return path.read_text() if path.exists() else ""


def assert_once(trial: Trial, testbed) -> None:
    task, scenario = trial.task, trial.scenario
    succeeded = task.status == Status.PENDING_PM_VALIDATION
    for srv in trial.servers:
        log = commands_applied(testbed, srv.server_id)[trial.log_start[srv.server_id] :]
        mine = "\n".join(line for line in log.splitlines() if f"/{srv.server_id}/" in line and line.startswith("0 "))
        for pattern in scenario.once:
            count = len(re.findall(pattern.format(task=task.task_id), mine))
            assert count <= 1, f"{srv.server_id} {pattern} x{count}\n{story(trial)}\n{mine}"
        if scenario.playbook in RESTARTS and succeeded:
            # A resumed restart stops and starts the WAS once, whenever the worker died.
            assert len(re.findall(r"scripts/shutdown\.sh", mine)) <= 1, (trial.number, trial.after, mine)
            assert len(re.findall(r"scripts/startup\.sh", mine)) <= 1, (trial.number, trial.after, mine)


@pytest.fixture
def fleet(clean_testbed):
    servers = sorted(register_testbed(clean_testbed.manifest), key=lambda s: s.server_id)
    fast_port_wait(servers, 5)
    return servers


@pytest.mark.timeout(600)
def test_worker_killed_at_every_step_kind_resumes_from_the_journal(fleet, clean_testbed, settings):
    try:
        run_trials(fleet, clean_testbed, settings)
    finally:
        for front in FRONTS.values():
            front.close()
        FRONTS.clear()


def run_trials(fleet, clean_testbed, settings) -> None:
    settings.EXECUTION_LEASE_SECONDS = LEASE
    settings.EXECUTION_RECOVERY_POLICY = "resume"
    env = worker_env(LEASE) | {"DJANGO_SETTINGS_MODULE": "guardia.settings"}
    plan = trials()
    assert len(plan) >= 20
    outcomes = []
    for batch in batches(plan, fleet):
        clean_testbed.reset()
        for trial in batch:
            start(trial, clean_testbed, env)
        kill_at_their_points(batch)
        killed = min(t.killed_at for t in batch)
        if OpsTask.objects.filter(pk__in=[t.task.pk for t in batch], status=Status.EXECUTING).exists():
            wait_for(
                lambda: not ExecutionLease.objects.filter(expires_at__gte=timezone.now()).exists(),
                LEASE + 3,
                what="the leases to expire",
            )
            swept = {r["task"]: r["outcome"] for r in reaper.sweep()}  # one sweep
        else:
            swept = {}
        assert "RETRY" not in swept.values(), swept
        for trial in batch:
            trial.task.refresh_from_db()
            task = trial.task
            assert task.status in SETTLED, (trial.number, trial.scenario.playbook, trial.after, task.status)
            assert time.monotonic() - killed <= LEASE + 60
            succeeded = task.status == Status.PENDING_PM_VALIDATION
            for srv in trial.servers:
                try:
                    trial.scenario.matches(trial, srv, succeeded)
                except AssertionError as exc:
                    raise AssertionError(f"{exc}\n{story(trial)}") from exc
            assert_once(trial, clean_testbed)
            # RELEASED: the worker had reported the end and died before giving its claim back.
            recovered_here = swept.get(task.task_id, "RELEASED") != "RELEASED"
            outcomes.append((trial.scenario.playbook, trial.after, recovered_here, task.status))
        assert not ServerLease.objects.exists() and not ExecutionLease.objects.exists()
    print(
        "\n".join(f"{p} killed after {a or 'start'!r}: {'swept' if w else 'not swept'}, {s}" for p, a, w, s in outcomes)
    )
    recovered = AuditEntry.objects.filter(action="execution.recovered")
    assert recovered.count() == sum(1 for _p, _a, swept, _s in outcomes if swept)
    resumed = [e for e in recovered if e.payload.get("policy") == "resume"]
    assert resumed, outcomes
    # Most runs were finished by the reaper: a worker's death does not cost the change.
    finished = [o for o in outcomes if o[2] and o[3] == Status.PENDING_PM_VALIDATION]
    assert len(finished) >= len([o for o in outcomes if o[2]]) // 2, outcomes
    assert verify_chain().ok
