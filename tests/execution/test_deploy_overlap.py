"""APP_DEPLOY's upload beside the pre-check and the backup, on real testbed servers: the step rows
tell the overlap as it happened, a failed pre-check leaves nothing of the upload on the server,
and the kill switch stops an upload that is still streaming."""

from __future__ import annotations

from pathlib import Path

import pytest

from cmdb.models import HealthCriteria
from execution.models import StepResult
from execution.services import run_task
from governance.models import OpsTask, Status

from .engine_helpers import (
    approved_task,
    backup_of,
    commands_received,
    deploy_parameters,
    fast_port_wait,
    press_stop_when,
    version_of,
    war,
)

pytestmark = [pytest.mark.testbed, pytest.mark.django_db(transaction=True)]


def _rows(task, server) -> dict[str, StepResult]:
    rows = StepResult.objects.filter(server_run__execution__task=task, server_run__server_ref=server.server_id)
    return {row.name: row for row in rows.filter(phase="forward").order_by("seq")}


def _end(row: StepResult) -> float:
    return row.started_at.timestamp() + row.duration_ms / 1000


def _staged_files(server) -> list[str]:
    return sorted(p.name for p in Path(server.deploy_path).iterdir() if p.name.startswith("app.war"))


def _big_deploy(version: str, size: int) -> dict:
    parameters = deploy_parameters(version, max_parallel=1)
    artifact = war(version, size)
    return {**parameters, "artifact_sha256": artifact["sha256"]}


def test_upload_runs_beside_pre_check_and_backup_and_is_moved_only_after_them(testbed_cmdb):
    server = testbed_cmdb[0]
    fast_port_wait([server])
    task = approved_task([server], parameters=_big_deploy("2.0.0", 4 << 20))
    assert run_task(task.pk) == "SUCCEEDED" and version_of(server) == "2.0.0"
    rows = _rows(task, server)
    assert list(rows)[:4] == ["upload", "pre-check", "backup", "upload-verify"]
    upload, pre_check, backup, verify = (rows[n] for n in ("upload", "pre-check", "backup", "upload-verify"))
    assert all(r.state == "OK" for r in rows.values())
    # The intervals overlap, as they ran: the transfer began first and was still going when the
    # pre-check began; the SHA-256 check and move began only after the transfer and the backup ended.
    assert upload.started_at <= pre_check.started_at and _end(upload) > pre_check.started_at.timestamp()
    assert verify.started_at.timestamp() >= max(_end(upload), _end(backup)) - 0.002
    assert upload.command.startswith("sftp put ") and upload.command.split()[2].endswith(".guardia-part")
    assert verify.exit_code == 0 and "mv -f --" in verify.command
    assert len(verify.output_excerpt.split()[0]) == 64  # the hash the server printed
    assert _staged_files(server) == []  # staged, then swapped into the app: no partial file left
    # The HTTP probe began (from the worker) before the post-check command it runs beside.
    assert rows["http"].seq < rows["post-check"].seq and rows["http"].started_at <= rows["post-check"].started_at
    assert rows["http"].state == "OK" and "version=2.0.0" in rows["http"].output_excerpt


def test_failed_pre_check_changes_nothing_and_removes_the_staged_upload(testbed_cmdb, testbed):
    server = testbed_cmdb[0]
    fast_port_wait([server])
    # More free space than any disk has: the pre-check's disk finding fails the server.
    HealthCriteria.objects.filter(system=server.system).update(min_free_disk_mb=10**9)
    live_before = (Path(server.app_path) / "app.war").read_bytes()
    seen = len(commands_received(testbed, server.server_id))
    task = approved_task([server], parameters=_big_deploy("2.0.0", 2 << 20))
    run_task(task.pk)
    task.refresh_from_db()
    # df's line was read (free space known) and judged too small.
    assert task.status == Status.FAILED_ROLLED_BACK and "MB뿐입니다" in task.failure_reason
    rows = _rows(task, server)
    assert rows["pre-check"].state == "OK" and "backup" not in rows and "upload-verify" not in rows
    assert rows["upload"].state == "KILLED" and "취소" in rows["upload"].output_excerpt
    # Nothing on the server changed: the live artifact, no backup, and no staged or partial file.
    assert (Path(server.app_path) / "app.war").read_bytes() == live_before and version_of(server) == "1.0.0"
    assert backup_of(server, task) == "" and _staged_files(server) == []
    received = commands_received(testbed, server.server_id)[seen:]
    assert "cp -p" not in received and "shutdown.sh" not in received and "mv -f" not in received


def test_kill_switch_stops_the_upload_while_it_streams(testbed_cmdb, testbed):
    server = testbed_cmdb[0]
    fast_port_wait([server])
    task = approved_task([server], parameters=_big_deploy("2.0.0", 96 << 20))
    partial = Path(server.deploy_path)

    def streaming() -> bool:
        return any(p.name.endswith(".guardia-part") and p.stat().st_size > 0 for p in partial.iterdir())

    thread = press_stop_when(task, streaming)
    outcome = run_task(task.pk)
    thread.join()
    assert outcome == "ABORTED"
    assert OpsTask.objects.get(pk=task.pk).status == Status.ABORTED
    rows = _rows(task, server)
    # Cut while it streamed: recorded as stopped, never checked or moved, its partial file removed.
    assert rows["upload"].state == "KILLED" and "upload-verify" not in rows
    assert "전송 완료 후" not in rows["upload"].output_excerpt  # stopped mid-transfer, not after it
    assert _staged_files(server) == [] and version_of(server) == "1.0.0"
    assert "shutdown" not in rows
