"""Lost connections, changed host keys, the sanitizer at the engine (TS-03), refusals and quiet exits."""

from __future__ import annotations

import threading
import time

import pytest

from audit.models import AuditEntry
from cmdb.models import Server
from execution import playbooks
from execution.engine import Engine
from execution.models import Execution, ServerRun
from execution.playbooks.base import Playbook
from execution.rolling import RolloutStrategy
from execution.services import ArtifactStore, run_task
from governance.models import Notification, OpsTask, Status
from tests.waiting import wait_until

from .engine_helpers import (
    approved_task,
    commands_received,
    deploy_parameters,
    fast_port_wait,
    startup_hanging,
    version_of,
)

pytestmark = [pytest.mark.testbed, pytest.mark.django_db(transaction=True)]


def test_sshd_killed_mid_step_is_state_uncertain_with_an_alert(testbed, testbed_cmdb):
    servers = testbed_cmdb[:5]
    fast_port_wait(servers, 5)
    victim = servers[2]
    testbed.fault(victim.server_id, "hang")  # keeps the step running while the server "dies"
    hanging = startup_hanging(testbed, victim)

    def pull_the_plug():
        wait_until(hanging, timeout=60)
        time.sleep(0.3)  # the server dies while the hung script runs, not before it starts
        testbed.fault(victim.server_id, "sshd_down")

    thread = threading.Thread(target=pull_the_plug)
    thread.start()
    task = approved_task(servers, parameters=deploy_parameters("2.0.0", script_timeout=60))
    started = time.monotonic()
    outcome = run_task(task.pk)
    thread.join()
    assert outcome == "STATE_UNCERTAIN"
    assert time.monotonic() - started < 40
    task.refresh_from_db()
    assert task.status == Status.STATE_UNCERTAIN
    assert victim.server_id in task.failure_reason and "연결이 끊겼습니다" in task.failure_reason
    assert "확인 접속: 실패" in task.failure_reason
    run = ServerRun.objects.get(execution__task=task, server_ref=victim.server_id)
    assert run.state == "UNCERTAIN"
    # The others of the group were restored; people were alerted.
    for server in servers:
        if server != victim:
            assert version_of(server) == "1.0.0"
    assert Notification.objects.filter(task=task, kind="alert").exists()


def test_changed_host_key_is_refused_and_nothing_changes_there(testbed, testbed_cmdb):
    servers = testbed_cmdb[:4]
    target = servers[1]
    Server.objects.filter(pk=target.pk).update(host_key_fingerprint="SHA256:" + "A" * 43)
    before = commands_received(testbed, target.server_id)
    task = approved_task(servers, parameters=deploy_parameters("2.0.0"))

    assert run_task(task.pk) == "FAILED_ROLLED_BACK"

    task.refresh_from_db()
    assert "호스트 키" in task.failure_reason and target.server_id in task.failure_reason
    assert commands_received(testbed, target.server_id) == before
    assert ServerRun.objects.get(execution__task=task, server_ref=target.server_id).state == "REFUSED"
    assert all(version_of(s) == "1.0.0" for s in servers)


@pytest.mark.parametrize("command", ["rm -rf /", "r''m -rf  /", "rm${IFS}-rf${IFS}/", ":(){ :|:& };:"])
def test_ts03_sanitizer_block_never_reaches_the_server(testbed, testbed_cmdb, command):
    servers = testbed_cmdb[:2]
    before = {s.server_id: commands_received(testbed, s.server_id) for s in servers}
    task = approved_task(servers, sub_type="RAW_COMMAND", parameters={"command": command})

    assert run_task(task.pk) == "FAILED_ROLLED_BACK"

    task.refresh_from_db()
    assert "명령 검사기 차단" in task.failure_reason
    for server in servers:  # the server's own command log: nothing arrived
        assert commands_received(testbed, server.server_id) == before[server.server_id]
    assert AuditEntry.objects.filter(action="security.violation", task=task.task_id).exists()


class SneakyPlaybook(Playbook):
    """A (buggy) playbook whose command is only known at run time: the transport still blocks it."""

    NAME = "SNEAKY"
    VERSION = "0.0.1"
    ROLLING = False

    def forward(self, ctx) -> None:
        ctx.run("harmless", "echo hello", timeout=10)
        ctx.run("sneaky", "dd if=/dev/zero of=/dev/sda bs=1M", timeout=10)


def test_ts03_the_transport_blocks_a_command_built_at_run_time(testbed, testbed_cmdb):
    server = testbed_cmdb[0]
    before = commands_received(testbed, server.server_id)
    engine = Engine(
        playbook=SneakyPlaybook(raw={}),
        servers=[server],
        strategy=RolloutStrategy(),
        artifacts=ArtifactStore(),
        inspection=None,
    )
    result = engine.run()
    assert result.outcome == "FAILED_ROLLED_BACK" and "명령 검사기 차단" in result.reason
    arrived = commands_received(testbed, server.server_id)[len(before) :]
    assert "echo hello" in arrived and "/dev/sda" not in arrived
    steps = {s.name: s.state for s in ServerRun.objects.get(execution=result.execution).steps.all()}
    assert steps == {"harmless": "OK", "sneaky": "BLOCKED"}


def test_bad_parameters_refused_before_any_server(testbed, testbed_cmdb):
    servers = testbed_cmdb[:2]
    before = commands_received(testbed, servers[0].server_id)
    task = approved_task(servers, parameters={"artifact_sha256": "0" * 64, "version": "9.9.9"})
    assert run_task(task.pk) == "FAILED_ROLLED_BACK"
    task.refresh_from_db()
    assert "아티팩트 저장소에 없습니다" in task.failure_reason
    assert commands_received(testbed, servers[0].server_id) == before


def test_run_task_exits_quietly_when_the_task_must_not_run(testbed_cmdb):
    task = approved_task(testbed_cmdb[:1], parameters=deploy_parameters("2.0.0"))
    OpsTask.objects.filter(pk=task.pk).update(status=Status.CANCELLED)
    assert run_task(task.pk) is None
    assert run_task(999999) is None
    assert not Execution.objects.exists()


def test_playbook_registry_matches_stored_version(testbed_cmdb):
    task = approved_task(testbed_cmdb[:1], parameters=deploy_parameters("2.0.0"))
    OpsTask.objects.filter(pk=task.pk).update(playbook_version="0.9.0")
    assert run_task(task.pk) == "FAILED_ROLLED_BACK"
    task.refresh_from_db()
    assert f"설치된 버전은 v{playbooks.get('APP_DEPLOY').VERSION}입니다" in task.failure_reason


def test_failures_allowed_tolerates_one_bad_server(testbed, testbed_cmdb):
    servers = testbed_cmdb[:4]
    fast_port_wait(servers, 5)
    testbed.fault(servers[0].server_id, "startup_exit")
    task = approved_task(servers, parameters=deploy_parameters("2.0.0", failures_allowed=1))
    assert run_task(task.pk) == "SUCCEEDED"
    assert version_of(servers[0]) == "1.0.0"
    assert [version_of(s) for s in servers[1:]] == ["2.0.0"] * 3


def test_full_disk_fails_the_pre_check_before_anything_changes(testbed, testbed_cmdb):
    servers = testbed_cmdb[:3]
    testbed.fault(servers[2].server_id, "disk_full")
    task = approved_task(servers, parameters=deploy_parameters("2.0.0"))
    assert run_task(task.pk) == "FAILED_ROLLED_BACK"
    task.refresh_from_db()
    assert f"여유 공간이 0 MB뿐입니다 ({servers[2].server_id}, 필요 " in task.failure_reason
    assert all(version_of(s) == "1.0.0" for s in servers)
