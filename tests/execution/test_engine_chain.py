"""A restart sent as one chain, inside a real run on the sshd testbed: when another server's
failure stops the run, a server whose chain is under way ends the step it is in and starts no
other (the hold), and the rollback restores it from what its steps left."""

from __future__ import annotations

from pathlib import Path

import pytest

from execution.models import StepResult
from execution.services import run_task

from .engine_helpers import approved_task, deploy_parameters, fast_port_wait, version_of

pytestmark = [pytest.mark.testbed, pytest.mark.django_db(transaction=True)]


def _starts(testbed, server) -> int:
    log = Path(testbed.server(server.server_id)["root"]) / "logs" / "catalina.out"
    return log.read_text(errors="replace").count("INFO: Using CATALINA_BASE") if log.exists() else 0


def test_a_stop_holds_a_chain_under_way_and_the_rollback_restores_its_server(testbed, testbed_cmdb):
    failing, slow = testbed_cmdb[:2]
    fast_port_wait([failing, slow], 5)
    testbed.fault(failing.server_id, "startup_exit")  # its chain fails at the startup: the run stops
    testbed.fault(slow.server_id, "slow_shutdown")  # its shutdown is still under way when that happens
    starts = _starts(testbed, slow)
    task = approved_task([failing, slow], parameters=deploy_parameters("2.0.0", max_parallel=2))

    assert run_task(task.pk) == "FAILED_ROLLED_BACK"

    rows = StepResult.objects.filter(server_run__execution__task=task, server_run__server_ref=slow.server_id)
    forward = list(rows.filter(phase="forward").order_by("seq").values_list("name", "state"))
    # The shutdown under way ended (and was recorded as it ended); the swap and the startup
    # chained behind it were never started on the server.
    assert forward[-1] == ("shutdown", "OK") and not {"swap", "startup"} & {name for name, _ in forward}, forward
    rollback = list(rows.filter(phase="rollback").order_by("seq").values_list("name", flat=True))
    assert "rb-clean-staging" in rollback and "rb-startup" in rollback, rollback  # the file it staged, removed
    assert _starts(testbed, slow) == starts + 1  # started once: by the rollback, never by the forward chain
    staging = Path(slow.deploy_path)
    assert not [p.name for p in staging.iterdir() if p.name.startswith("app.war.")]
    assert version_of(slow) == version_of(failing) == "1.0.0"
