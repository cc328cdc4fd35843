"""Helpers for the engine tests: approved tasks, artifacts, what a server really serves."""

from __future__ import annotations

import itertools
import json
import threading
import time
import urllib.request
from pathlib import Path

from cmdb.models import HealthCriteria
from execution import playbooks
from execution.services import store_artifact
from governance import plans
from governance.models import OpsTask, Status
from tests.factories import UserFactory
from tests.waiting import wait_until

_numbers = itertools.count(1)
# The statuses a run ends in, whatever happened to it.
SETTLED = {
    Status.PENDING_PM_VALIDATION,
    Status.FAILED_ROLLED_BACK,
    Status.MANUAL_INTERVENTION_REQUIRED,
    Status.STATE_UNCERTAIN,
    Status.ABORTED,
}

CATEGORY = {
    "APP_DEPLOY": "DEPLOY",
    "SSL_REPLACE": "INFRA_CONTROL",
    "RAW_COMMAND": "INFRA_CONTROL",
    "SERVICE_RESTART": "INFRA_CONTROL",
    "MEMORY_CHECK": "INSPECTION",
}


def approved_task(servers, sub_type: str = "APP_DEPLOY", parameters: dict | None = None) -> OpsTask:
    """An APPROVED task created directly (the FSM field is protected: update() in test setup only),
    carrying the plan and playbook version an approval pins, as filing and approval would.
    Parameters that cannot render a plan are stored anyway (no plan): execution refuses them."""
    task_id = f"OPS-TEST-{next(_numbers):04d}"
    try:
        plan = plans.render_plan(sub_type, parameters or {}, servers[0].system, servers, task_ref=task_id)
    except ValueError:
        plan = {}
    task = OpsTask.objects.create(
        task_id=task_id,
        category=CATEGORY.get(sub_type, "DEPLOY"),
        sub_type=sub_type,
        title=f"{sub_type} test",
        system=servers[0].system,
        requester=UserFactory(),
        risk="HIGH",
        parameters=parameters or {},
        playbook=sub_type,
        plan=plan,
        plan_sha256=plans.plan_sha256(plan) if plan else "",
        playbook_version=plan.get("playbook_version", "") if plan else playbooks.get(sub_type).VERSION,
    )
    task.targets.set(servers)
    OpsTask.objects.filter(pk=task.pk).update(status=Status.APPROVED)
    return task


def war(version: str, size: int = 4096) -> dict:
    body = f"version={version}\n".encode()
    return store_artifact(body + b"#" * max(0, size - len(body)), "app.war")


def deploy_parameters(version: str, script_timeout: int | None = None, **rollout) -> dict:
    """APP_DEPLOY parameters; keyword arguments other than script_timeout are rollout settings."""
    artifact = war(version)
    parameters = {
        "artifact_sha256": artifact["sha256"],
        "version": version,
        "rollout": {"canary_share": 0, "max_parallel": 8, **rollout},
    }
    if script_timeout is not None:
        parameters["script_timeout"] = script_timeout
    return parameters


def served(server) -> tuple[int | None, str]:
    try:
        with urllib.request.urlopen(server.health_url, timeout=2) as response:
            return response.status, response.read().decode()
    except OSError as exc:
        code = getattr(exc, "code", None)
        return code, ""


def version_of(server) -> str:
    _code, body = served(server)
    return body.rsplit("version=", 1)[1].strip() if "version=" in body else ""


def backup_of(server, task) -> str:
    path = Path(server.backup_path) / task.task_id / "app.war"
    return path.read_text().splitlines()[0] if path.exists() else ""


def fast_port_wait(servers, seconds: int = 3) -> None:
    """The port wait is HealthCriteria.port_wait_seconds (30 s by default); tests need less."""
    HealthCriteria.objects.filter(system=servers[0].system).update(port_wait_seconds=seconds)


def commands_received(testbed, server_id: str) -> str:
    srv = testbed.server(server_id)
    path = Path(srv["command_log"])
    return path.read_text() if path.exists() else ""


def running(fragment: str) -> bool:
    """A process on this machine (the testbed's servers are local) whose command line has ``fragment``."""
    for entry in Path("/proc").iterdir():
        try:
            if entry.name.isdigit() and fragment in (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode():
                return True
        except OSError:
            continue
    return False


def startup_hanging(testbed, server, version: str = "2.0.0"):
    """A condition: the server's startup.sh under the "hang" fault has logged its start (after this
    call) and now sleeps until killed. (The command log is no signal: a restart's chain names
    startup.sh in the statement that begins with the shutdown.)"""
    log = Path(testbed.server(server.server_id)["root"]) / "logs" / "catalina.out"
    line = f"Deploying web application archive [app.war] version={version}".encode()
    seen = log.stat().st_size if log.exists() else 0  # only what is logged from now on

    def hanging() -> bool:
        with log.open("rb") as f:
            f.seek(seen)
            return line in f.read()

    return lambda: log.exists() and hanging()


def press_stop_when(task, ready, *, delay: float = 0.0, stopped_at: list | None = None) -> threading.Thread:
    """A started thread that waits for ``ready()``, then ``delay`` seconds (so the stop lands while
    a step runs, not before it starts), then presses the task's stop as an operator would; the
    time it pressed it goes into ``stopped_at``. Join it after run_task."""

    def operator():
        from django.db import connection

        try:
            wait_until(ready, timeout=60, message="the step to stop never started")
            time.sleep(delay)
            if stopped_at is not None:
                stopped_at.append(time.time())
            OpsTask.objects.filter(pk=task.pk).update(stop_requested=True, stop_reason="operator pressed stop")
        finally:
            connection.close()

    thread = threading.Thread(target=operator)
    thread.start()
    return thread


def live_events(layer, channel: str) -> list[dict]:
    """Every live event waiting on an in-memory layer's channel, in order: a message carries one
    event or a batch of them, encoded once for every socket (governance.events.group_messages)."""
    from asgiref.sync import async_to_sync

    received: list[dict] = []
    while layer.channels.get(channel):
        sent = json.loads(async_to_sync(layer.receive)(channel)["text"])
        received.extend(sent if isinstance(sent, list) else [sent])
    return received
