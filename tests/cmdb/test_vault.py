from __future__ import annotations

import logging

import pytest
from django.core.management import CommandError, call_command

from audit.models import AuditEntry
from cmdb import vault
from cmdb.models import Credential
from tests.cmdb.test_credentials import raw_database_text
from tests.factories import CredentialFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def key_a(settings):
    settings.VAULT_KEY = vault.generate_key()
    return settings.VAULT_KEY


def test_the_database_never_holds_a_plaintext_secret(key_a):
    secrets = [f"plain-{i}-Secret!xyz" for i in range(3)]
    for i, secret in enumerate(secrets):
        CredentialFactory(name=f"c{i}", secret=secret)
    text = raw_database_text()
    for secret in secrets:
        assert secret not in text
    stored = Credential.objects.values_list("secret_encrypted", flat=True)
    assert all(s.startswith(f"v1:{vault.key_id(vault.load_key())}:") for s in stored)
    assert len(set(stored)) == 3
    # A fresh nonce per secret: the same plaintext encrypts differently every time.
    assert vault.encrypt("same", "ctx") != vault.encrypt("same", "ctx")


def test_a_wrong_vault_key_fails_loudly_and_names_the_problem(key_a, settings):
    cred = CredentialFactory(name="c", secret="right-key-secret")
    settings.VAULT_KEY = vault.generate_key()
    with pytest.raises(vault.VaultError, match="vault key mismatch: secret was encrypted with key"):
        Credential.objects.get(pk=cred.pk).reveal()
    settings.VAULT_KEY = "not base64!!"
    with pytest.raises(vault.VaultError, match="GUARDIA_VAULT_KEY is not valid base64"):
        cred.reveal()
    settings.VAULT_KEY = "c2hvcnQ="
    with pytest.raises(vault.VaultError, match="must be 32 bytes"):
        cred.reveal()


def test_a_damaged_or_moved_ciphertext_is_refused(key_a):
    one = CredentialFactory(name="one", secret="secret-one")
    two = CredentialFactory(name="two", secret="secret-two")
    two.secret_encrypted = one.secret_encrypted  # copied onto another row
    with pytest.raises(vault.VaultError, match="failed authentication"):
        two.reveal()
    prefix, kid, body = one.secret_encrypted.split(":")
    one.secret_encrypted = f"{prefix}:{kid}:{body[:-6]}AAAAAA"
    with pytest.raises(vault.VaultError, match="failed authentication"):
        one.reveal()


def test_rotation_re_encrypts_every_secret_for_the_new_key_only(key_a, settings, tmp_path):
    plaintexts = {f"r{i}": f"rotate-me-{i}-Secret" for i in range(5)}
    for name, secret in plaintexts.items():
        CredentialFactory(name=name, secret=secret)
    old_key = settings.VAULT_KEY
    new_file = tmp_path / "vault.key.new"

    call_command("rotate_vault_key", new_key_file=new_file, generate=True)

    new_key = vault.decode_key(new_file.read_text(), "test")
    for cred in Credential.objects.all():
        assert vault.decrypt(cred.secret_encrypted, cred.vault_context(), key=new_key) == plaintexts[cred.name]
        with pytest.raises(vault.VaultError, match="vault key mismatch"):
            vault.decrypt(cred.secret_encrypted, cred.vault_context(), key=vault.decode_key(old_key, "old"))
    settings.VAULT_KEY = new_file.read_text().strip()
    assert {c.name: c.reveal() for c in Credential.objects.all()} == plaintexts
    entry = AuditEntry.objects.get(action="cmdb.vault_rotate")
    assert entry.payload["credentials"] == 5 and entry.payload["new_key_id"] == vault.key_id(new_key)
    assert all(secret not in raw_database_text() for secret in plaintexts.values())


def test_rotation_with_an_unreadable_secret_changes_nothing(key_a, settings, tmp_path, monkeypatch):
    CredentialFactory(name="good", secret="good-Secret-1")
    bad = CredentialFactory(name="zz-bad", secret="bad-Secret-2")
    Credential.objects.filter(pk=bad.pk).update(secret_encrypted=vault.encrypt("x", "elsewhere"))
    before = dict(Credential.objects.values_list("name", "secret_encrypted"))
    monkeypatch.setenv("GUARDIA_VAULT_NEW_KEY", vault.generate_key())

    with pytest.raises(CommandError, match="rotation aborted, nothing changed: secret failed authentication"):
        call_command("rotate_vault_key")
    assert dict(Credential.objects.values_list("name", "secret_encrypted")) == before
    assert not AuditEntry.objects.filter(action="cmdb.vault_rotate").exists()


def test_rotation_installs_the_new_key_file(settings, tmp_path):
    settings.VAULT_KEY = ""
    settings.VAULT_KEY_FILE = str(tmp_path / "vault.key")
    (tmp_path / "vault.key").write_text(vault.generate_key() + "\n")
    CredentialFactory(name="f", secret="file-key-Secret")
    new_file = tmp_path / "new.key"
    new_file.write_text(vault.generate_key() + "\n")
    call_command("rotate_vault_key", new_key_file=new_file, install=True)
    assert (tmp_path / "vault.key").read_text() == new_file.read_text()
    assert Credential.objects.get(name="f").reveal() == "file-key-Secret"
    with pytest.raises(CommandError, match="same as the current one"):
        call_command("rotate_vault_key", new_key_file=new_file)


def test_logging_filter_redacts_decrypted_secrets_and_password_assignments(key_a, caplog):
    cred = CredentialFactory(name="logme", secret="Zebra-Horse-91-Secret")
    revealed = Credential.objects.get(pk=cred.pk).reveal()
    logger = logging.getLogger("guardia.test.redact")
    logger.addFilter(vault.RedactSecretsFilter())
    try:
        with caplog.at_level(logging.INFO, logger="guardia.test.redact"):
            logger.info("connecting with %s", revealed)
            logger.info("sshpass password=hunter2-xyz ssh deploy@host")
            logger.info("-----BEGIN OPENSSH PRIVATE KEY-----\nabc\n-----END OPENSSH PRIVATE KEY-----")
    finally:
        logger.filters.clear()
    text = caplog.text
    assert "Zebra-Horse-91-Secret" not in text and "hunter2-xyz" not in text and "abc" not in text
    assert text.count("[REDACTED") == 3
