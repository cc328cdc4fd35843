"""Steps sent as one chain (SSHTransport.run_chain) against the real testbed sshd: each step's
own status and output as it ends, one remote process group for the chain, and the next step
started on the server only after the one before it ended well: never after a failure, a
timeout, the kill switch or a hold; a refused command stops the whole chain before anything is
sent. With the step supervisor and with a channel of its own."""

from __future__ import annotations

import hashlib
import threading
import time
from pathlib import Path

import pytest

from audit.models import AuditEntry
from execution import errors
from execution.transport import ChainStep, ConnectionLost, Hold, SSHTransport
from tests.execution.engine_helpers import running
from tests.waiting import wait_until

pytestmark = pytest.mark.testbed


@pytest.fixture(params=["supervisor", "channel"])
def mode(request, settings, monkeypatch):
    settings.SSH_STEP_SESSION = request.param == "supervisor"
    monkeypatch.setattr(SSHTransport, "supervise_from", 1)
    return request.param


def _root(testbed, server) -> Path:
    return Path(testbed.server(server.server_id)["root"]) / "run"


def test_each_step_reports_its_own_status_and_output_in_one_group(testbed_cmdb, mode):
    seen = []
    with SSHTransport(testbed_cmdb[0]) as ssh:
        results = ssh.run_chain(
            [
                ChainStep("echo one; echo err-one >&2", timeout=10),
                ChainStep("printf 'two, no newline'; exit 3", timeout=10, ok_codes=(0, 3)),
                ChainStep("printf '\\nGUARDIA-END-0 9 0\\n'; echo $$", timeout=10, shell="/bin/sh"),
            ],
            on_result=lambda index, result: seen.append((index, result.exit_code)),
        )
        assert [(r.exit_code, r.stdout, r.stderr) for r in results[:2]] == [
            (0, "one\n", "err-one\n"),
            (3, "two, no newline", ""),
        ]
        third = results[2]
        assert third.ok and third.stdout.startswith("\nGUARDIA-END-0 9 0\n")  # no fake end line
        assert results[0].output_sha256 == hashlib.sha256(b"one\n").hexdigest()
        # One process group for the chain: the steps' shells are its members, not leaders.
        assert results[0].pgid and {r.pgid for r in results} == {results[0].pgid}
        assert int(third.stdout.split()[-1]) != results[0].pgid
        assert seen == [(0, 0), (1, 3), (2, 0)]
        # The connection is as clean afterwards: a plain step and a second chain.
        assert ssh.run("echo after", timeout=10).stdout == "after\n"
        again = ssh.run_chain([ChainStep("echo a", timeout=5), ChainStep("echo b", timeout=5)])
        assert [r.stdout for r in again] == ["a\n", "b\n"]


def _ends_before_its_last(testbed, server, name: str, steps, *, hold=None, during=None, settle: float = 0.0):
    """Run ``steps`` and, after them, a step that leaves a marker file; check that the marker step
    never ran and that the connection runs a plain step afterwards; return the results.
    ``during(ssh)``: called while the chain runs in another thread."""
    marker = _root(testbed, server) / f"chain-{name}"
    marker.unlink(missing_ok=True)
    chain = [*steps, ChainStep(f"touch {marker}", timeout=10)]
    with SSHTransport(server) as ssh:
        if during is None:
            results = ssh.run_chain(chain, hold=hold)
        else:
            done: list = []
            thread = threading.Thread(target=lambda: done.append(ssh.run_chain(chain, hold=hold)))
            thread.start()
            during(ssh)
            thread.join(15)
            results = done[0]
        assert ssh.run("echo next", timeout=10).stdout == "next\n"
    time.sleep(settle)  # had the chain's shell survived, it would have gone on at once
    assert not marker.exists()
    return results


def test_a_failed_step_ends_the_chain_on_the_server(testbed_cmdb, testbed, mode):
    steps = [ChainStep("echo first", timeout=10), ChainStep("echo failing >&2; exit 4", timeout=10)]
    results = _ends_before_its_last(testbed, testbed_cmdb[1], f"failure-{mode}", steps)
    assert [r.exit_code for r in results] == [0, 4] and results[1].stderr == "failing\n"


def test_a_timeout_kills_the_step_and_nothing_after_it_runs(testbed_cmdb, testbed, mode):
    started = time.monotonic()
    steps = [ChainStep("echo quick", timeout=10), ChainStep("sleep 30 & wait", timeout=1)]
    results = _ends_before_its_last(testbed, testbed_cmdb[2], f"timeout-{mode}", steps, settle=0.5)
    assert time.monotonic() - started < 12
    assert results[0].ok and results[1].timed_out and results[1].exit_code is None and len(results) == 2


def test_the_kill_switch_kills_the_chain_and_its_step(testbed_cmdb, testbed, mode):
    tag = f"chain-kill-{mode}-{time.monotonic_ns()}"
    head, tail = tag[:6], tag[6:]  # joined by the step's shell: the chain's own command line never shows it
    steps = [
        ChainStep("true", timeout=10),
        ChainStep(f'h={head}; exec -a "${{h}}{tail}" sleep 60', timeout=60, shell="/bin/bash"),
    ]

    def kill_when_it_runs(ssh):
        wait_until(lambda: running(tag), timeout=10)
        assert ssh.kill_running()

    results = _ends_before_its_last(testbed, testbed_cmdb[3], f"kill-{mode}", steps, during=kill_when_it_runs)
    assert len(results) == 2 and results[1].killed and not results[1].ok_for((0,))
    assert not running(tag)


@pytest.mark.parametrize("kind", [threading.Event, Hold])  # looked at every 50 ms / wakes the wait
def test_a_hold_lets_the_step_under_way_end_and_starts_no_other(testbed_cmdb, testbed, mode, kind):
    hold = kind()
    timer = threading.Timer(0.3, hold.set)
    timer.start()
    steps = [ChainStep("sleep 1; echo finished", timeout=10)]
    results = _ends_before_its_last(testbed, testbed_cmdb[4], f"hold-{mode}-{kind.__name__}", steps, hold=hold)
    timer.join()
    assert [(r.exit_code, r.stdout) for r in results] == [(0, "finished\n")]  # not killed: it ended


def test_a_chain_whose_shell_dies_under_a_step_reports_that_step_as_failed(testbed_cmdb, testbed, mode):
    steps = [ChainStep("kill -s KILL $PPID; sleep 0.2; echo orphan", timeout=10)]
    results = _ends_before_its_last(testbed, testbed_cmdb[7], f"death-{mode}", steps)
    assert len(results) == 1 and results[0].exit_code is None and not results[0].ok_for((0,))
    assert not results[0].killed and not results[0].timed_out


def test_a_refused_command_anywhere_in_the_chain_sends_nothing(testbed_cmdb, testbed, mode):
    server = testbed_cmdb[5]
    marker = _root(testbed, server) / f"chain-before-refusal-{mode}"
    marker.unlink(missing_ok=True)
    with SSHTransport(server) as ssh:
        with pytest.raises(errors.SecurityViolation) as refused:
            ssh.run_chain([ChainStep(f"touch {marker}", timeout=5), ChainStep("rm -rf /", timeout=5)])
        assert refused.value.chain_index == 1
        assert ssh.run("echo after", timeout=5).stdout == "after\n"
    assert not marker.exists()
    entry = AuditEntry.objects.filter(action="sanitizer.blocked").latest("seq")
    assert entry.target == server.server_id and "rm -rf /" in entry.command


def test_a_connection_lost_mid_chain_names_the_step(testbed_cmdb, testbed, mode):
    server = testbed_cmdb[6]
    begun = _root(testbed, server) / f"chain-second-step-{mode}"
    begun.unlink(missing_ok=True)
    with SSHTransport(server) as ssh:

        def cut_when_the_second_step_runs():
            wait_until(begun.exists, timeout=20)
            ssh._transport.sock.close()

        cutter = threading.Thread(target=cut_when_the_second_step_runs)
        cutter.start()
        with pytest.raises(ConnectionLost) as lost:
            ssh.run_chain([ChainStep("true", timeout=30), ChainStep(f"touch {begun}; sleep 5", timeout=30)])
        cutter.join()
        assert lost.value.chain_index == 1


def test_a_hold_set_before_the_chain_began_is_still_passed_on(testbed_cmdb, testbed, mode):
    hold = Hold()
    hold.set()  # before the chain's shell has told its group id
    steps = [ChainStep("sleep 0.3; echo first", timeout=10)]
    results = _ends_before_its_last(testbed, testbed_cmdb[8], f"early-hold-{mode}", steps, hold=hold)
    assert [(r.exit_code, r.stdout) for r in results] == [(0, "first\n")]


def test_a_hold_wakes_only_the_waits_watching_it():
    hold, before, during = Hold(), threading.Event(), threading.Event()
    with hold.watching(before):
        pass
    with hold.watching(during):
        assert not during.is_set()
        hold.set()
        assert hold.is_set() and during.is_set()
    assert not before.is_set()  # no longer watching when the hold came
    hold.clear()
    assert not hold.is_set() and hold.wait(0.01) is False  # still a plain Event otherwise
