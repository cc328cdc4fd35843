"""Ticket attachments (SPEC §3 "attachments (with SHA-256)"): artifacts, certificates, keys.

Stored content-addressed under MEDIA_ROOT/artifacts/<sha256>, write-once, so the bytes an
approver approved are the bytes the worker uploads: the task's parameters carry only the
SHA-256 and the execution layer re-hashes the file before the first connection. This is
the one implementation; ``execution.services.store_artifact`` calls it.
"""

from __future__ import annotations

import hashlib
import os
import re
import tempfile
from pathlib import Path

from django.conf import settings

from .errors import Invalid

CHUNK = 1 << 20
SHA256_RE = re.compile(r"^[0-9a-f]{64}$")


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
            yield bytes(data[start:start + CHUNK])
        return
    # Django's UploadedFile streams from its temporary file; anything else is read in chunks.
    if hasattr(fileobj_or_bytes, "chunks"):
        yield from fileobj_or_bytes.chunks(CHUNK)
        return
    yield from iter(lambda: fileobj_or_bytes.read(CHUNK), b"")


def store_attachment(fileobj_or_bytes, name: str, *, field: str = "artifact") -> dict:
    """Stream an upload into the store, hashing as it goes (never the whole file in memory).

    Returns ``{sha256, path, size, name}``. A file over the size limit raises
    AttachmentTooLarge (a 400 naming ``field``) and leaves nothing behind.
    """
    root = attachment_root()
    root.mkdir(parents=True, exist_ok=True)
    limit = max_attachment_bytes()
    digest = hashlib.sha256()
    size = 0
    fd, tmp = tempfile.mkstemp(dir=root, prefix=".upload-")
    try:
        with os.fdopen(fd, "wb") as out:
            for chunk in _chunks(fileobj_or_bytes):
                size += len(chunk)
                if size > limit:
                    raise AttachmentTooLarge(
                        f"attachment larger than {limit // (1024 * 1024)} MB (GUARDIA_MAX_ATTACHMENT_MB)", field=field)
                digest.update(chunk)
                out.write(chunk)
        sha = digest.hexdigest()
        final = root / sha
        os.replace(tmp, final)  # same content, same name: uploading it again is harmless
        os.chmod(final, 0o440)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return {"sha256": sha, "path": str(final), "size": size, "name": os.path.basename(name or "artifact")}


def is_stored(sha256: str) -> bool:
    return bool(SHA256_RE.match(sha256 or "")) and (attachment_root() / sha256).is_file()


# Upload field → the playbook parameter that carries its SHA-256.
UPLOAD_PARAMETERS = {"artifact": "artifact_sha256", "cert_file": "cert_sha256", "key_file": "key_sha256",
                     "chain_file": "chain_sha256"}


def attach_uploads(parameters: dict, uploads: dict) -> dict:
    """Store each upload and point the parameters at it; the ticket keeps the list of what it carries
    (name, size, SHA-256) in ``_meta.attachments`` and the artifact in ``artifact``."""
    parameters = dict(parameters)
    records = []
    for field, parameter in UPLOAD_PARAMETERS.items():
        upload = uploads.get(field)
        if upload is None:
            continue
        stored = store_attachment(upload, getattr(upload, "name", "") or field, field=field)
        record = {"sha256": stored["sha256"], "name": stored["name"], "size": stored["size"]}
        parameters[parameter] = stored["sha256"]
        if field == "artifact":
            parameters["artifact"] = record
        records.append({"field": field, **record})
    if records:
        meta = dict(parameters.get("_meta") or {})
        meta["attachments"] = [*meta.get("attachments", []), *records]
        parameters["_meta"] = meta
    return parameters


def missing_attachments(parameters: dict) -> list[str]:
    """Parameters that name a SHA-256 the store does not hold: refused at submission, so
    nobody approves a deployment whose file is not there."""
    missing = [key for key, value in parameters.items()
               if key.endswith("_sha256") and isinstance(value, str) and value and not is_stored(value.lower())]
    artifact = parameters.get("artifact")
    if isinstance(artifact, dict) and artifact.get("sha256") and not is_stored(str(artifact["sha256"]).lower()):
        missing.append("artifact")
    return sorted(set(missing))
