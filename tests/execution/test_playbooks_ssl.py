"""SSL_REPLACE on the testbed with a generated CA: bad bundles are refused before upload, a good
one is installed and is what the server actually serves afterwards.

The testbed WAS speaks plain HTTP, so each test server gets a small TLS front (like a reverse
proxy on the host) that loads <root>/conf/server.crt and server.key from disk for every
handshake: what it serves is exactly what the playbook installed on the server.
"""

from __future__ import annotations

import datetime as dt
import socket
import ssl
import threading
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from execution.certs import served_certificate_fingerprint
from execution.models import StepResult
from execution.services import run_task, store_artifact
from governance.attachments import attachment_root, store_attachment

from .engine_helpers import approved_task, commands_received, fast_port_wait, version_of

pytestmark = [pytest.mark.testbed, pytest.mark.django_db(transaction=True)]
HOST = "was.testbed.local"


def _key():
    return ec.generate_private_key(ec.SECP256R1())


def _pem_key(key) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def _cert(
    subject: str, key, issuer_key, issuer_name: x509.Name | None = None, *, days=(-1, 365), ca=False, names=()
) -> x509.Certificate:
    now = dt.datetime.now(dt.UTC)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)])
    builder = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(issuer_name or name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now + dt.timedelta(days=days[0]))
        .not_valid_after(now + dt.timedelta(days=days[1]))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    if names:
        builder = builder.add_extension(x509.SubjectAlternativeName([x509.DNSName(n) for n in names]), critical=False)
    return builder.sign(issuer_key, hashes.SHA256())


def _pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


@pytest.fixture
def pki():
    ca_key = _key()
    ca = _cert("GUARDiA Test CA", ca_key, ca_key, ca=True, days=(-10, 3650))
    leaf_key = _key()
    good = _cert(HOST, leaf_key, ca_key, ca.subject, names=[HOST])
    expired = _cert(HOST, leaf_key, ca_key, ca.subject, days=(-400, -1), names=[HOST])
    return {"ca": _pem(ca), "key": _pem_key(leaf_key), "good": good, "expired": expired, "other_key": _pem_key(_key())}


class TlsFront:
    """Serves whatever certificate is on disk right now (re-read on every handshake)."""

    def __init__(self, cert_path: Path, key_path: Path):
        self.cert_path, self.key_path = cert_path, key_path
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.sock.settimeout(0.2)
        self.port = self.sock.getsockname()[1]
        self.running = True
        self.thread = threading.Thread(target=self.serve, daemon=True)
        self.thread.start()

    def serve(self) -> None:
        while self.running:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                continue
            try:
                context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
                context.load_cert_chain(self.cert_path, self.key_path)
                with context.wrap_socket(conn, server_side=True) as tls:
                    tls.settimeout(2)
                    tls.recv(1)
            except (OSError, ssl.SSLError):
                pass
            finally:
                conn.close()

    def close(self) -> None:
        self.running = False
        self.thread.join(timeout=2)
        self.sock.close()


@pytest.fixture
def tls_server(testbed_cmdb, pki):
    server = testbed_cmdb[0]
    conf = Path(server.app_path) / "conf"  # certificate paths are confined under the server's app root
    conf.mkdir(exist_ok=True)
    old_key = _key()
    (conf / "server.crt").write_bytes(_pem(_cert("old", old_key, old_key, names=[HOST])))
    (conf / "server.key").write_bytes(_pem_key(old_key))
    front = TlsFront(conf / "server.crt", conf / "server.key")
    yield server, conf, front
    front.close()


def ssl_parameters(pki, conf: Path, port: int, cert: x509.Certificate, key: bytes) -> dict:
    return {
        "cert_sha256": store_artifact(_pem(cert), "server.crt")["sha256"],
        # The key goes in as an upload does: sealed with the vault in the attachment store.
        "key_sha256": store_attachment(key, "server.key", field="key_file", kind="private_key")["sha256"],
        "chain_sha256": store_artifact(pki["ca"], "ca.crt")["sha256"],
        "hostname": HOST,
        "cert_path": str(conf / "server.crt"),
        "key_path": str(conf / "server.key"),
        "https_port": port,
    }


def test_good_certificate_is_installed_and_served(testbed, tls_server, pki):
    server, conf, front = tls_server
    fast_port_wait([server], 5)
    old = served_certificate_fingerprint("127.0.0.1", front.port)
    task = approved_task(
        [server], sub_type="SSL_REPLACE", parameters=ssl_parameters(pki, conf, front.port, pki["good"], pki["key"])
    )

    outcome = run_task(task.pk)
    task.refresh_from_db()
    assert outcome == "SUCCEEDED", task.failure_reason

    expected = pki["good"].fingerprint(hashes.SHA256()).hex()
    assert served_certificate_fingerprint("127.0.0.1", front.port) == expected != old
    assert (conf / "server.key").stat().st_mode & 0o777 == 0o600
    # Sealed at rest in the store, opened only for the upload: the server got the plaintext key.
    stored = (attachment_root() / task.parameters["key_sha256"]).read_bytes()
    assert b"PRIVATE KEY" not in stored and (conf / "server.key").read_bytes() == pki["key"]
    backup = Path(server.backup_path) / task.task_id / "ssl" / "server.crt"
    assert backup.exists() and b"BEGIN CERTIFICATE" in backup.read_bytes()


@pytest.mark.parametrize("problem", ["expired", "mismatched key"])
def test_bad_certificate_is_refused_before_upload(testbed, tls_server, pki, problem):
    server, conf, front = tls_server
    cert, key = (pki["expired"], pki["key"]) if problem == "expired" else (pki["good"], pki["other_key"])
    before_log = commands_received(testbed, server.server_id)
    before_cert = (conf / "server.crt").read_bytes()
    task = approved_task([server], sub_type="SSL_REPLACE", parameters=ssl_parameters(pki, conf, front.port, cert, key))

    assert run_task(task.pk) == "FAILED_ROLLED_BACK"

    task.refresh_from_db()
    assert "서버를 건드리기 전에 거부되었습니다" in task.failure_reason
    assert ("만료되었습니다" if problem == "expired" else "짝이 맞지 않습니다") in task.failure_reason
    assert commands_received(testbed, server.server_id) == before_log
    assert (conf / "server.crt").read_bytes() == before_cert


def test_a_shutdown_cut_off_after_the_stop_is_started_again_by_the_rollback(testbed, tls_server, pki):
    # SSL_REPLACE restarts one step at a time (its files go up between the stop and the start).
    # Its shutdown stops the WAS and then hangs past the step's timeout: the service is down
    # though the step did not end well, so the rollback must start it again.
    server, conf, front = tls_server
    fast_port_wait([server], 5)
    before = version_of(server)
    testbed.fault(server.server_id, "hung_shutdown", times=1)
    parameters = {**ssl_parameters(pki, conf, front.port, pki["good"], pki["key"]), "script_timeout": 2}
    task = approved_task([server], sub_type="SSL_REPLACE", parameters=parameters)

    assert run_task(task.pk) == "FAILED_ROLLED_BACK"

    rows = StepResult.objects.filter(server_run__execution__task=task)
    assert rows.get(name="shutdown").state == "TIMEOUT"
    assert rows.filter(name="rb-startup", state="OK").exists(), list(rows.values_list("name", "state"))
    assert version_of(server) == before != ""  # serving again, not left down
