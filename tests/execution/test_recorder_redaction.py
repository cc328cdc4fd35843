"""The recorder's rows and audit entries: a step's output is redacted once by its worker, and again
by the recorder only when a secret became known after the worker's pass; the stored digest of a
redacted output is the redacted text's; bulk rows are the rows the ORM would write."""

from __future__ import annotations

import datetime as dt
import hashlib
from pathlib import Path

import pytest
from django.db import connection

from audit.models import AuditEntry
from audit.rows import row_values
from cmdb import vault
from execution.models import StepResult
from execution.rolling import ServerContext
from execution.services import run_task

from .engine_helpers import approved_task


def _log_mining(server, line: str):
    log = Path(server.log_path)
    log.write_text(log.read_text() + line + "\n")
    return approved_task([server], sub_type="LOG_MINING", parameters={"pattern": "."})


def _grep_step(task) -> StepResult:
    return StepResult.objects.get(server_run__execution__task=task, name="grep-log")


@pytest.mark.testbed
def test_a_secret_known_only_after_the_workers_pass_is_redacted_by_the_recorder(testbed_cmdb, monkeypatch):
    server = testbed_cmdb[0]
    late = "Late-Decrypted-Secret-5150"
    task = _log_mining(server, f"2026-11-30 09:00:01 ERROR replica said {late}")
    real_emit = ServerContext._emit

    def emit(self, name, **data):  # another thread decrypts the secret after this worker redacted
        if name == "grep-log":
            assert late in data["output"]  # the worker could not know it yet
            vault.register_secret(late)
        real_emit(self, name, **data)

    monkeypatch.setattr(ServerContext, "_emit", emit)
    assert run_task(task.pk) == "SUCCEEDED"

    step = _grep_step(task)
    assert late not in step.output_excerpt and "replica said [REDACTED]" in step.output_excerpt
    assert step.output_sha256 == hashlib.sha256(step.output_excerpt.encode()).hexdigest()
    entries = AuditEntry.objects.filter(task=task.task_id, action="execution.step")
    assert entries.count() >= 1
    assert not any(late in text for text in entries.values_list("canonical", flat=True))


@pytest.mark.testbed
def test_a_redacted_outputs_digest_is_the_stored_texts_not_the_raw_streams(testbed_cmdb):
    server = testbed_cmdb[0]
    task = _log_mining(server, "2026-11-30 09:00:01 ERROR login failed password=hunter2 user=app")
    assert run_task(task.pk) == "SUCCEEDED"

    step = _grep_step(task)
    assert "password=[REDACTED]" in step.output_excerpt and "hunter2" not in step.output_excerpt
    # The digest of the raw stream would let anyone test guesses of a short secret against it.
    assert step.output_sha256 == hashlib.sha256(step.output_excerpt.encode()).hexdigest()
    entry = AuditEntry.objects.get(task=task.task_id, action="execution.step", canonical__contains='"grep-log"')
    assert entry.result_hash == step.output_sha256


@pytest.mark.django_db
def test_bulk_rows_are_what_the_orm_would_write():
    entry = AuditEntry(
        seq=7, created_at=dt.datetime(2026, 11, 30, 9, tzinfo=dt.UTC), actor="system", actor_id=None,
        action="execution.step", institution="INST", task="OPS-1", target="srv-1", command="uptime",
        result_code=0, result_hash="", payload={"b": 1, "a": "한"}, prev_hash="0" * 64, entry_hash="1" * 64,
        canonical="{}",
    )  # fmt: skip
    fields = [f for f in AuditEntry._meta.concrete_fields if not f.primary_key]
    expected = [f.get_db_prep_save(f.pre_save(entry, True), connection) for f in fields]
    assert row_values([entry], fields, pre_save=True) == [expected]
    assert row_values([entry], fields)[0][fields.index(AuditEntry._meta.get_field("result_code"))] == "0"
