"""Ticket attachments, each kept with its SHA-256: artifacts, certificates, keys.

Stored content-addressed under MEDIA_ROOT/artifacts/<sha256>, write-once, so the bytes an
approver approved are the bytes the worker uploads: the task's parameters carry only the
SHA-256 and the execution layer re-hashes the file before the first connection. This is
the one implementation; ``execution.services.store_artifact`` calls it.

An upload is checked before it is kept: it is streamed into a temporary file in the
store's own directory (bounded size, hashed on the way), validated by what it claims to
be (a WAR/JAR is a zip with META-INF/MANIFEST.MF, a static bundle a .tar.gz of plain
files, certificates and keys are parsed as PEM and a key must match its certificate),
and only then renamed into place. ``received_uploads`` wraps a whole filing, so files
from a request refused later (a bad target, a refused parameter) are removed again.

SSL private keys are sealed with the credential vault (AES-256-GCM, cmdb.vault) before
they touch the disk; the file keeps the plaintext's SHA-256 as its name, and only
``read_attachment`` (used by the execution engine when it uploads the key) opens it.

Files no task references are swept on a schedule (``sweep_unreferenced``).
"""

from __future__ import annotations

import hashlib
import os
import posixpath
import re
import tarfile
import tempfile
import time
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from dataclasses import field as dc_field
from datetime import timedelta
from pathlib import Path
from typing import Any

from django.conf import settings

from .errors import Invalid

CHUNK = 1 << 20
# The SHA-256 patterns, in one place: SHA256_RE as hashlib writes it (64 lower-case hex
# digits: stored file names, cleaned playbook parameters); SHA256_ANY_CASE_RE as people paste
# it (the plan hash a decision posts back), lower-cased before it is compared.
SHA256_RE = re.compile(r"^[0-9a-f]{64}$")
SHA256_ANY_CASE_RE = re.compile(r"^[0-9a-fA-F]{64}$")
PEM_LIMIT = 64 * 1024  # a certificate chain of a few certificates is a few KB
MAX_ARCHIVE_ENTRIES = 100_000
INFLATION_LIMIT = 8  # an archive may unpack to at most this many times its size limit
SEALED_MAGIC = b"GUARDIA-SEALED-ATTACHMENT/1\n"
TEMP_PREFIX = ".upload-"
SWEEP_GRACE = timedelta(hours=24)


class AttachmentTooLarge(Invalid):
    """The upload passed GUARDIA_MAX_ATTACHMENT_MB; nothing was kept."""


def attachment_root() -> Path:
    return Path(settings.MEDIA_ROOT) / "artifacts"


def max_attachment_bytes() -> int:
    return int(getattr(settings, "GUARDIA_MAX_ATTACHMENT_MB", 512)) * 1024 * 1024


def _chunks(fileobj_or_bytes):
    if isinstance(fileobj_or_bytes, bytes | bytearray | memoryview):
        data = memoryview(fileobj_or_bytes)
        for start in range(0, len(data), CHUNK):
            yield bytes(data[start : start + CHUNK])
        return
    # Django's UploadedFile streams from its temporary file; anything else is read in chunks.
    if hasattr(fileobj_or_bytes, "chunks"):
        yield from fileobj_or_bytes.chunks(CHUNK)
        return
    yield from iter(lambda: fileobj_or_bytes.read(CHUNK), b"")


# --- what each upload must be ------------------------------------------------------------
# kind -> what the file must be (PEM kinds are bounded by PEM_LIMIT, archives by the configured maximum)
KINDS = {
    "archive": "a WAR/JAR (zip archive with META-INF/MANIFEST.MF)",
    "static_bundle": "a .tar.gz archive of plain files and directories",
    "certificate": "a PEM certificate",
    "private_key": "an unencrypted PEM private key",
    "chain": "PEM CA certificates",
}
# Upload field -> the playbook parameter that carries its SHA-256.
UPLOAD_PARAMETERS = {
    "artifact": "artifact_sha256",
    "cert_file": "cert_sha256",
    "key_file": "key_sha256",
    "chain_file": "chain_sha256",
}
FIELD_KINDS = {"cert_file": "certificate", "key_file": "private_key", "chain_file": "chain"}
ARTIFACT_KINDS = {"APP_DEPLOY": "archive", "STATIC_SYNC": "static_bundle"}


def kind_for(field: str, sub_type: str) -> str:
    if field == "artifact":
        kind = ARTIFACT_KINDS.get(sub_type)
        if kind is None:
            raise Invalid(f"{sub_type or '이 요청'}에는 아티팩트 파일을 올릴 수 없습니다", field=field)
        return kind
    if field in FIELD_KINDS:
        if sub_type != "SSL_REPLACE":
            raise Invalid(f"{sub_type or '이 요청'}에는 인증서나 키 파일을 올릴 수 없습니다", field=field)
        return FIELD_KINDS[field]
    raise Invalid(f"알 수 없는 업로드 항목입니다: {field!r}", field=field)


def _limit_for(kind: str | None) -> int:
    if kind in ("certificate", "private_key", "chain"):
        return min(PEM_LIMIT, max_attachment_bytes())
    return max_attachment_bytes()


def _safe_member(name: str) -> bool:
    if not name or name.startswith(("/", "\\")) or "\\" in name or "\x00" in name:
        return False
    return ".." not in posixpath.normpath(name).split("/") and not re.match(r"^[A-Za-z]:", name)


def _check_archive(path: Path, field: str) -> None:
    if not zipfile.is_zipfile(path):
        raise Invalid("WAR/JAR 파일이 아닙니다: zip 아카이브가 아닙니다", field=field)
    try:
        with zipfile.ZipFile(path) as archive:
            entries = archive.infolist()
    except (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, ValueError) as exc:
        raise Invalid(f"WAR/JAR 파일이 아닙니다: zip 아카이브를 읽을 수 없습니다 ({exc})", field=field) from exc
    names = {info.filename for info in entries}
    if "META-INF/MANIFEST.MF" not in names:
        raise Invalid("WAR/JAR 파일이 아닙니다: META-INF/MANIFEST.MF가 없습니다", field=field)
    if len(entries) > MAX_ARCHIVE_ENTRIES:
        raise Invalid(f"아카이브 항목이 {MAX_ARCHIVE_ENTRIES}개를 넘습니다", field=field)
    bad = next((info.filename for info in entries if not _safe_member(info.filename)), None)
    if bad is not None:
        raise Invalid(f"아카이브 항목 {bad[:80]!r}이(가) 애플리케이션 밖으로 풀립니다", field=field)
    if sum(info.file_size for info in entries) > INFLATION_LIMIT * max_attachment_bytes():
        raise Invalid("아카이브를 풀면 허용 크기를 넘습니다", field=field)


def _check_static_bundle(path: Path, field: str) -> None:
    total, count = 0, 0
    try:
        with tarfile.open(path, "r:gz") as archive:
            for member in archive:
                count += 1
                if count > MAX_ARCHIVE_ENTRIES:
                    raise Invalid(f"아카이브 항목이 {MAX_ARCHIVE_ENTRIES}개를 넘습니다", field=field)
                if not _safe_member(member.name.removeprefix("./") or "."):
                    raise Invalid(f"아카이브 항목 {member.name[:80]!r}이(가) 대상 경로 밖으로 풀립니다", field=field)
                if not (member.isfile() or member.isdir()):
                    raise Invalid(
                        f"아카이브 항목 {member.name[:80]!r}은(는) 링크나 장치입니다; 파일과 디렉터리만 허용됩니다",
                        field=field,
                    )
                total += member.size
                if total > INFLATION_LIMIT * max_attachment_bytes():
                    raise Invalid("아카이브를 풀면 허용 크기를 넘습니다", field=field)
    except (tarfile.TarError, OSError, EOFError, ValueError) as exc:
        raise Invalid(f".tar.gz 아카이브가 아닙니다 ({exc})", field=field) from exc


def _pem_certificates(data: bytes, field: str, what: str) -> list:
    from cryptography import x509

    if b"PRIVATE KEY" in data:
        # Stored in plain like every certificate: a key here would escape the vault.
        raise Invalid(f"{what}에 개인 키가 들어 있습니다; 키는 key_file로 올리세요", field=field)
    try:
        certs = x509.load_pem_x509_certificates(data)
    except ValueError as exc:
        raise Invalid(f"{what}이(가) 아닙니다: {exc}", field=field) from exc
    if not certs:
        raise Invalid(f"{what}이(가) 아닙니다: 인증서가 없습니다", field=field)
    return certs


def _pem_private_key(data: bytes, field: str):
    from cryptography.hazmat.primitives import serialization

    try:
        data.decode("ascii")
    except UnicodeDecodeError as exc:
        raise Invalid("PEM 개인 키가 아닙니다: ASCII 텍스트 파일이 아닙니다", field=field) from exc
    try:
        return serialization.load_pem_private_key(data, password=None)
    except TypeError as exc:  # a passphrase-protected key: the WAS could not start unattended
        raise Invalid("암호로 보호된 개인 키는 지원하지 않습니다", field=field) from exc
    except Exception as exc:  # cryptography raises ValueError or UnsupportedAlgorithm
        raise Invalid("PEM 개인 키가 아닙니다", field=field) from exc


def _public_der(key) -> bytes:
    from cryptography.hazmat.primitives import serialization

    return key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)


@dataclass
class _Staged:
    field: str
    kind: str | None
    name: str
    temp: Path
    sha256: str
    size: int
    parsed: Any = None  # the certificate list or private key, for the pair check


def _stream_to_temp(fileobj_or_bytes, field: str, limit: int) -> tuple[Path, str, int]:
    root = attachment_root()
    root.mkdir(parents=True, exist_ok=True)
    digest, size = hashlib.sha256(), 0
    fd, tmp = tempfile.mkstemp(dir=root, prefix=TEMP_PREFIX)
    try:
        with os.fdopen(fd, "wb") as out:
            for chunk in _chunks(fileobj_or_bytes):
                size += len(chunk)
                if size > limit:
                    raise AttachmentTooLarge(
                        f"첨부 파일이 {_size_text(limit)}보다 큽니다 (GUARDIA_MAX_ATTACHMENT_MB)", field=field
                    )
                digest.update(chunk)
                out.write(chunk)
    except BaseException:
        _unlink(Path(tmp))
        raise
    return Path(tmp), digest.hexdigest(), size


def _size_text(limit: int) -> str:
    return f"{limit // (1024 * 1024)} MB" if limit >= 1024 * 1024 else f"{limit // 1024} KB"


def _unlink(path: Path) -> None:
    try:
        path.unlink()
    except FileNotFoundError:
        pass


def _validate(staged: _Staged) -> None:
    if staged.kind == "archive":
        _check_archive(staged.temp, staged.field)
    elif staged.kind == "static_bundle":
        _check_static_bundle(staged.temp, staged.field)
    elif staged.kind in ("certificate", "chain"):
        what = "PEM 인증서" if staged.kind == "certificate" else "PEM 인증서 체인"
        staged.parsed = _pem_certificates(staged.temp.read_bytes(), staged.field, what)
    elif staged.kind == "private_key":
        staged.parsed = _pem_private_key(staged.temp.read_bytes(), staged.field)


def _seal(staged: _Staged) -> None:
    """Replace the staged key's plaintext with its vault-sealed form (same directory, same temp name)."""
    from cmdb import vault

    plaintext = staged.temp.read_bytes().decode("ascii")
    sealed = SEALED_MAGIC + vault.encrypt(plaintext, context=f"attachment:{staged.sha256}").encode("ascii") + b"\n"
    fd, tmp = tempfile.mkstemp(dir=staged.temp.parent, prefix=TEMP_PREFIX)
    with os.fdopen(fd, "wb") as out:
        out.write(sealed)
    _unlink(staged.temp)
    staged.temp = Path(tmp)


def _commit(staged: _Staged) -> bool:
    """Rename into place; True when this call created the stored file (it did not exist)."""
    final = attachment_root() / staged.sha256
    if final.exists():
        # Same content already stored (write-once): keep the file, but mark it fresh so the
        # sweep does not take it away before the task that now needs it is saved.
        _unlink(staged.temp)
        os.utime(final)
        return False
    os.replace(staged.temp, final)
    os.chmod(final, 0o440)
    return True


def store_attachment(fileobj_or_bytes, name: str, *, field: str = "artifact", kind: str | None = None) -> dict:
    """Stream one file into the store, hashing as it goes (never the whole file in memory).

    ``kind`` (see KINDS) validates it before it is kept; a private key is sealed with the
    vault. Returns ``{sha256, path, size, name}``. A file over the size limit raises
    AttachmentTooLarge (a 400 naming ``field``); any refusal leaves nothing behind.
    """
    if kind is not None and kind not in KINDS:
        raise ValueError(f"unknown attachment kind {kind!r}; one of {', '.join(KINDS)}")
    tmp, sha, size = _stream_to_temp(fileobj_or_bytes, field, _limit_for(kind))
    staged = _Staged(field, kind, os.path.basename(name or "artifact"), tmp, sha, size)
    try:
        _validate(staged)
        if kind == "private_key":
            _seal(staged)
        _commit(staged)
    finally:
        _unlink(staged.temp)
    return {"sha256": sha, "path": str(attachment_root() / sha), "size": size, "name": staged.name}


def is_stored(sha256: str) -> bool:
    return bool(SHA256_RE.match(sha256 or "")) and (attachment_root() / sha256).is_file()


def is_sealed(path: Path) -> bool:
    with path.open("rb") as handle:
        return handle.read(len(SEALED_MAGIC)) == SEALED_MAGIC


def read_attachment(sha256: str) -> bytes:
    """The stored bytes, opened from the vault when sealed. Raises FileNotFoundError or
    cmdb.vault.VaultError; the caller still checks the SHA-256."""
    if not SHA256_RE.match(sha256 or ""):
        raise ValueError(f"not a SHA-256: {sha256!r}")
    return unseal((attachment_root() / sha256).read_bytes(), sha256)


def unseal(data: bytes, sha256: str) -> bytes:
    """The plaintext of a stored file's bytes: unchanged unless sealed, else opened with the vault
    (the SHA-256 is bound as associated data, so a sealed file renamed to another hash fails)."""
    if not data.startswith(SEALED_MAGIC):
        return data
    from cmdb import vault

    stored = data[len(SEALED_MAGIC) :].decode("ascii").strip()
    return vault.decrypt(stored, context=f"attachment:{sha256}").encode("ascii")


# --- a whole filing -----------------------------------------------------------------------
@dataclass
class UploadBatch:
    """The uploads of one request: staged and validated together, then committed, and
    removed again if the filing fails after they were committed."""

    sub_type: str
    staged: list[_Staged] = dc_field(default_factory=list)
    created: list[str] = dc_field(default_factory=list)

    def stage(self, uploads: dict) -> None:
        unknown = sorted(set(uploads) - set(UPLOAD_PARAMETERS))
        if unknown:
            raise Invalid(f"알 수 없는 업로드 항목입니다: {unknown[0]!r}", field=unknown[0])
        for field in UPLOAD_PARAMETERS:
            upload = uploads.get(field)
            if upload is None:
                continue
            kind = kind_for(field, self.sub_type)
            tmp, sha, size = _stream_to_temp(upload, field, _limit_for(kind))
            name = os.path.basename(getattr(upload, "name", "") or field)
            staged = _Staged(field, kind, name, tmp, sha, size)
            self.staged.append(staged)
            _validate(staged)
        self._check_pair()

    def _check_pair(self) -> None:
        by_field = {s.field: s for s in self.staged}
        cert, key = by_field.get("cert_file"), by_field.get("key_file")
        if cert is None or key is None:
            return
        if _public_der(cert.parsed[0].public_key()) != _public_der(key.parsed.public_key()):
            raise Invalid("개인 키가 인증서와 맞지 않습니다", field="key_file")

    def attach(self, parameters: dict) -> dict:
        """Commit the staged files and point the parameters at them; the ticket keeps the list
        of what it carries (name, size, SHA-256) in ``_meta.attachments`` and the artifact in
        ``artifact``."""
        parameters = dict(parameters)
        records = []
        for staged in self.staged:
            if staged.kind == "private_key":
                _seal(staged)
            if _commit(staged):
                self.created.append(staged.sha256)
            record = {"sha256": staged.sha256, "name": staged.name, "size": staged.size}
            parameters[UPLOAD_PARAMETERS[staged.field]] = staged.sha256
            if staged.field == "artifact":
                parameters["artifact"] = record
            records.append({"field": staged.field, **record})
        if records:
            meta = dict(parameters.get("_meta") or {})
            meta["attachments"] = [*meta.get("attachments", []), *records]
            parameters["_meta"] = meta
        return parameters

    def remove_temporaries(self) -> None:
        for staged in self.staged:
            _unlink(staged.temp)

    def discard(self) -> None:
        """The filing failed: remove what this request added, unless a task refers to it
        (the same bytes filed by someone else in the meantime)."""
        self.remove_temporaries()
        for sha in self.created:
            if not _referenced_by_a_task(sha):
                _unlink(attachment_root() / sha)
        self.created.clear()


@contextmanager
def received_uploads(uploads: dict | None, *, sub_type: str) -> Iterator[UploadBatch]:
    """Stage and validate every upload, then run the filing inside the block; any exception
    (a refused upload, or a refusal raised later by the filing) removes the files again."""
    batch = UploadBatch(sub_type)
    try:
        batch.stage(uploads or {})
        yield batch
    except BaseException:
        batch.discard()
        raise
    finally:
        batch.remove_temporaries()


def attach_uploads(parameters: dict, uploads: dict, *, sub_type: str = "") -> dict:
    """Validate and store uploads outside a filing (kept for callers that manage failure)."""
    with received_uploads(uploads, sub_type=sub_type) as batch:
        return batch.attach(parameters)


def missing_attachments(parameters: dict) -> list[str]:
    """Parameters that name a SHA-256 the store does not hold: refused at submission, so
    nobody approves a deployment whose file is not there."""
    missing = [
        key
        for key, value in parameters.items()
        if key.endswith("_sha256") and isinstance(value, str) and value and not is_stored(value.lower())
    ]
    artifact = parameters.get("artifact")
    if isinstance(artifact, dict) and artifact.get("sha256") and not is_stored(str(artifact["sha256"]).lower()):
        missing.append("artifact")
    return sorted(set(missing))


# --- the sweep ------------------------------------------------------------------------------
_HEX64 = re.compile(SHA256_ANY_CASE_RE.pattern.strip("^$"))  # found anywhere in a text


def _referenced_by_a_task(sha256: str) -> bool:
    from .models import OpsTask

    return OpsTask.objects.filter(parameters__icontains=sha256).exists()


def referenced_hashes() -> set[str]:
    """Every SHA-256 any task's parameters mention (artifact, certificate, key, chain, _meta)."""
    import json

    from .models import OpsTask

    found: set[str] = set()
    for parameters in OpsTask.objects.values_list("parameters", flat=True).iterator(chunk_size=2000):
        text = parameters if isinstance(parameters, str) else json.dumps(parameters or {})
        found.update(match.lower() for match in _HEX64.findall(text))
    return found


def sweep_unreferenced(*, grace: timedelta = SWEEP_GRACE, now: float | None = None) -> dict:
    """Remove stored files no task references and older than ``grace`` (a request being
    filed right now has a fresh file and no task yet), and temporaries left by a crash.
    Returns what was removed and kept; the caller writes the audit entry."""
    root = attachment_root()
    now = time.time() if now is None else now
    cutoff = now - grace.total_seconds()
    removed: list[dict] = []
    kept_referenced = kept_recent = 0
    if not root.is_dir():
        return {"removed": removed, "kept_referenced": 0, "kept_recent": 0}
    referenced = referenced_hashes()
    for path in sorted(root.iterdir()):
        name = path.name
        if not path.is_file():
            continue
        stat = path.stat()
        is_temp = name.startswith(TEMP_PREFIX)
        if not (is_temp or SHA256_RE.match(name)):
            continue  # not ours
        if not is_temp and name in referenced:
            kept_referenced += 1
            continue
        if stat.st_mtime > cutoff:
            kept_recent += 1
            continue
        if not is_temp and _referenced_by_a_task(name):  # filed while we were scanning
            kept_referenced += 1
            continue
        _unlink(path)
        removed.append(
            {
                "file": name,
                "size": stat.st_size,
                "temporary": is_temp,
                "age_hours": round((now - stat.st_mtime) / 3600, 1),
            }
        )
    return {"removed": removed, "kept_referenced": kept_referenced, "kept_recent": kept_recent}
