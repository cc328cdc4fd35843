"""While a wide parallel phase runs, what its workers report is committed at most once a drain
interval (a transaction with its chain-head round for a hundred steps as for one); a narrow one
still commits at every wake. Every step reaches the journal and the chain either way. Real
testbed; the recorder's drain is only watched."""

from __future__ import annotations

import time
from itertools import pairwise

import pytest

from audit.models import AuditEntry
from audit.verify import verify_chain
from execution import engine
from execution.models import StepResult
from execution.recorder import Recorder
from execution.services import run_task

from .engine_helpers import approved_task, deploy_parameters, fast_port_wait

pytestmark = [pytest.mark.testbed, pytest.mark.django_db(transaction=True)]
INTERVAL = 0.15


@pytest.mark.parametrize("wide", [True, False], ids=["wide", "narrow"])
def test_a_wide_parallel_phase_commits_its_reports_once_a_drain_interval(testbed_cmdb, monkeypatch, wide):
    servers = testbed_cmdb  # ten, five at a time: a phase that lasts a few drain intervals
    fast_port_wait(servers)
    task = approved_task(servers, "APP_DEPLOY", deploy_parameters("2.0.0", batch_size=10, max_parallel=5))
    phases: list[list[tuple[float, int]]] = []  # each parallel phase's drains that carried records
    real_drain, real_parallel = Recorder.drain, engine.Engine.parallel

    def drain(self):
        started = time.monotonic()  # the engine's clock is read before a drain too
        taken = real_drain(self)
        if taken and phases:
            phases[-1].append((started, taken))
        return taken

    def parallel(self, contexts, fn):
        phases.append([])
        try:
            return real_parallel(self, contexts, fn)
        finally:
            if phases[-1]:
                phases[-1].pop()  # the phase's last drain, once every worker is done, comes when it must
            phases.append([])  # drains between phases are not the loop's

    monkeypatch.setattr(engine, "DRAIN_SECONDS", INTERVAL)
    monkeypatch.setattr(engine, "DRAIN_WIDE", 1 if wide else 6)  # five workers: wide, or too few to be
    monkeypatch.setattr(Recorder, "drain", drain)
    monkeypatch.setattr(engine.Engine, "parallel", parallel)
    assert run_task(task.pk) == "SUCCEEDED"

    in_loop = [times for times in phases[::2] if len(times) > 1]
    assert in_loop, "no phase drained twice while its workers ran: nothing was measured"
    gaps = [later - earlier for times in in_loop for (earlier, _), (later, _) in pairwise(times)]
    if wide:
        assert min(gaps) >= INTERVAL * 0.95, gaps
    else:  # a wake is 50 ms at most: drains closer than the interval show they were not held back
        assert min(gaps) < INTERVAL / 2, gaps
    # Nothing a worker reported was lost by drawing it later: every step has its row and its entry.
    steps = StepResult.objects.filter(server_run__execution__task=task)
    audited = AuditEntry.objects.filter(task=task.task_id, action="execution.step")
    every = {server.server_id for server in servers}
    assert set(steps.values_list("server_run__server__server_id", flat=True)) == every and steps.count() >= 10 * 5
    assert set(audited.values_list("target", flat=True)) == every
    assert verify_chain().ok
