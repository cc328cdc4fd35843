"""Drain/undrain hooks per group (seed 6.1, N/2): a maintenance flag file on each server of
the group being deployed, present for its whole deploy and removed afterwards, while the
other half of the redundant pair keeps serving. Real testbed, nothing mocked."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from execution.services import run_task

from .engine_helpers import approved_task, commands_received, deploy_parameters, fast_port_wait, served, version_of

pytestmark = [pytest.mark.testbed, pytest.mark.django_db(transaction=True)]
FLAG = "maintenance.flag"


def flag_path(server) -> Path:
    return Path(server.app_path) / FLAG  # a relative drain_flag lives below the server's app_path


class Sampler(threading.Thread):
    """Every 20 ms: which servers carry the flag, and does every server of each group serve?"""

    def __init__(self, groups: dict[int, list]):
        super().__init__(daemon=True)
        self.groups = groups
        self.samples: list[tuple[set[str], dict[int, bool]]] = []
        self.done = threading.Event()

    def run(self) -> None:
        while not self.done.is_set():
            flagged = {s.server_id for g in self.groups.values() for s in g if flag_path(s).exists()}
            serving = {k: all(served(s)[0] == 200 for s in g) for k, g in self.groups.items()}
            self.samples.append((flagged, serving))
            self.done.wait(0.02)


def test_drain_flag_is_on_during_the_group_deploy_and_the_other_group_keeps_serving(testbed, testbed_cmdb):
    servers = testbed_cmdb
    groups = {1: [s for s in servers if s.rolling_group == 1], 2: [s for s in servers if s.rolling_group == 2]}
    logged = {s.server_id: len(commands_received(testbed, s.server_id)) for s in servers}
    assert not any(flag_path(s).exists() for s in servers)
    task = approved_task(servers, parameters=deploy_parameters("2.0.0", drain_flag=FLAG))
    sampler = Sampler(groups)
    sampler.start()
    try:
        assert run_task(task.pk) == "SUCCEEDED"
    finally:
        sampler.done.set()
        sampler.join(5)

    # Afterwards: every flag removed, everybody on the new version.
    assert not [s.server_id for s in servers if flag_path(s).exists()]
    assert [version_of(s) for s in servers] == ["2.0.0"] * 10
    # On each server, by its own command log: the flag went up before the WAS was stopped and
    # came down only after the new one had started (and been checked).
    for server in servers:
        text = commands_received(testbed, server.server_id)[logged[server.server_id] :]
        kinds = order_on_server_text(text)
        assert kinds == ["drain", "shutdown", "startup", "undrain"], (server.server_id, kinds)
    # While the engine ran: a drained server always belonged to one group only, and while one
    # group was drained every server of the other group answered 200 on its health URL.
    ids = {k: {s.server_id for s in g} for k, g in groups.items()}
    seen = {1: 0, 2: 0}
    for flagged, serving in sampler.samples:
        if not flagged:
            continue
        group = 1 if flagged <= ids[1] else 2
        assert flagged <= ids[group], f"flags in both groups at once: {sorted(flagged)}"
        other = 2 if group == 1 else 1
        assert serving[other], f"group {other} stopped serving while group {group} was drained"
        seen[group] += 1
    assert seen[1] and seen[2], f"the sampler never saw a drained group: {seen} in {len(sampler.samples)} samples"


def order_on_server_text(text: str) -> list[str]:
    kinds = []
    for line in text.splitlines():
        if "touch " in line and FLAG in line:
            kinds.append("drain")
        elif "rm -f -- " in line and FLAG in line:
            kinds.append("undrain")
        else:  # a restart's chain is one statement: its scripts in the order it runs them
            found = [(line.find(f"{kind}.sh"), kind) for kind in ("shutdown", "startup") if f"{kind}.sh" in line]
            kinds += [kind for _at, kind in sorted(found)]
    return kinds


def test_drain_flag_is_removed_after_a_rollback_too(testbed, testbed_cmdb):
    servers = testbed_cmdb
    fast_port_wait(servers, 3)
    second = [s for s in servers if s.rolling_group == 2]
    testbed.fault(second[1].server_id, "health_fail")
    task = approved_task(servers, parameters=deploy_parameters("2.0.0", drain_flag=FLAG))

    assert run_task(task.pk) == "FAILED_ROLLED_BACK"

    assert not [s.server_id for s in servers if flag_path(s).exists()]  # group 2 undrained after its restore
    assert [version_of(s) for s in second] == ["1.0.0"] * 5
