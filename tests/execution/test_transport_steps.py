"""The step supervisor (SSH_STEP_SESSION) against the real testbed sshd: many steps over one
channel, each still in its own remote process group, with its own exit status, bounded and
hashed output, timeout and kill; and a whole APP_DEPLOY recorded step by step as before."""

from __future__ import annotations

import hashlib
import time
from pathlib import Path

import pytest

from audit.models import AuditEntry
from audit.verify import verify_chain
from execution import errors
from execution.models import Execution, StepResult
from execution.services import run_task
from execution.transport import SUPERVISOR, SSHTransport

from .engine_helpers import (
    approved_task,
    commands_received,
    deploy_parameters,
    fast_port_wait,
    press_stop_when,
    running,
    startup_hanging,
    version_of,
)

# The per-channel transport's own tests, collected here again and run through the supervisor
# (the autouse fixture below): exit status, bounds, timeout and kill of the process group,
# uploads, a lost connection, descriptors above 1024.
from .test_transport import (  # noqa: F401
    test_commands_work_when_descriptors_pass_1024,
    test_exit_code_decides_and_output_is_hashed,
    test_kill_running_stops_the_remote_command,
    test_lost_connection_mid_command_and_probe,
    test_output_is_bounded_but_hashed_whole,
    test_put_into_a_full_disk_fails_cleanly,
    test_put_verifies_sha256_on_the_server_and_get_reads_back,
    test_timeout_kills_the_remote_process_group,
)

pytestmark = pytest.mark.testbed


@pytest.fixture(autouse=True)
def step_session(settings, monkeypatch):
    settings.SSH_STEP_SESSION = True
    monkeypatch.setattr(SSHTransport, "supervise_from", 1)  # every command, the first one too


def test_many_steps_share_one_channel_each_with_its_own_status_and_group(testbed_cmdb, testbed):
    server = testbed_cmdb[0]
    log = Path(testbed.server(server.server_id)["command_log"])
    before = len(log.read_text().splitlines()) if log.exists() else 0
    with SSHTransport(server) as ssh:
        assert ssh.step_session
        first = ssh.run("echo hello; echo oops >&2; exit 3", timeout=10)
        assert (first.exit_code, first.stdout, first.stderr) == (3, "hello\n", "oops\n")
        assert first.output_sha256 == hashlib.sha256(b"hello\n").hexdigest() and first.pgid
        channel = ssh._steps
        # No trailing newline, an empty output, a would-be end line without the nonce, a step's
        # own shell state that must not leak into the next step, stdin closed.
        assert ssh.run("printf 'no newline'", timeout=10).stdout == "no newline"
        empty = ssh.run("true", timeout=10, shell="/bin/sh")
        assert (empty.exit_code, empty.stdout, empty.stderr) == (0, "", "")
        fake = ssh.run("printf '\\nGUARDIA-END-0 2 0\\nstill me\\n'", timeout=10)
        assert fake.stdout == "\nGUARDIA-END-0 2 0\nstill me\n" and fake.ok
        assert ssh.run("cd /tmp; X=1; exit 0", timeout=10).ok
        assert ssh.run('pwd; echo "x=$X"', timeout=10).stdout != "/tmp\nx=1\n"
        assert ssh.run("cat", timeout=10).stdout == ""
        second = ssh.run("echo $$", timeout=10)
        assert second.pgid == int(second.stdout) and second.pgid != first.pgid
        assert ssh._steps is channel  # every step above went over the one channel
    after = log.read_text().splitlines()[before:]
    # sshd started one session for the eight steps; the testbed's recorder logged each step in it.
    assert after[0] == SUPERVISOR and len(after) == 9, after
    assert all(line.startswith("setsid -w ") for line in after[1:]) and "exit 3" in after[1], after
    ended = Path(str(log) + ".exit").read_text().splitlines()
    assert [line.split(" ", 1)[0] for line in ended[-8:]] == ["3", "0", "0", "0", "0", "0", "0", "0"], ended


def test_both_streams_are_bounded_and_the_next_step_starts_clean(testbed_cmdb):
    with SSHTransport(testbed_cmdb[0]) as ssh:
        result = ssh.run("head -c 200000 /dev/zero; head -c 100000 /dev/zero >&2", timeout=10, max_output=1000)
        assert len(result.stdout) == 1000 and len(result.stderr) == 1000 and result.truncated
        assert result.output_sha256 == hashlib.sha256(b"\0" * 200000).hexdigest()
        assert ssh.run("echo next", timeout=10).stdout == "next\n"


def test_sanitizer_block_never_reaches_the_server(testbed_cmdb, clean_testbed):
    server = testbed_cmdb[6]
    marker = Path(clean_testbed.server(server.server_id)["root"]) / "run" / "blocked-marker"
    with SSHTransport(server) as ssh:
        assert ssh.run("echo before", timeout=5).ok
        with pytest.raises(errors.SecurityViolation):
            ssh.run(f"touch {marker}; rm -rf /", timeout=5)
        assert ssh.run("echo after", timeout=5).stdout == "after\n"
    assert not marker.exists()
    entry = AuditEntry.objects.filter(action="sanitizer.blocked").latest("seq")
    assert entry.target == server.server_id and "rm -rf /" in entry.command


@pytest.mark.django_db(transaction=True)
def test_app_deploy_records_every_step_as_with_a_channel_each(testbed_cmdb, testbed, settings, monkeypatch):
    monkeypatch.setattr(SSHTransport, "supervise_from", 2)  # as in production (a deploy: many_steps)
    # Checkpoints every 7 entries: the recorder appends a drain's entries in one batch
    # (audit.record_many), so checkpoints fall inside batches; the chain must verify.
    settings.AUDIT_CHECKPOINT_EVERY = 7
    servers = testbed_cmdb[:4]
    fast_port_wait(servers)
    task = approved_task(servers, parameters=deploy_parameters("2.0.0", max_parallel=4))
    logs = {s.server_id: len(commands_received(testbed, s.server_id).splitlines()) for s in servers}
    assert run_task(task.pk) == "SUCCEEDED"
    assert all(version_of(s) == "2.0.0" for s in servers)
    execution = Execution.objects.get(task=task)
    steps = StepResult.objects.filter(server_run__execution=execution).exclude(command="")
    per_server = {s.server_id: steps.filter(server_run__server_ref=s.server_id) for s in servers}
    for sid, rows in per_server.items():
        names = list(rows.order_by("seq").values_list("name", flat=True))
        assert names == [
            "upload",
            "pre-check",
            "backup",
            "upload-verify",
            "shutdown",
            "swap",
            "startup",
            "post-check",
        ], sid
        assert not rows.exclude(state="OK").exists() and all(len(r.output_sha256) == 64 for r in rows)
    audited = AuditEntry.objects.filter(action="execution.step", task=task.task_id)
    assert audited.count() == steps.count()
    assert set(audited.values_list("command", flat=True)) == set(steps.values_list("command", flat=True))
    report = verify_chain()
    assert report.ok and report.checkpoints >= steps.count() // 7, report.message()
    for s in servers:
        received = commands_received(testbed, s.server_id).splitlines()[logs[s.server_id] :]
        # A deploy runs many steps: one supervisor for all of them (the first one too) and the
        # SFTP subsystem, two sshd sessions where each step used to open one. The testbed's
        # recorder logs each supervised statement as it starts: pre-check, backup, upload-verify,
        # the chain of shutdown, swap and startup (one statement), post-check.
        # The two open at the same time (the upload streams while the pre-check runs).
        sessions = [line for line in received if not line.startswith("setsid -w ")]
        assert len(sessions) == 2 and SUPERVISOR in sessions, received
        assert any("sftp" in line for line in sessions), received
        assert len(received) - len(sessions) == 5, received
        chain = [line for line in received if "shutdown.sh" in line]
        assert len(chain) == 1 and "mv -f " in chain[0] and "startup.sh" in chain[0], received


@pytest.mark.django_db(transaction=True)
def test_kill_switch_kills_a_supervised_step_and_restores_the_group(testbed_cmdb, testbed, monkeypatch):
    monkeypatch.setattr(SSHTransport, "supervise_from", 2)  # as in production (a deploy: many_steps)
    servers = testbed_cmdb[:4]
    fast_port_wait(servers, 5)
    hung = servers[2]
    testbed.fault(hung.server_id, "hang")  # startup.sh of the new version hangs until killed
    task = approved_task(servers, parameters=deploy_parameters("2.0.0", script_timeout=60, max_parallel=4))
    script = f"{hung.script_path}/startup.sh"
    seen = len(commands_received(testbed, hung.server_id))

    thread = press_stop_when(task, startup_hanging(testbed, hung))
    started = time.monotonic()
    outcome = run_task(task.pk)
    thread.join()
    assert outcome == "ABORTED" and time.monotonic() - started < 30  # killed, not waited out
    assert not running(script)
    assert [version_of(s) for s in servers] == ["1.0.0"] * 4
    killed = StepResult.objects.get(
        server_run__execution__task=task, server_run__server_ref=hung.server_id, name="startup", phase="forward"
    )
    assert killed.state == "KILLED"
    received = commands_received(testbed, hung.server_id)[seen:]
    # The step went through the supervisor (the testbed recorded it there) and did not end well.
    assert SUPERVISOR in received
    assert any(line.startswith("setsid -w ") and "startup.sh" in line for line in received.splitlines())
    ended = Path(testbed.server(hung.server_id)["command_log"] + ".exit").read_text().splitlines()
    killed_ends = [line for line in ended if "startup.sh" in line and line.startswith(("143 setsid ", "137 setsid "))]
    assert len(killed_ends) == 1, ended  # TERM (or KILL after the grace) ended the hung startup
