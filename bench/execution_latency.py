"""Latency a person feels: from the last approval (decide_step returns) to the first remote
command on the first server, through a real qcluster worker and the default ORM broker.

The first command's start is StepResult.started_at of the run's first step (stamped by the
worker right before it sends the command, after the SSH connection is up).

Run: .venv/bin/python bench/execution_latency.py [--tasks 20]
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import time

import benchenv
import execution_common as common
from django.contrib.auth.models import Group, User
from django.utils import timezone

from cmdb.models import SystemOwner
from execution.models import StepResult
from governance import services as governance
from governance.models import OpsTask, Status
from tests.approval_work import owner_step


def make_tasks(server, count: int) -> tuple[User, list[int]]:
    owner = User.objects.create_user("lat-owner", password="x")
    owner.groups.add(Group.objects.get(name="team_lead"))
    supervisor = User.objects.create_user("lat-sup", password="x")
    supervisor.groups.add(Group.objects.get(name="supervisor"))
    requester = User.objects.create_user("lat-req", password="x")
    SystemOwner.objects.get_or_create(system=server.system, defaults={"owner": owner, "supervisor": supervisor})
    now = timezone.now()
    steps = []
    for i in range(count):
        task = common.memory_check_task(f"OPS-LAT-{i:04d}", "latency", server, requester)
        OpsTask.objects.filter(pk=task.pk).update(status=Status.PENDING_APPROVAL)
        step = owner_step(task, owner, now)
        step.save()
        steps.append(step.pk)
    return owner, steps


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--tasks", type=int, default=20)
    args = parser.parse_args()
    testbed, servers = common.start_testbed(2)
    owner, steps = make_tasks(servers[0], args.tasks)
    worker = subprocess.Popen(
        [sys.executable, str(benchenv.ROOT / "manage.py"), "qcluster"],
        env=os.environ.copy(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    latencies = []
    try:
        time.sleep(3)  # the cluster's workers start
        for step_id in steps:
            decision = governance.decide_step(owner, step_id, "APPROVED")
            approved = time.time()
            task = decision.task
            deadline = time.monotonic() + 30
            first = None
            while time.monotonic() < deadline:
                first = StepResult.objects.filter(server_run__execution__task=task).order_by("started_at").first()
                if first:
                    break
                time.sleep(0.01)
            if first is None:
                print(f"{task.task_id}: no remote command within 30 s")
                continue
            latencies.append(first.started_at.timestamp() - approved)
            while OpsTask.objects.filter(pk=task.pk, status=Status.EXECUTING).exists():
                time.sleep(0.02)  # one at a time: each measurement starts with an idle worker
    finally:
        try:
            os.killpg(worker.pid, signal.SIGTERM)
            worker.wait(timeout=10)
        except subprocess.TimeoutExpired:  # the cluster waits for its workers; we do not
            os.killpg(worker.pid, signal.SIGKILL)
            worker.wait(timeout=10)
        finally:
            testbed.down()
    if latencies:
        p50, p95 = benchenv.percentile(latencies, 0.5), benchenv.percentile(latencies, 0.95)
        print(f"last approval -> first remote command, {len(latencies)} tasks, ORM broker (poll 0.05 s):")
        print(
            f"  p50 {p50 * 1000:.0f} ms  p95 {p95 * 1000:.0f} ms  max {max(latencies) * 1000:.0f} ms "
            f"(target p50 < 1 s: {'met' if p50 < 1 else 'MISSED'})"
        )


if __name__ == "__main__":
    main()
