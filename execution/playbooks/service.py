"""SERVICE_RESTART and SSL_REPLACE: changes that end in a WAS restart and a health check."""

from __future__ import annotations

import hashlib
import posixpath

from ..errors import Refused, StepFailed
from ..parameters import Param, q
from .base import Playbook
from .deploy import backup_dir

CERT_SUFFIXES = (".crt", ".pem", ".cer")
KEY_SUFFIXES = (".key", ".pem")


class ServiceRestart(Playbook):
    NAME = "SERVICE_RESTART"
    SERVICE = True
    VERSION = "1.2.0"
    PARAMS = {"script_timeout": Param("int", default=120, min=1, max=3600)}

    def forward(self, ctx) -> None:
        paths = self.server_paths(ctx.server)
        self.require(paths["scripts"], "script_path", ctx.server)
        self.restart(ctx, paths)

    def rollback(self, ctx) -> None:
        if not ctx.state.get("stopped"):
            return
        # Nothing to restore: bring the service back up and check it.
        self.restart_back(ctx, self.server_paths(ctx.server))


def pem_fingerprint(cert_pem: bytes) -> str:
    from cryptography import x509
    from cryptography.hazmat.primitives.serialization import Encoding

    cert = x509.load_pem_x509_certificate(cert_pem)
    return hashlib.sha256(cert.public_bytes(Encoding.DER)).hexdigest()


class SslReplace(Playbook):
    """Check the pair, expiry and chain locally before touching a server; back up the old
    files, upload, restart, and verify the certificate actually served."""

    NAME = "SSL_REPLACE"
    SERVICE = True
    VERSION = "1.2.0"
    PARAMS = {
        "cert_sha256": Param("sha256", required=True),
        "key_sha256": Param("sha256", required=True),
        "chain_sha256": Param("sha256", default=""),
        "hostname": Param("str", default="", pattern=r"[A-Za-z0-9*][A-Za-z0-9.*-]{0,252}"),
        # Under the server's app_path (e.g. "conf/server.crt"), with a certificate or key name.
        "cert_path": Param("path", required=True, roots=("app",), strictly_below=True, suffixes=CERT_SUFFIXES),
        "key_path": Param("path", required=True, roots=("app",), strictly_below=True, suffixes=KEY_SUFFIXES),
        "chain_path": Param("path", default="", roots=("app",), strictly_below=True, suffixes=CERT_SUFFIXES),
        "https_port": Param("int", required=True, min=1, max=65535),
        "script_timeout": Param("int", default=120, min=1, max=3600),
    }

    def prepare(self, artifacts) -> None:
        from execution import certs

        cert = artifacts.read(self.params["cert_sha256"])
        key = artifacts.read(self.params["key_sha256"])
        chain = artifacts.read(self.params["chain_sha256"]) if self.params["chain_sha256"] else None
        try:
            self.report = certs.check_certificate_bundle(cert, key, chain, hostname=self.params["hostname"] or None)
        except certs.CertificateProblem as exc:
            raise Refused(f"업로드 전에 인증서를 거부했습니다: {exc}") from exc
        self.fingerprint = pem_fingerprint(cert)

    def _files(self, ctx) -> list[tuple[str, str, str]]:
        """(kind, remote path, artifact sha) for each file replaced."""
        files = [
            ("cert", self.path(ctx, "cert_path"), self.params["cert_sha256"]),
            ("key", self.path(ctx, "key_path"), self.params["key_sha256"]),
        ]
        if self.params["chain_path"] and self.params["chain_sha256"]:
            files.append(("chain", self.path(ctx, "chain_path"), self.params["chain_sha256"]))
        return files

    def _backup(self, ctx, path: str) -> str:
        paths = self.server_paths(ctx.server)
        base = self.require(paths["backup"], "backup_path", ctx.server)
        return posixpath.join(backup_dir({"backup": base}, ctx.task_ref), "ssl", posixpath.basename(path))

    def forward(self, ctx) -> None:
        paths = self.service_paths(ctx, self.server_paths(ctx.server))
        self.require(paths["scripts"], "script_path", ctx.server)
        for kind, remote, _sha in self._files(ctx):
            saved = self._backup(ctx, remote)
            ctx.run(
                f"backup-{kind}",
                f"mkdir -p {q(posixpath.dirname(saved))} && "
                f"if [ -e {q(remote)} ]; then cp -p {q(remote)} {q(saved)}; fi",
                timeout=30,
            )
        ctx.state["backed_up"] = True

        def install():
            for kind, remote, sha in self._files(ctx):
                ctx.put(f"upload-{kind}", ctx.artifact_path(sha), remote)
            ctx.state["installed"] = True
            return "chmod-key", f"chmod 600 {q(self.path(ctx, 'key_path'))}"

        self.restart(ctx, paths, before_start=install)
        self.check_served(ctx, "served-cert", getattr(self, "fingerprint", ""))  # set by prepare()

    def check_served(self, ctx, name: str, expected: str) -> None:
        from execution import certs

        def probe():
            try:
                served = certs.served_certificate_fingerprint(
                    ctx.health.host, self.params["https_port"], server_name=self.params["hostname"] or None
                )
            except certs.CertificateProblem as exc:
                raise StepFailed(name, f"{exc} ({ctx.server.server_id})") from exc
            served = served.replace(":", "").lower().removeprefix("sha256")
            ctx.data["served_fingerprint"] = served
            if served != expected:
                raise StepFailed(
                    name, f"{ctx.server.server_id}이(가) 인증서 {served[:16]}…을(를) 제공합니다 (기대 {expected[:16]}…)"
                )
            return f"served certificate {served[:16]}… matches"

        ctx.check(
            name,
            probe,
            plan={
                "kind": "tls",
                "host": ctx.health.host,
                "port": self.params["https_port"],
                "server_name": self.params["hostname"],
                "certificate_sha256": self.params["cert_sha256"],
            },
        )

    def rollback(self, ctx) -> None:
        if not ctx.state.get("stopped"):
            return
        paths = self.server_paths(ctx.server)

        def restore():
            copies = [
                f"if [ -e {q(self._backup(ctx, remote))} ]; then cp -p {q(self._backup(ctx, remote))} {q(remote)}; fi"
                for _kind, remote, _sha in self._files(ctx)
            ]
            return "rb-restore", "; ".join(copies)

        self.restart_back(ctx, paths, before_start=restore)


__all__ = ["ServiceRestart", "SslReplace", "Refused"]
