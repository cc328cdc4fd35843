"""Certificate checks for SSL_REPLACE: before anything is uploaded, and after, what is served.

check_certificate_bundle() refuses a certificate whose key does not match, that is expired
or not yet valid, that does not chain to the CA given, or that does not name the host. The
chain is walked by hand (issuer name + signature + validity at every hop) rather than with
cryptography's Web-PKI verifier, because site CAs on closed networks rarely carry the
extensions that profile insists on.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import ipaddress
import socket
import ssl
from dataclasses import dataclass, field

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.x509.oid import NameOID
from django.utils.translation import gettext

MAX_CHAIN = 8


class CertificateProblem(ValueError):
    """The bundle must not be installed; the message says why, for a person."""


@dataclass
class CertReport:
    subject: str
    issuer: str
    not_before: dt.datetime
    not_after: dt.datetime
    fingerprint_sha256: str  # hex of SHA-256 over the DER certificate
    dns_names: list[str] = field(default_factory=list)
    chain: list[str] = field(default_factory=list)  # subjects from the leaf up to the trusted CA

    @property
    def days_left(self) -> int:
        return (self.not_after - dt.datetime.now(dt.UTC)).days


def _load_certs(pem: bytes | str, what: str) -> list[x509.Certificate]:
    data = pem.encode() if isinstance(pem, str) else pem
    try:
        certs = x509.load_pem_x509_certificates(data)
    except ValueError as exc:
        raise CertificateProblem(
            gettext("%(what)s: PEM 인증서가 아닙니다: %(error)s") % {"what": what, "error": exc}
        ) from exc
    if not certs:
        raise CertificateProblem(gettext("%(what)s에 인증서가 없습니다") % {"what": what})
    return certs


def fingerprint(cert: x509.Certificate) -> str:
    return hashlib.sha256(cert.public_bytes(serialization.Encoding.DER)).hexdigest()


def _spki(public_key) -> bytes:
    return public_key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)


def _check_time(cert: x509.Certificate, now: dt.datetime, label: str) -> None:
    if now < cert.not_valid_before_utc:
        start = cert.not_valid_before_utc
        raise CertificateProblem(
            gettext("%(label)s은(는) 아직 유효하지 않습니다(%(start)s UTC부터 유효)")
            % {"label": label, "start": f"{start:%Y-%m-%d %H:%M}"}
        )
    if now > cert.not_valid_after_utc:
        raise CertificateProblem(
            gettext("%(label)s은(는) %(end)s UTC에 만료되었습니다")
            % {"label": label, "end": f"{cert.not_valid_after_utc:%Y-%m-%d %H:%M}"}
        )


def _names(cert: x509.Certificate) -> list[str]:
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        common = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
        return [str(common[0].value)] if common else []
    return [*san.get_values_for_type(x509.DNSName), *(str(ip) for ip in san.get_values_for_type(x509.IPAddress))]


def _host_matches(hostname: str, names: list[str]) -> bool:
    hostname = hostname.lower().rstrip(".")
    try:
        return str(ipaddress.ip_address(hostname)) in names
    except ValueError:
        pass
    for name in (n.lower().rstrip(".") for n in names):
        if name == hostname:
            return True
        if name.startswith("*.") and "." in hostname and hostname.split(".", 1)[1] == name[2:]:
            return True
    return False


def check_certificate_bundle(
    cert_pem: bytes | str,
    key_pem: bytes | str,
    chain_pem: bytes | str | None = None,
    *,
    hostname: str | None = None,
    now: dt.datetime | None = None,
) -> CertReport:
    """Validate a certificate/key pair (and its chain to the CA in chain_pem) before installing it."""
    now = now or dt.datetime.now(dt.UTC)
    leaf = _load_certs(cert_pem, gettext("인증서"))[0]
    try:
        key = serialization.load_pem_private_key(key_pem.encode() if isinstance(key_pem, str) else key_pem, None)
    except (ValueError, TypeError) as exc:
        raise CertificateProblem(gettext("개인 키를 읽을 수 없습니다(PEM이 아니거나 암호로 보호됨)")) from exc
    if _spki(key.public_key()) != _spki(leaf.public_key()):
        raise CertificateProblem(gettext("개인 키가 인증서와 짝이 맞지 않습니다"))
    _check_time(leaf, now, gettext("인증서"))
    names = _names(leaf)
    if hostname and not _host_matches(hostname, names):
        raise CertificateProblem(
            gettext("인증서의 이름은 %(names)s이며 %(host)s가 아닙니다")
            % {"names": ", ".join(names) or gettext("(이름 없음)"), "host": hostname}
        )
    path = [leaf.subject.rfc4514_string()]
    if chain_pem:
        pool = _load_certs(chain_pem, gettext("CA 체인"))
        current = leaf
        for _ in range(MAX_CHAIN):
            issuer = next((c for c in pool if c.subject == current.issuer and _signed_by(current, c)), None)
            if issuer is None:
                raise CertificateProblem(
                    gettext("체인이 주어진 CA로 이어지지 않습니다: %(subject)s에 서명한 인증서가 체인에 없습니다")
                    % {"subject": current.subject.rfc4514_string()}
                )
            _check_time(issuer, now, gettext("CA 인증서 %(subject)s") % {"subject": issuer.subject.rfc4514_string()})
            if issuer is not current:
                path.append(issuer.subject.rfc4514_string())
            if issuer.subject == issuer.issuer:  # reached a self-signed CA from the bundle we were given
                break
            current = issuer
        else:
            raise CertificateProblem(gettext("CA 체인이 인증서 %(max)d개보다 길거나 순환합니다") % {"max": MAX_CHAIN})
    return CertReport(
        subject=leaf.subject.rfc4514_string(),
        issuer=leaf.issuer.rfc4514_string(),
        not_before=leaf.not_valid_before_utc,
        not_after=leaf.not_valid_after_utc,
        fingerprint_sha256=fingerprint(leaf),
        dns_names=names,
        chain=path,
    )


def _signed_by(cert: x509.Certificate, issuer: x509.Certificate) -> bool:
    try:
        cert.verify_directly_issued_by(issuer)
    except (ValueError, TypeError, InvalidSignature):
        return False
    return True


def served_certificate_fingerprint(
    host: str, port: int, *, server_name: str | None = None, timeout: float = 5.0
) -> str:
    """SHA-256 (hex) of the certificate a TLS server actually presents right now.

    Verification is off on purpose: we compare the fingerprint with the one we installed,
    which is a stricter test than trusting whatever chain the server sends.
    """
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    try:
        with (
            socket.create_connection((host, port), timeout=timeout) as sock,
            context.wrap_socket(sock, server_hostname=server_name or host) as tls,
        ):
            der = tls.getpeercert(binary_form=True)
    except (OSError, ssl.SSLError) as exc:
        raise CertificateProblem(
            gettext("%(host)s:%(port)s에서 TLS 인증서를 받지 못했습니다: %(error)s")
            % {"host": host, "port": port, "error": exc}
        ) from exc
    if not der:
        raise CertificateProblem(
            gettext("%(host)s:%(port)s이(가) 인증서를 제시하지 않았습니다") % {"host": host, "port": port}
        )
    return hashlib.sha256(der).hexdigest()
