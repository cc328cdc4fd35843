"""The safety gate between groups: it checks the batch just finished and a bounded, rotating
sample of earlier servers (not every server done so far, which made gates O(n^2))."""

from __future__ import annotations

import os
import signal
import threading
from pathlib import Path

import pytest

from execution.errors import ParameterError
from execution.models import ServerRun
from execution.rolling import RolloutStrategy, gate_sample
from execution.services import run_task
from tests.waiting import wait_until

from .engine_helpers import approved_task, commands_received, deploy_parameters, fast_port_wait, version_of


def test_gate_sample_is_bounded_and_walks_through_every_earlier_server():
    done = list(range(950))
    seen: set[int] = set()
    for gate_round in range(60):
        sample = gate_sample(done, 16, gate_round)
        assert len(sample) == 16 and len(set(sample)) == 16
        seen.update(sample)
    assert seen == set(done)  # 60 gates x 16 >= 950: everybody re-checked at least once
    assert gate_sample(done[:10], 16, 3) == done[:10]  # fewer than the sample: all of them
    assert gate_sample(done, -1, 0) == done and gate_sample(done, 0, 5) == []
    assert RolloutStrategy.from_parameters({"gate_sample": 4}).gate_sample == 4
    with pytest.raises(ParameterError):
        RolloutStrategy.from_parameters({"gate_sample": -2})


@pytest.mark.testbed
@pytest.mark.django_db(transaction=True)
def test_gate_catches_an_earlier_server_that_went_down_during_a_later_group(testbed, testbed_cmdb):
    servers = testbed_cmdb
    fast_port_wait(servers, 3)
    first = [s for s in servers if s.rolling_group == 1]
    second = [s for s in servers if s.rolling_group == 2]
    victim = first[0]  # deployed and checked in group 1, then its WAS dies while group 2 runs
    task = approved_task(servers, parameters=deploy_parameters("2.0.0"))
    logged = len(commands_received(testbed, second[0].server_id))
    killed: list[int] = []

    def crash_during_group_two():
        wait_until(lambda: "startup.sh" in commands_received(testbed, second[0].server_id)[logged:], 60, 0.02)
        pid = int(Path(victim.app_path).parent.joinpath("run", "was.pid").read_text())
        os.kill(pid, signal.SIGKILL)
        killed.append(pid)

    thread = threading.Thread(target=crash_during_group_two)
    thread.start()
    outcome = run_task(task.pk)
    thread.join()
    task.refresh_from_db()
    assert killed, "group 2 never started"
    assert outcome == "FAILED_ROLLED_BACK", task.failure_reason
    assert task.failure_reason.startswith("안전 게이트:") and victim.server_id in task.failure_reason
    assert [version_of(s) for s in second] == ["1.0.0"] * 5  # the batch in flight is restored
    assert ServerRun.objects.get(execution__task=task, server_ref=victim.server_id).state == "FAILED"
