"""A step whose effect the server cannot show (a site's data script's run) is sent only once
the step before it (the backup) is committed to the journal: a worker lost after sending it
leaves the backup journaled, so recovery restores from it instead of guessing."""

from __future__ import annotations

import pytest

from execution.models import StepResult
from execution.services import run_task
from execution.transport import SSHTransport
from tests.execution.test_worker_kill_resume import _data_prepare, root_of

from .engine_helpers import approved_task

pytestmark = [pytest.mark.testbed, pytest.mark.django_db(transaction=True)]


def test_the_data_scripts_run_is_sent_only_after_its_backup_is_in_the_journal(testbed_cmdb, monkeypatch):
    server = testbed_cmdb[0]
    _data_prepare([server], "barrier")
    task = approved_task([server], "DATA_CLEANUP", {"script": "purge"})
    seen: dict[str, bool] = {}
    real_run = SSHTransport.run

    def run(self, command, *args, **kwargs):  # the real transport, watched
        if " run" in command and "purge.sh" in command:
            journal = StepResult.objects.filter(server_run__execution__task=task, phase="forward")
            seen["backup journaled when run was sent"] = journal.filter(name="backup", state="OK").exists()
        return real_run(self, command, *args, **kwargs)

    monkeypatch.setattr(SSHTransport, "run", run)
    assert run_task(task.pk) == "SUCCEEDED"
    assert seen == {"backup journaled when run was sent": True}
    assert sorted(p.name for p in (root_of(server) / "data").iterdir()) == []  # the run did run
