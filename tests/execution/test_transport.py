"""SSHTransport against the real testbed sshd: exit codes, timeouts that kill the remote
process group, host-key pinning, SFTP with server-side SHA-256, the sanitizer gate."""

from __future__ import annotations

import hashlib
import threading
import time
from pathlib import Path

import pytest

from audit.models import AuditEntry
from execution import errors
from execution.transport import (
    ConnectionLost,
    HostKeyMismatch,
    SSHTransport,
    TransportError,
    scan_host_key,
)
from testbed import procs
from tests.waiting import wait_until

pytestmark = pytest.mark.testbed


def _group_alive(pgid: int) -> list[int]:
    alive = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[2]) == pgid and fields[0] != "Z":
                alive.append(int(entry.name))
    return alive


def test_exit_code_decides_and_output_is_hashed(testbed_cmdb):
    server = testbed_cmdb[0]
    with SSHTransport(server) as ssh:
        result = ssh.run("echo hello; echo oops >&2; exit 3", timeout=10)
        assert (result.exit_code, result.stdout, result.stderr) == (3, "hello\n", "oops\n")
        assert result.output_sha256 == hashlib.sha256(b"hello\n").hexdigest()
        assert not result.ok and not result.timed_out and result.pgid
        ok = ssh.run("cat " + server.script_path + "/../app/app.war", timeout=10)
        assert ok.ok and ok.stdout == "version=1.0.0\n"


def test_output_is_bounded_but_hashed_whole(testbed_cmdb):
    with SSHTransport(testbed_cmdb[0]) as ssh:
        result = ssh.run("head -c 200000 /dev/zero", timeout=10, max_output=1000)
    assert len(result.stdout) == 1000 and result.truncated
    assert result.output_sha256 == hashlib.sha256(b"\0" * 200000).hexdigest()


def test_timeout_kills_the_remote_process_group(testbed_cmdb, clean_testbed):
    server = testbed_cmdb[1]
    pidfile = Path(clean_testbed.server(server.server_id)["root"]) / "run" / "child.pid"
    with SSHTransport(server) as ssh:
        started = time.monotonic()
        result = ssh.run(f"sleep 300 & echo $! > {pidfile}; sleep 300", timeout=1)
        assert result.timed_out and result.exit_code is None
        assert time.monotonic() - started < 8
        # The server's own view: the background child recorded in the pid file is gone, and
        # nothing is left in the command's process group.
        child = int(pidfile.read_text())
        wait_until(lambda: not procs.alive(child), timeout=5, message="remote child survived the timeout")
        assert _group_alive(result.pgid) == []
        assert ssh.run("echo still usable", timeout=5).stdout == "still usable\n"


def test_kill_running_stops_the_remote_command(testbed_cmdb):
    server = testbed_cmdb[2]
    ssh = SSHTransport(server).connect()
    results = {}
    worker = threading.Thread(target=lambda: results.setdefault("r", ssh.run("sleep 120", timeout=60)))
    worker.start()
    pgid = wait_until(lambda: ssh._running_pgid, timeout=5, interval=0.02)
    assert pgid and _group_alive(pgid)
    assert ssh.kill_running() is True
    worker.join(10)
    assert not worker.is_alive()
    assert results["r"].killed and results["r"].exit_code != 0
    assert _group_alive(pgid) == []
    ssh.close()


def test_changed_host_key_is_refused_and_audited(testbed_cmdb, testbed):
    server = testbed_cmdb[3]
    real = server.host_key_fingerprint
    server.host_key_fingerprint = testbed_cmdb[4].host_key_fingerprint  # another server's key
    log = Path(testbed.server(server.server_id)["command_log"])
    before = log.read_text() if log.exists() else ""
    with pytest.raises(HostKeyMismatch) as info:
        SSHTransport(server).connect()
    assert info.value.presented == real
    entry = AuditEntry.objects.filter(action="ssh.host_key_refused", target=server.server_id).latest("seq")
    assert entry.payload["reason"] == "host key changed" and entry.payload["presented"] == real
    assert (log.read_text() if log.exists() else "") == before  # nothing ran


def test_unknown_host_key_is_refused(testbed_cmdb):
    server = testbed_cmdb[3]
    server.host_key_fingerprint = ""
    with pytest.raises(HostKeyMismatch, match="no host key is pinned"):
        SSHTransport(server).connect()
    assert AuditEntry.objects.filter(action="ssh.host_key_refused", payload__reason="no host key is pinned").exists()


def test_scan_host_key_reads_the_served_key(testbed_cmdb):
    server = testbed_cmdb[0]
    assert scan_host_key(server.ip, server.ssh_port, 5) == server.host_key_fingerprint


def test_put_verifies_sha256_on_the_server_and_get_reads_back(testbed_cmdb, clean_testbed):
    server = testbed_cmdb[0]
    payload = b"version=2.0.0\n" + bytes(range(256)) * 4096  # ~1 MiB
    remote = server.deploy_path + "/app.war"
    with SSHTransport(server) as ssh:
        digest = ssh.put(payload, remote)
        assert digest == hashlib.sha256(payload).hexdigest()
        assert Path(remote).read_bytes() == payload
        assert not Path(remote + ".guardia-part").exists()
        assert ssh.get(remote) == payload
        with pytest.raises(TransportError, match="SHA-256 mismatch"):
            ssh.verify_remote_sha256(remote, "0" * 64)


def test_a_staged_file_whose_hash_differs_is_not_moved_into_place(testbed_cmdb, clean_testbed):
    server = testbed_cmdb[0]
    target = Path(server.deploy_path, "moved.bin")
    partial = Path(f"{target}.guardia-part")
    partial.write_bytes(b"tampered")  # the testbed's servers are directories on this machine
    with SSHTransport(server) as ssh:
        with pytest.raises(TransportError, match="SHA-256 mismatch"):
            ssh.verify_remote_sha256(str(partial), hashlib.sha256(b"original").hexdigest(), move_to=str(target))
        assert partial.exists() and not target.exists()  # hashed and compared, never moved
        ssh.verify_remote_sha256(str(partial), hashlib.sha256(b"tampered").hexdigest(), move_to=str(target))
    assert target.read_bytes() == b"tampered" and not partial.exists()


def test_put_into_a_full_disk_fails_cleanly(testbed_cmdb, clean_testbed):
    server = testbed_cmdb[5]
    clean_testbed.fault(server.server_id, "disk_full")
    with SSHTransport(server) as ssh, pytest.raises(TransportError) as info:
        ssh.put(b"x" * (1 << 20), server.deploy_path + "/app.war")
    assert not isinstance(info.value, ConnectionLost)
    assert not Path(server.deploy_path, "app.war").exists()


def test_sanitizer_block_never_reaches_the_server(testbed_cmdb, testbed):
    server = testbed_cmdb[6]
    log = Path(testbed.server(server.server_id)["command_log"])
    with SSHTransport(server) as ssh:
        ssh.run("echo marker-before", timeout=5)
        with pytest.raises(errors.SecurityViolation):
            ssh.run("ls /app; rm -rf /", timeout=5)
    assert "marker-before" in log.read_text() and "rm -rf" not in log.read_text()
    entry = AuditEntry.objects.filter(action="sanitizer.blocked").latest("seq")
    assert entry.target == server.server_id and "rm -rf /" in entry.command


def test_lost_connection_mid_command_and_probe(testbed_cmdb, clean_testbed):
    server = testbed_cmdb[7]
    ssh = SSHTransport(server).connect()
    assert ssh.probe()
    errors = []

    def run():
        try:
            ssh.run("sleep 30", timeout=60)
        except ConnectionLost as exc:
            errors.append(exc)

    worker = threading.Thread(target=run)
    worker.start()
    wait_until(lambda: ssh._running_pgid, timeout=5, message="the command never started")
    clean_testbed.fault(server.server_id, "sshd_down")
    worker.join(20)
    assert errors and not ssh.probe()
    clean_testbed.fault(server.server_id, "sshd_down", on=False)
    assert ssh.probe()
    ssh.close()
    with SSHTransport(server) as again:  # same host key after the restart
        assert again.run("true", timeout=5).ok


def test_wrong_key_is_an_audited_auth_failure_without_the_secret(testbed_cmdb, tmp_path):
    import subprocess

    server = testbed_cmdb[8]
    key = tmp_path / "other"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True)
    secret = key.read_text()
    server.credential.set_secret(secret)
    server.credential.save()
    with pytest.raises(TransportError, match="계정 인증 실패"):
        SSHTransport(server).connect()
    entry = AuditEntry.objects.filter(action="ssh.auth_failed").latest("seq")
    assert entry.target == server.server_id
    blob = str(list(AuditEntry.objects.values_list("command", "payload", "target")))
    assert "PRIVATE KEY" not in blob and secret.splitlines()[1] not in blob


def test_commands_work_when_descriptors_pass_1024(testbed_cmdb, clean_testbed):
    """select() refuses descriptors >= FD_SETSIZE ("filedescriptor out of range"): a worker
    holding 1,000 connections passes that. The transport must keep working above it."""
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = 1400 if hard == resource.RLIM_INFINITY else min(hard, 1400)
    assert wanted > 1200, f"the hard open-files limit ({hard}) is too low for this test"
    if soft < wanted:
        resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))
    held = [open("/dev/null", "rb") for _ in range(1100)]
    try:
        assert max(f.fileno() for f in held) > 1024
        server = testbed_cmdb[3]
        with SSHTransport(server) as ssh:
            # The connection's socket and the channel's wake-up pipe both land above 1024.
            assert ssh._transport.sock.fileno() > 1024
            # Output arriving after a pause: the loop really waits on the channel's descriptor.
            result = ssh.run("sleep 0.3; echo late; echo err >&2; exit 4", timeout=10)
            assert (result.exit_code, result.stdout, result.stderr) == (4, "late\n", "err\n")
            assert result.pgid
            timed = ssh.run("sleep 30", timeout=0.5)  # the timeout path waits on it too
            assert timed.timed_out and timed.exit_code is None
            assert ssh.put(b"version=9.9.9\n", server.deploy_path + "/fd-test.war")
            assert ssh.run(f"cat {server.deploy_path}/fd-test.war", timeout=10).stdout == "version=9.9.9\n"
    finally:
        for handle in held:
            handle.close()
        if soft < wanted:
            resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
