"""The SSH algorithms GUARDiA negotiates, against real OpenSSH sshd: its preferred ones with the
testbed's server, a fallback the list allows, and a clear refusal naming what a server offers
when it allows only something weaker (SHA-1, CBC), before any credential or command is sent."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

from execution.transport import IncompatibleAlgorithms, SSHTransport, scan_host_key
from tests.waiting import free_port, wait_for_port

pytestmark = pytest.mark.testbed


@pytest.fixture
def restricted_sshd(testbed, tmp_path):
    """Start a copy of the testbed's first sshd (same host key, same client key) on a free port,
    with ``options`` appended to its config; yields (port, its command log)."""
    started = []

    def start(*options: str) -> tuple[int, Path]:
        port, log = free_port(), tmp_path / f"commands-{len(started)}.log"
        source = Path(testbed.manifest["sshd"][0]["config"]).read_text()
        config = re.sub(r"(?m)^ListenAddress .*$", f"ListenAddress 127.0.0.1:{port}", source)
        config = re.sub(r"(?m)^PidFile .*$", f"PidFile {tmp_path}/sshd-{port}.pid", config)
        config = re.sub(r"(?m)^(ForceCommand \S+) .*$", rf"\1 {log}", config)
        path = tmp_path / f"sshd-{port}.conf"
        path.write_text(config + "\n".join(options) + "\n")
        proc = subprocess.Popen(["/usr/sbin/sshd", "-D", "-e", "-f", str(path)], stderr=subprocess.DEVNULL)
        started.append(proc)
        wait_for_port(port, proc, timeout=10)
        return port, log

    yield start
    for proc in started:
        proc.terminate()
        proc.wait(timeout=10)


def test_the_testbed_server_negotiates_the_preferred_algorithms(testbed_cmdb):
    server = testbed_cmdb[0]
    with SSHTransport(server) as ssh:
        assert ssh.algorithms == {
            "kex": "ecdh-sha2-nistp256",
            "host_key": "ssh-ed25519",
            "cipher": "aes128-gcm@openssh.com",
            "mac": "",  # AEAD: the cipher authenticates
        }
        assert ssh.run("echo ok", timeout=10).stdout == "ok\n"


def test_a_server_with_only_curve25519_and_ctr_falls_back_within_the_list(testbed_cmdb, restricted_sshd):
    port, log = restricted_sshd("KexAlgorithms curve25519-sha256@libssh.org", "Ciphers aes256-ctr")
    server = testbed_cmdb[0]
    server.ip, server.ssh_port = "127.0.0.1", port
    with SSHTransport(server) as ssh:
        assert ssh.algorithms["kex"] == "curve25519-sha256@libssh.org"
        assert (ssh.algorithms["cipher"], ssh.algorithms["mac"]) == ("aes256-ctr", "hmac-sha2-256-etm@openssh.com")
        assert ssh.run("echo ok", timeout=10).ok
    assert "echo ok" in log.read_text()


@pytest.mark.parametrize(
    ("option", "kind", "offered"),
    [
        ("Ciphers aes128-cbc,3des-cbc", "SSH 암호화", "aes128-cbc, 3des-cbc"),
        ("MACs hmac-sha1,hmac-md5", "SSH 메시지 인증(MAC)", "hmac-sha1, hmac-md5"),
        (
            "KexAlgorithms diffie-hellman-group14-sha1,diffie-hellman-group1-sha1",
            "SSH 키 교환",
            "diffie-hellman-group14-sha1",
        ),
    ],
)
def test_a_server_allowing_only_weak_algorithms_is_refused_by_name(
    testbed_cmdb, restricted_sshd, option, kind, offered
):
    port, log = restricted_sshd(option)
    server = testbed_cmdb[0]
    server.ip, server.ssh_port = "127.0.0.1", port
    with pytest.raises(IncompatibleAlgorithms) as refused:
        SSHTransport(server).connect()
    message = str(refused.value)
    assert f"{kind} 알고리즘({offered}" in message and "접속 거부" in message
    # The onboarding scan refuses the same way: no key of such a server gets pinned.
    with pytest.raises(IncompatibleAlgorithms, match=re.escape(offered)):
        scan_host_key("127.0.0.1", port, 5)
    assert not log.exists()  # no session, no command


def test_a_server_signing_its_host_key_only_with_sha1_is_refused(testbed_cmdb, restricted_sshd, tmp_path):
    rsa = tmp_path / "rsa_host_key"
    subprocess.run(["ssh-keygen", "-q", "-t", "rsa", "-b", "2048", "-N", "", "-f", str(rsa)], check=True)
    port, log = restricted_sshd(f"HostKey {rsa}", "HostKeyAlgorithms ssh-rsa")
    server = testbed_cmdb[0]
    server.ip, server.ssh_port = "127.0.0.1", port
    with pytest.raises(IncompatibleAlgorithms, match=r"SSH 호스트 키 알고리즘\(ssh-rsa\)"):
        SSHTransport(server).connect()
    assert not log.exists()
