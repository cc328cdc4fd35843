"""Credential vault: AES-256-GCM with the key outside the database.

Stored form: ``v1:<key id>:<base64(nonce || ciphertext+tag)>``. The key id is the first
8 hex characters of SHA-256(key), so a wrong key is named as such instead of surfacing
as an opaque InvalidTag. The credential's name is bound as associated data, so a
ciphertext copied onto another credential row does not decrypt (and the name is
read-only once a secret is stored).
"""

from __future__ import annotations

import base64
import hashlib
import logging
import os
import threading
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from django.conf import settings

from audit import scrub

NONCE_BYTES = 12
PREFIX = "v1"


class VaultError(Exception):
    """The vault cannot encrypt or decrypt: missing key, wrong key, damaged data."""


def generate_key() -> str:
    return base64.b64encode(AESGCM.generate_key(bit_length=256)).decode()


def decode_key(text: str, source: str) -> bytes:
    try:
        key = base64.b64decode(text.strip(), validate=True)
    except ValueError as exc:
        raise VaultError(f"vault key from {source} is not valid base64") from exc
    if len(key) != 32:
        raise VaultError(f"vault key from {source} must be 32 bytes (AES-256), got {len(key)}")
    return key


def key_id(key: bytes) -> str:
    return hashlib.sha256(key).hexdigest()[:8]


def load_key() -> bytes:
    """Read the key from GUARDIA_VAULT_KEY or the key file; create the file in dev mode."""
    if settings.VAULT_KEY:
        return decode_key(settings.VAULT_KEY, "GUARDIA_VAULT_KEY")
    path = Path(settings.VAULT_KEY_FILE) if settings.VAULT_KEY_FILE else None
    if path is None:
        raise VaultError("no vault key configured: set GUARDIA_VAULT_KEY or GUARDIA_VAULT_KEY_FILE")
    if not path.exists():
        if settings.PRODUCTION:
            raise VaultError(f"vault key file {path} does not exist")
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(generate_key() + "\n")
    return decode_key(path.read_text(), str(path))


def _aad(context: str) -> bytes:
    return f"guardia-credential:{context}".encode()


def encrypt(plaintext: str, context: str, key: bytes | None = None) -> str:
    key = key or load_key()
    nonce = os.urandom(NONCE_BYTES)  # fresh per secret: GCM must never reuse a nonce
    blob = AESGCM(key).encrypt(nonce, plaintext.encode(), _aad(context))
    return f"{PREFIX}:{key_id(key)}:{base64.b64encode(nonce + blob).decode()}"


def decrypt(stored: str, context: str, key: bytes | None = None) -> str:
    key = key or load_key()
    try:
        prefix, kid, body = stored.split(":", 2)
    except ValueError as exc:
        raise VaultError("stored secret is not in vault format") from exc
    if prefix != PREFIX:
        raise VaultError(f"unknown vault format {prefix!r}")
    if kid != key_id(key):
        raise VaultError(
            f"vault key mismatch: secret was encrypted with key {kid}, the configured key is "
            f"{key_id(key)} (wrong GUARDIA_VAULT_KEY / key file, or a rotation not applied)"
        )
    raw = base64.b64decode(body)
    try:
        plaintext = AESGCM(key).decrypt(raw[:NONCE_BYTES], raw[NONCE_BYTES:], _aad(context))
    except InvalidTag as exc:
        raise VaultError("secret failed authentication: data damaged or moved to another row") from exc
    register_secret(plaintext.decode())
    return plaintext.decode()


# Every secret the process has decrypted or been given is redacted from log records and
# from command output (the rules themselves live in audit.scrub, the one home of redaction).
_known_secrets: set[str] = set()
_known_lock = threading.Lock()


def register_secret(secret: str) -> None:
    if secret and len(secret) >= 4:
        with _known_lock:
            _known_secrets.add(secret)


def known_secrets() -> tuple[str, ...]:
    with _known_lock:
        return tuple(_known_secrets)


def redact(text: str) -> str:
    """audit.scrub.redact_text with every secret this process knows."""
    return scrub.redact_text(text, known_secrets())


def redact_structure(value):
    return scrub.redact_structure(value, known_secrets())


class RedactSecretsFilter(logging.Filter):
    """Logging filter: rewrite the formatted message with secrets redacted."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # a broken format string must not lose the record
            return True
        cleaned = redact(message)
        if cleaned != message:
            record.msg, record.args = cleaned, None
        return True
