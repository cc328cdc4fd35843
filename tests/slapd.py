"""A real OpenLDAP slapd (Debian's) on loopback with a generated directory and CA.

The directory holds people under ou=people and groupOfNames groups under ou=groups;
slapd listens on ldap:// (for plain and StartTLS binds) and ldaps:// with a server
certificate issued by a CA generated for the run, so TLS is verified against that CA
exactly as a site's own CA would be. The root DN edits the directory during a test
(python-ldap), the way a directory administrator would.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
import shutil
import signal
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

import ldap
import ldap.modlist
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

SLAPD = shutil.which("slapd") or "/usr/sbin/slapd"
SLAPADD = shutil.which("slapadd") or "/usr/sbin/slapadd"
SLAPPASSWD = shutil.which("slappasswd") or "/usr/sbin/slappasswd"
SUFFIX = "dc=guardia,dc=test"
ROOT_DN = f"cn=admin,{SUFFIX}"
ROOT_PASSWORD = "root-secret-for-tests"  # a throwaway directory on loopback
PEOPLE = f"ou=people,{SUFFIX}"
GROUPS = f"ou=groups,{SUFFIX}"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _write_pem(path: Path, data: bytes) -> None:
    path.write_bytes(data)
    path.chmod(0o600)


def generate_ca(directory: Path) -> tuple[Path, Path, Path]:
    """(ca.pem, server.pem, server.key): a CA and a server certificate for 127.0.0.1/localhost."""
    now = dt.datetime.now(dt.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "GUARDiA test site CA")])
    ca_cert = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    paths = directory / "ca.pem", directory / "server.pem", directory / "server.key"
    _write_pem(paths[0], ca_cert.public_bytes(serialization.Encoding.PEM))
    _write_pem(paths[1], cert.public_bytes(serialization.Encoding.PEM))
    _write_pem(
        paths[2],
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()),
    )
    return paths


@dataclass
class Directory:
    root: Path
    ldap_port: int = 0
    ldaps_port: int = 0
    ca_file: Path = field(default_factory=Path)
    process: subprocess.Popen | None = None

    @property
    def ldap_uri(self) -> str:
        return f"ldap://127.0.0.1:{self.ldap_port}"

    @property
    def ldaps_uri(self) -> str:
        return f"ldaps://127.0.0.1:{self.ldaps_port}"

    def start(self, people: dict[str, str], groups: dict[str, list[str]]) -> Directory:
        """people: uid -> password; groups: cn -> member uids."""
        self.root.mkdir(parents=True, exist_ok=True)
        (self.root / "db").mkdir(exist_ok=True)
        self.ca_file, cert, key = generate_ca(self.root)
        rootpw = subprocess.run(
            [SLAPPASSWD, "-s", ROOT_PASSWORD], check=True, capture_output=True, text=True
        ).stdout.strip()
        conf = self.root / "slapd.conf"
        conf.write_text(
            "\n".join(
                [
                    *(f"include /etc/ldap/schema/{name}.schema" for name in ("core", "cosine", "inetorgperson", "nis")),
                    f"pidfile {self.root / 'slapd.pid'}",
                    "modulepath /usr/lib/ldap",
                    "moduleload back_mdb",
                    f"TLSCACertificateFile {self.ca_file}",
                    f"TLSCertificateFile {cert}",
                    f"TLSCertificateKeyFile {key}",
                    "database mdb",
                    f"suffix {SUFFIX}",
                    f"rootdn {ROOT_DN}",
                    f"rootpw {rootpw}",
                    f"directory {self.root / 'db'}",
                    "maxsize 10485760",
                    # People read their own entry and the groups; only the root DN writes.
                    "access to attrs=userPassword by self auth by anonymous auth by * none",
                    "access to * by users read by anonymous auth",
                    "",
                ]
            )
        )
        ldif = self.root / "base.ldif"
        ldif.write_text(self._base_ldif(people, groups))
        subprocess.run([SLAPADD, "-f", str(conf), "-l", str(ldif)], check=True, capture_output=True)
        self.ldap_port, self.ldaps_port = _free_port(), _free_port()
        self.process = subprocess.Popen(
            [SLAPD, "-f", str(conf), "-h", f"{self.ldap_uri}/ ldaps://127.0.0.1:{self.ldaps_port}/", "-d", "0"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", self.ldaps_port), timeout=0.2).close()
                socket.create_connection(("127.0.0.1", self.ldap_port), timeout=0.2).close()
                return self
            except OSError:
                if self.process.poll() is not None:
                    raise RuntimeError(f"slapd exited: {self.process.stderr.read().decode()[-2000:]}") from None
                time.sleep(0.05)
        raise RuntimeError("slapd did not listen within 10 s")

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

    @staticmethod
    def person_dn(uid: str) -> str:
        return f"uid={uid},{PEOPLE}"

    @staticmethod
    def group_dn(cn: str) -> str:
        return f"cn={cn},{GROUPS}"

    def _base_ldif(self, people: dict[str, str], groups: dict[str, list[str]]) -> str:
        blocks = [
            f"dn: {SUFFIX}\nobjectClass: dcObject\nobjectClass: organization\ndc: guardia\no: GUARDiA test\n",
            f"dn: {PEOPLE}\nobjectClass: organizationalUnit\nou: people\n",
            f"dn: {GROUPS}\nobjectClass: organizationalUnit\nou: groups\n",
        ]
        for uid, password in people.items():
            blocks.append(
                f"dn: {self.person_dn(uid)}\nobjectClass: inetOrgPerson\nuid: {uid}\ncn: {uid.title()}\n"
                f"sn: {uid.title()}\ngivenName: {uid}\nmail: {uid}@guardia.test\nuserPassword: {password}\n"
            )
        for cn, members in groups.items():
            # groupOfNames needs a member: the root DN stays in every group, so the last
            # person can be removed as in a real directory.
            lines = [f"member: {ROOT_DN}", *(f"member: {self.person_dn(m)}" for m in members)]
            blocks.append(f"dn: {self.group_dn(cn)}\nobjectClass: groupOfNames\ncn: {cn}\n" + "\n".join(lines) + "\n")
        return "\n".join(blocks)

    # --- a directory administrator's edits ------------------------------------------------

    def _admin(self):
        conn = ldap.initialize(self.ldap_uri)
        conn.simple_bind_s(ROOT_DN, ROOT_PASSWORD)
        return conn

    def modify(self, dn: str, changes: list[tuple[int, str, list[bytes] | None]]) -> None:
        conn = self._admin()
        try:
            conn.modify_s(dn, changes)
        finally:
            conn.unbind_s()

    def remove_member(self, group: str, uid: str) -> None:
        self.modify(self.group_dn(group), [(ldap.MOD_DELETE, "member", [self.person_dn(uid).encode()])])

    def add_member(self, group: str, uid: str) -> None:
        self.modify(self.group_dn(group), [(ldap.MOD_ADD, "member", [self.person_dn(uid).encode()])])

    def set_attribute(self, uid: str, attribute: str, value: str) -> None:
        self.modify(self.person_dn(uid), [(ldap.MOD_REPLACE, attribute, [value.encode()])])


def start_directory(root: Path, people: dict[str, str], groups: dict[str, list[str]]) -> Directory:
    os.environ.setdefault("LDAPNOINIT", "1")  # no ~/.ldaprc or /etc/ldap/ldap.conf in the clients
    return Directory(root).start(people, groups)
