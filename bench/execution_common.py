"""Shared set-up for the execution benchmarks: a testbed registered in a throwaway CMDB,
approved tasks, 1 MiB artifacts, and a check of what every server serves."""

from __future__ import annotations

import atexit
import concurrent.futures
import itertools
import os
import resource
import shutil
import tempfile
import urllib.request

# Production settings for what matters here: DEBUG's cursor wrapper formats every query's
# parameters for connection.queries, which is not what a production worker pays.
os.environ.setdefault("GUARDIA_DEBUG", "false")

import benchenv  # noqa: F401  (Django set up and migrated)
from django.contrib.auth.models import User

from execution.services import store_artifact
from governance import plans
from governance.models import OpsTask, Status
from testbed import Testbed
from testbed.register import register_testbed

_numbers = itertools.count(1)


def start_testbed(n: int, sshd: int | None = None) -> tuple[Testbed, list]:
    base = tempfile.mkdtemp(prefix="guardia-bench-tb-", dir=os.environ.get("GUARDIA_BENCH_TMP", "/tmp"))
    if not os.environ.get("GUARDIA_BENCH_KEEP"):  # 1,000 servers' trees are ~2 GB: gone at exit
        atexit.register(shutil.rmtree, base, ignore_errors=True)
    testbed = Testbed(base)
    testbed.up(n, sshd)
    return testbed, register_testbed(testbed.manifest)


def artifact(version: str, size: int = 1 << 20) -> tuple[bytes, dict]:
    head = f"version={version}\n".encode()
    body = head + os.urandom(size - len(head))
    return body, store_artifact(body, "app.war")


def approved_task(servers, sub_type: str, parameters: dict) -> OpsTask:
    requester, _ = User.objects.get_or_create(username="bench-requester")
    task = OpsTask.objects.create(
        task_id=f"OPS-BENCH-{next(_numbers):04d}",
        category="DEPLOY",
        sub_type=sub_type,
        title=f"bench {sub_type}",
        system=servers[0].system,
        requester=requester,
        risk="HIGH",
        parameters=parameters,
        playbook=sub_type,
    )
    task.targets.set(servers)
    # What approval pins: the playbook version and the plan's SHA-256 (run_task refuses otherwise).
    rendered = plans.render_plan(sub_type, parameters, task.system, servers, task_ref=task.task_id)
    OpsTask.objects.filter(pk=task.pk).update(
        plan=rendered, plan_sha256=plans.plan_sha256(rendered), playbook_version=rendered["playbook_version"]
    )
    OpsTask.objects.filter(pk=task.pk).update(status=Status.APPROVED)
    return task


def memory_check_task(task_id: str, title: str, server, requester, **fields) -> OpsTask:
    """A low-risk memory check of one server, as filed (the caller moves its status on)."""
    task = OpsTask.objects.create(
        task_id=task_id,
        category="INSPECTION",
        sub_type="MEMORY_CHECK",
        title=title,
        system=server.system,
        requester=requester,
        risk="LOW",
        playbook="MEMORY_CHECK",
        **fields,
    )
    task.targets.set([server])
    return task


def served_versions(urls: list[str]) -> dict[str, int]:
    def one(url: str) -> str:
        try:
            with urllib.request.urlopen(url, timeout=5) as response:
                return response.read().decode().rsplit("version=", 1)[-1].strip()
        except OSError:
            return "down"

    counts: dict[str, int] = {}
    with concurrent.futures.ThreadPoolExecutor(16) as pool:
        for version in pool.map(one, urls):
            counts[version] = counts.get(version, 0) + 1
    return counts


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
