"""The port wait and the sanitizer's memory of passed commands, against the real testbed: the
wait resolves the address once, backs off without spinning, ends as soon as the WAS listens and
still times out on a closed port; a command that passed once lets no other text through."""

from __future__ import annotations

import socket
import threading
import time
from pathlib import Path

import pytest

from audit.models import AuditEntry
from execution import errors, probe, sanitizer
from execution.transport import SSHTransport, hash_and_move

pytestmark = pytest.mark.testbed


class Counted:
    """The real function, called through, with its calls counted (a spy, not a stand-in)."""

    def __init__(self, fn):
        self.fn, self.calls = fn, 0

    def __call__(self, *args, **kwargs):
        self.calls += 1
        return self.fn(*args, **kwargs)


def _stopped(testbed, server) -> tuple[str, int]:
    """The server's WAS stopped by its own shutdown.sh: its port closed."""
    srv = testbed.server(server.server_id)
    assert testbed.run_script(srv, "shutdown.sh").returncode == 0
    assert not probe.port_open("127.0.0.1", server.service_port)
    return "127.0.0.1", server.service_port


def test_a_closed_port_times_out_at_the_deadline_with_one_lookup(clean_testbed, testbed_cmdb, monkeypatch):
    host, port = _stopped(clean_testbed, testbed_cmdb[3])
    lookups = Counted(socket.getaddrinfo)
    monkeypatch.setattr(probe.socket, "getaddrinfo", lookups)
    probes = Counted(probe.PortProbe.accepts)
    monkeypatch.setattr(probe.PortProbe, "accepts", lambda self, **options: probes(self, **options))
    began = time.monotonic()
    assert probe.wait_open("localhost", port, 1.0) is False
    took = time.monotonic() - began
    assert 1.0 <= took < 1.6  # not before the deadline, and no pause past it
    assert lookups.calls == 1  # "localhost" resolved once for the whole wait
    # The pauses grow to WAIT_MAX: about 1 / 0.04 probes in a second, not one every few ms.
    assert 8 <= probes.calls <= 1.0 / probe.WAIT_MAX + 8
    assert probe.wait_open(host, port, 0) is False  # no time at all: one probe, and no wait


def test_the_wait_ends_as_soon_as_the_was_listens(clean_testbed, testbed_cmdb):
    server = testbed_cmdb[4]
    host, port = _stopped(clean_testbed, server)
    opened: list[float] = []

    def start_later() -> None:
        time.sleep(0.3)  # the WAS starts while the wait is already polling
        clean_testbed.run_script(clean_testbed.server(server.server_id), "startup.sh")
        while not probe.port_open(host, port, timeout=0.2):
            pass  # the moment this thread sees the port open
        opened.append(time.monotonic())

    starter = threading.Thread(target=start_later)
    began = time.monotonic()
    starter.start()
    try:
        assert probe.wait_open(host, port, 20) is True
        seen = time.monotonic()
    finally:
        starter.join(30)
    assert seen - began >= 0.3  # it did wait: the port was closed at first
    # Seen within one pause of opening (WAIT_MAX), plus the scheduling slack of a busy machine.
    assert seen - opened[0] < probe.WAIT_MAX + 0.25


def test_the_kill_switch_ends_the_wait_between_two_probes(clean_testbed, testbed_cmdb):
    host, port = _stopped(clean_testbed, testbed_cmdb[5])

    class Stopped(Exception):
        pass

    pauses: list[float] = []

    def sleep(seconds: float) -> None:  # as ServerContext.sleep does when the engine halts
        pauses.append(seconds)
        if len(pauses) == 3:
            raise Stopped

    with pytest.raises(Stopped):
        probe.wait_open(host, port, 30, sleep=sleep)
    assert pauses == pytest.approx([probe.WAIT_FIRST, probe.WAIT_FIRST * 1.5, probe.WAIT_FIRST * 2.25])


def test_a_passed_command_lets_no_other_text_through(testbed_cmdb, testbed):
    server = testbed_cmdb[8]
    log = Path(testbed.server(server.server_id)["command_log"])
    staged = f"{server.deploy_path}/app.war.cafe"
    passed = hash_and_move(staged + ".guardia-part", "0" * 64, staged)
    sanitizer._passed.cache_clear()
    with SSHTransport(server) as ssh:
        ssh.run(passed, timeout=10, shell="/bin/sh")  # the file is not there: exit 1, but it ran
        assert sanitizer._passed.cache_info().currsize == 1
        hits = sanitizer._passed.cache_info().hits
        ssh.run(passed, timeout=10, shell="/bin/sh")
        assert sanitizer._passed.cache_info().hits == hits + 1  # the same text: not parsed again
        # The same command with its destination one word longer: judged from scratch, refused.
        attack = passed + " /etc/passwd; rm -rf /"
        for _ in range(2):  # and again: a refusal is never remembered as a pass
            with pytest.raises(errors.SecurityViolation):
                ssh.run(attack, timeout=10, shell="/bin/sh")
    assert sanitizer._passed.cache_info().currsize == 1
    assert "rm -rf" not in log.read_text()
    assert AuditEntry.objects.filter(action="sanitizer.blocked", target=server.server_id).count() == 2


def test_a_str_subclass_is_judged_every_time(db):
    class Sly(str):  # every one of them "equal" to every other: a cache key would mix them up
        def __hash__(self):
            return 0

        def __eq__(self, other):
            return True

    sanitizer.check(Sly("echo fine"))
    with pytest.raises(errors.SecurityViolation):
        sanitizer.check(Sly("rm -rf /"))
