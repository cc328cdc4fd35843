"""SSL certificate checks with a generated CA: good, expired, not yet valid, mismatched, foreign."""

from __future__ import annotations

import socket
import ssl
import threading

import pytest

from execution.certs import CertificateProblem, check_certificate_bundle, served_certificate_fingerprint
from tests.execution.certgen import cert_pem, key_pem, make_ca, make_leaf


@pytest.fixture(scope="module")
def ca():
    return make_ca()


def test_good_bundle_reports_subject_expiry_and_chain(ca):
    leaf, key = make_leaf(*ca)
    report = check_certificate_bundle(cert_pem(leaf), key_pem(key), cert_pem(ca[0]), hostname="srv-01.testbed")
    assert report.subject == "CN=srv-01.testbed"
    assert report.chain == ["CN=srv-01.testbed", "CN=GUARDiA Test CA"]
    assert 360 <= report.days_left <= 365
    assert len(report.fingerprint_sha256) == 64


def test_expired_certificate_is_refused(ca):
    leaf, key = make_leaf(*ca, days_from=-400, days_to=-5)
    with pytest.raises(CertificateProblem, match="만료되었습니다"):
        check_certificate_bundle(cert_pem(leaf), key_pem(key), cert_pem(ca[0]))


def test_not_yet_valid_certificate_is_refused(ca):
    leaf, key = make_leaf(*ca, days_from=3, days_to=300)
    with pytest.raises(CertificateProblem, match="아직 유효하지 않습니다"):
        check_certificate_bundle(cert_pem(leaf), key_pem(key))


def test_key_of_another_certificate_is_refused(ca):
    leaf, _ = make_leaf(*ca)
    _, other_key = make_leaf(*ca)
    with pytest.raises(CertificateProblem, match="짝이 맞지 않습니다"):
        check_certificate_bundle(cert_pem(leaf), key_pem(other_key), cert_pem(ca[0]))


def test_certificate_from_another_ca_is_refused(ca):
    foreign = make_ca("Some Other CA")
    leaf, key = make_leaf(*foreign)
    with pytest.raises(CertificateProblem, match="주어진 CA로 이어지지 않습니다"):
        check_certificate_bundle(cert_pem(leaf), key_pem(key), cert_pem(ca[0]))


def test_expired_ca_is_refused(ca):
    import datetime as dt

    leaf, key = make_leaf(*ca)
    later = dt.datetime.now(dt.UTC) + dt.timedelta(days=200)
    assert check_certificate_bundle(cert_pem(leaf), key_pem(key), cert_pem(ca[0]), now=later)
    with pytest.raises(CertificateProblem, match="만료"):
        check_certificate_bundle(cert_pem(leaf), key_pem(key), cert_pem(ca[0]), now=later + dt.timedelta(days=4000))


def test_wrong_hostname_and_garbage_are_refused(ca):
    leaf, key = make_leaf(*ca)
    with pytest.raises(CertificateProblem, match="srv-02.testbed가 아닙니다"):
        check_certificate_bundle(cert_pem(leaf), key_pem(key), hostname="srv-02.testbed")
    with pytest.raises(CertificateProblem, match="PEM 인증서가 아닙니다|인증서가 없습니다"):
        check_certificate_bundle(b"hello", key_pem(key))
    with pytest.raises(CertificateProblem, match="개인 키를 읽을 수 없습니다"):
        check_certificate_bundle(cert_pem(leaf), b"not a key")


def test_served_certificate_fingerprint_matches_the_installed_one(ca, tmp_path):
    leaf, key = make_leaf(*ca, hostname="localhost")
    (tmp_path / "c.pem").write_bytes(cert_pem(leaf))
    (tmp_path / "k.pem").write_bytes(key_pem(key))
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(tmp_path / "c.pem", tmp_path / "k.pem")
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]

    def serve():
        conn, _ = listener.accept()
        try:
            with context.wrap_socket(conn, server_side=True) as tls:
                tls.recv(1)
        except (OSError, ssl.SSLError):
            pass

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    report = check_certificate_bundle(cert_pem(leaf), key_pem(key), cert_pem(ca[0]), hostname="localhost")
    assert served_certificate_fingerprint("127.0.0.1", port) == report.fingerprint_sha256
    thread.join(5)
    listener.close()
    with pytest.raises(CertificateProblem, match="TLS 인증서를 받지 못했습니다"):
        served_certificate_fingerprint("127.0.0.1", port, timeout=1)
