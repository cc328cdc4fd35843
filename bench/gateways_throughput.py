"""Queued executions drained by two site gateways: throughput and the share each took.

Two institutions, each on its own gateway (A and B), two testbed servers each. N approved
read-only MEMORY_CHECK tasks (one SSH connection and one command each; read-only, so they take
no server lease and many run side by side) alternate between the institutions and are queued
through governance's own call (EXECUTION_QUEUE routes each to its gateway's queue) while no
cluster runs. Then `GUARDIA_GATEWAY=A manage.py qcluster` and `...=B` start together, and the
clock runs until every task has ended. Default: SQLite and the ORM broker; set
GUARDIA_DATABASE_URL (PostgreSQL) and GUARDIA_Q_BROKER=redis with GUARDIA_REDIS_URL for the
scale-out configuration.

Run: .venv/bin/python bench/gateways_throughput.py [--tasks 1000] [--workers 2]
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
from django.contrib.auth.models import User
from django.db import transaction
from django.db.models import Count, Max, Min

from cmdb.models import Gateway, HealthCriteria, Institution, Server, System
from execution.models import Execution
from governance import plans
from governance.models import OpsTask, Status
from governance.transitions import enqueue_execution


def two_sites(servers: list) -> tuple[list, list]:
    gw_a, gw_b = Gateway.objects.create(name="A"), Gateway.objects.create(name="B")
    Institution.objects.filter(pk=servers[0].system.institution_id).update(gateway=gw_a)
    inst_b = Institution.objects.create(code="BENCH-B", name="B 기관", gateway=gw_b)
    system_b = System.objects.create(code="BENCH-B-WAS", name="B WAS", institution=inst_b)
    HealthCriteria.objects.create(system=system_b)
    half = len(servers) // 2
    Server.objects.filter(pk__in=[s.pk for s in servers[half:]]).update(system=system_b)
    return servers[:half], list(Server.objects.filter(system=system_b).order_by("server_id"))


def queue_tasks(sites: tuple[list, list], count: int) -> None:
    requester, _ = User.objects.get_or_create(username="bench-requester")
    with transaction.atomic():  # queued after commit, all at once
        for i in range(count):
            servers = sites[i % 2]
            server = servers[(i // 2) % len(servers)]
            task_id = f"OPS-GW-{i:05d}"
            plan = plans.render_plan("MEMORY_CHECK", {}, server.system, [server], task_ref=task_id)
            task = common.memory_check_task(
                task_id,
                "gateway throughput",
                server,
                requester,
                plan=plan,
                plan_sha256=plans.plan_sha256(plan),
                playbook_version=plan["playbook_version"],
            )
            OpsTask.objects.filter(pk=task.pk).update(status=Status.APPROVED)
            enqueue_execution(OpsTask.objects.get(pk=task.pk))


def start_gateway(name: str, workers: int) -> subprocess.Popen:
    env = {**os.environ, "GUARDIA_GATEWAY": name, "GUARDIA_Q_WORKERS": str(workers)}
    return subprocess.Popen(
        [sys.executable, str(benchenv.ROOT / "manage.py"), "qcluster"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--tasks", type=int, default=1000)
    parser.add_argument("--workers", type=int, default=2, help="worker processes per gateway")
    parser.add_argument("--servers", type=int, default=4)
    args = parser.parse_args()
    testbed, servers = common.start_testbed(args.servers)
    HealthCriteria.objects.update(port_wait_seconds=5)
    sites = two_sites(sorted(servers, key=lambda s: s.server_id))
    queue_tasks(sites, args.tasks)
    print(f"{args.tasks} tasks queued ({benchenv.machine_line()})")
    clusters = []
    active = OpsTask.objects.filter(status__in=[Status.APPROVED, Status.EXECUTING])
    try:
        started = time.monotonic()
        clusters = [start_gateway(name, args.workers) for name in ("A", "B")]
        while active.exists():
            time.sleep(0.5)
        elapsed = time.monotonic() - started
    finally:
        for proc in clusters:
            os.killpg(proc.pid, signal.SIGKILL)  # done and stored; a SIGTERM takes django-q2 20 s
            proc.wait(timeout=10)
        testbed.down()
    ended = dict(OpsTask.objects.values_list("status").annotate(n=Count("pk")).values_list("status", "n"))
    print(f"drained in {elapsed:.1f} s: {args.tasks / elapsed:.1f} executions/s over two gateways "
          f"({args.workers} workers each); task states {ended}")  # fmt: skip
    for row in Execution.objects.values("gateway").annotate(
        n=Count("pk"), first=Min("started_at"), last=Max("finished_at")
    ):
        span = (row["last"] - row["first"]).total_seconds()
        print(f"  gateway {row['gateway'] or 'central'}: {row['n']} executions "
              f"({row['n'] / args.tasks:.0%}), {row['n'] / span:.1f}/s over its own {span:.1f} s")  # fmt: skip
    print(f"  {benchenv.machine_line()}")


if __name__ == "__main__":
    main()
