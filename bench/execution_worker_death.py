"""Time from a worker's death to the operator's alert.

A worker process (``execution.tasks.run_task`` in its own Python, as a django-q2 worker runs
it) deploys to two testbed servers and is SIGKILLed while the first server starts the new
version. This process then plays the django-q2 Schedule: a reaper sweep every ``--sweep``
seconds, started at a random phase, as the minute schedule is to a death. Measured per round:

- death → the ``워커 유실`` line on the task page (execution.worker_lost in the audit chain);
- death → the first alert in the system owner's inbox (sent when the reaper takes over);
- death → the recovery's closing alert, the task in a definite state (rolled back, or the
  rollout resumed to its end).

The lease and the sweep interval are short here (``--lease``, ``--sweep``); with the defaults
(60 s and one minute) both waits scale up, the recovery itself does not.

Run: .venv/bin/python bench/execution_worker_death.py [--rounds 3] [--lease 6] [--sweep 6]
"""

from __future__ import annotations

import argparse
import os
import random
import signal
import statistics
import subprocess
import sys
import time

LEASE = int(sys.argv[sys.argv.index("--lease") + 1]) if "--lease" in sys.argv else 6
os.environ["GUARDIA_EXECUTION_LEASE_SECONDS"] = str(LEASE)

import benchenv
import execution_common as common
from django.conf import settings
from django.contrib.auth.models import User
from django.utils import timezone

from audit.models import AuditEntry
from cmdb.models import HealthCriteria, Institution, SystemOwner
from execution import reaper
from execution.models import StepResult
from governance import plans
from governance.models import Notification, OpsTask, Status

WORKER = "import sys, django; django.setup(); from execution.tasks import run_task; run_task(int(sys.argv[1]))"


def people(system) -> User:
    owner, _ = User.objects.get_or_create(username="death-owner")
    supervisor, _ = User.objects.get_or_create(username="death-supervisor")
    pm, _ = User.objects.get_or_create(username="death-pm")
    SystemOwner.objects.get_or_create(system=system, defaults={"owner": owner, "supervisor": supervisor})
    Institution.objects.filter(pk=system.institution_id).update(pm=pm)
    return owner


def deploy_task(servers, n: int) -> OpsTask:
    _body, art = common.artifact(f"3.{n}.0", size=64 * 1024)
    parameters = {"artifact_sha256": art["sha256"], "version": f"3.{n}.0", "rollout": {"canary_share": 0}}
    parameters["rollout"]["max_parallel"] = 1
    task = common.approved_task(servers, "APP_DEPLOY", parameters)
    plan = plans.render_plan("APP_DEPLOY", parameters, servers[0].system, servers, task_ref=task.task_id)
    OpsTask.objects.filter(pk=task.pk).update(
        plan=plan, plan_sha256=plans.plan_sha256(plan), playbook_version=plan["playbook_version"]
    )
    return task


def one_round(servers, owner, n: int, sweep: float) -> dict:
    task = deploy_task(servers, n)
    env = dict(os.environ)
    proc = subprocess.Popen(
        [sys.executable, "-c", WORKER, str(task.pk)],
        cwd=benchenv.ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    deadline = time.monotonic() + 120
    while not StepResult.objects.filter(server_run__execution__task=task, name="startup").exists():
        if proc.poll() is not None or time.monotonic() > deadline:
            raise SystemExit(f"the worker ended before the kill point (exit {proc.poll()})")
        time.sleep(0.01)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(10)
    died, died_at = time.monotonic(), timezone.now()
    next_sweep = died + random.uniform(0, sweep)  # where the schedule's minute stands at the death
    ended = Notification.objects.filter(user=owner, task=task, kind="alert", message__startswith="[작업자 유실 복구]")
    while (done := ended.first()) is None:
        now = time.monotonic()
        if now >= next_sweep:
            reaper.sweep()  # the sweep runs in this thread: the rows' own times say when each came
            next_sweep += sweep
        if now - died > LEASE + 2 * sweep + 120:
            raise SystemExit("no alert")
        time.sleep(0.05)
    line = AuditEntry.objects.get(action="execution.worker_lost", task=task.task_id)
    alert = Notification.objects.filter(user=owner, task=task, kind="alert").earliest("created_at")
    task.refresh_from_db()
    return {
        "line": (line.created_at - died_at).total_seconds(),
        "alert": (alert.created_at - died_at).total_seconds(),
        "ended": (done.created_at - died_at).total_seconds(),
        "status": task.status,
    }


def span(results: list[dict], key: str) -> str:
    values = [r[key] for r in results]
    return f"median {statistics.median(values):.1f} s (min {min(values):.1f}, max {max(values):.1f})"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--lease", type=int, default=LEASE)
    parser.add_argument("--sweep", type=float, default=6.0)
    args = parser.parse_args()
    testbed, servers = common.start_testbed(2)
    try:
        HealthCriteria.objects.filter(system=servers[0].system).update(port_wait_seconds=5)
        owner = people(servers[0].system)
        for policy in ("rollback", "resume"):
            settings.EXECUTION_RECOVERY_POLICY = policy
            results = []
            for _round in range(args.rounds):
                testbed.reset()
                results.append(one_round(servers, owner, len(results) + 10 * (policy == "resume"), args.sweep))
            statuses = sorted({r["status"] for r in results})
            print(
                f"policy {policy}, lease {args.lease} s, sweep every {args.sweep:g} s, {args.rounds} deaths: "
                f"death → {span(results, 'line')} '워커 유실' line, {span(results, 'alert')} owner's alert, "
                f"{span(results, 'ended')} recovery ended ({', '.join(statuses)})"
            )
            print(f"  {benchenv.machine_line()}")
        assert all(s != Status.EXECUTING for s in statuses)
    finally:
        testbed.down()


if __name__ == "__main__":
    main()
