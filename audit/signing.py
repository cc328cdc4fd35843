"""Ed25519 keys and signatures for checkpoints and exports.

The private key is a PEM file at settings.AUDIT_SIGNING_KEY_FILE, outside the database,
readable only by the service account. In development it is created on first use; in
production a missing key is a configuration error (an auditor must be given the public
key in advance, so a silently new key would be worthless). The public key is written next
to it as ``<file>.pub`` for auditors (``manage.py audit_public_key`` prints it too).

Functions taking a public key work without Django so the offline verifier can use them.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
from functools import lru_cache
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

CHECKPOINT_DOMAIN = b"GUARDIA-AUDIT-CHECKPOINT/1"
# Version 2 also signs the Merkle root over the institution sub-chain heads (audit.merkle).
# A checkpoint without a root keeps the version 1 message, so old checkpoints still verify,
# and stripping the root from a version 2 checkpoint breaks its signature.
CHECKPOINT_DOMAIN_V2 = b"GUARDIA-AUDIT-CHECKPOINT/2"
# Version 2 of the export signature covers every trailer field (the chain verdict, the
# filters, counts, digests and the checkpoint), not only the body digest. Version 1
# exports signed the digest alone, so their `chain` block could be edited unseen; the
# offline verifier refuses them (docs/audit.md "Exports").
EXPORT_DOMAIN = b"GUARDIA-AUDIT-EXPORT/2"


def checkpoint_message(seq: int, entry_hash: str, time: str, merkle_root: str = "") -> bytes:
    if merkle_root:
        return b"%s\n%d\n%s\n%s\n%s" % (
            CHECKPOINT_DOMAIN_V2,
            seq,
            entry_hash.encode("ascii"),
            time.encode("ascii"),
            merkle_root.encode("ascii"),
        )
    return b"%s\n%d\n%s\n%s" % (CHECKPOINT_DOMAIN, seq, entry_hash.encode("ascii"), time.encode("ascii"))


def trailer_message(trailer: dict) -> bytes:
    """What an export's signature covers: every trailer field except the signature itself,
    as canonical JSON (keys sorted at every level, no spaces, raw UTF-8), after the domain.

    Adding, removing or changing any field (``chain.ok``, ``count``, a digest, the
    checkpoint, ``key_id``) changes these bytes, so the signature no longer verifies."""
    fields = {k: v for k, v in trailer.items() if k != "signature"}
    body = json.dumps(fields, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
    return EXPORT_DOMAIN + b"\n" + body.encode("utf-8")


def key_id(public_key: Ed25519PublicKey) -> str:
    raw = public_key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return hashlib.sha256(raw).hexdigest()[:16]


def public_pem(public_key: Ed25519PublicKey) -> bytes:
    return public_key.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)


def load_public_key(path: str | os.PathLike) -> Ed25519PublicKey:
    """A public key from a PEM file, or a file holding the base64 of the 32 raw bytes."""
    data = Path(path).read_bytes()
    try:
        if b"BEGIN" in data:
            key = serialization.load_pem_public_key(data)
        else:
            key = Ed25519PublicKey.from_public_bytes(base64.b64decode(data.strip(), validate=True))
    except (ValueError, TypeError) as exc:
        raise ValueError(f"{path}: not an Ed25519 public key ({exc})") from exc
    if not isinstance(key, Ed25519PublicKey):
        raise ValueError(f"{path}: not an Ed25519 public key")
    return key


def verify(public_key: Ed25519PublicKey, signature_b64: str, message: bytes) -> bool:
    try:
        public_key.verify(base64.b64decode(signature_b64, validate=True), message)
    except (InvalidSignature, ValueError):
        return False
    return True


@lru_cache(maxsize=4)
def _load_private(path: str, production: bool) -> Ed25519PrivateKey:
    file = Path(path)
    if not file.exists():
        if production:
            from django.core.exceptions import ImproperlyConfigured

            raise ImproperlyConfigured(
                f"audit signing key {file} is missing; create it with `manage.py audit_public_key --create` "
                "and give the public key to the auditors"
            )
        file.parent.mkdir(parents=True, exist_ok=True)
        key = Ed25519PrivateKey.generate()
        pem = key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
        # O_EXCL: two processes starting at once must not write two different keys.
        try:
            fd = os.open(file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            return _read_private(file)
        with os.fdopen(fd, "wb") as fh:
            fh.write(pem)
        file.with_name(file.name + ".pub").write_bytes(public_pem(key.public_key()))
        return key
    return _read_private(file)


def _read_private(file: Path) -> Ed25519PrivateKey:
    key = serialization.load_pem_private_key(file.read_bytes(), password=None)
    if not isinstance(key, Ed25519PrivateKey):
        raise ValueError(f"{file}: not an Ed25519 private key")
    return key


def signing_key() -> Ed25519PrivateKey:
    from django.conf import settings

    return _load_private(str(settings.AUDIT_SIGNING_KEY_FILE), bool(settings.PRODUCTION))


def sign(message: bytes) -> tuple[str, str]:
    """(key_id, base64 signature) for message with the configured private key."""
    key = signing_key()
    return key_id(key.public_key()), base64.b64encode(key.sign(message)).decode("ascii")


def own_public_key() -> Ed25519PublicKey:
    return signing_key().public_key()
