"""In production a vault key that cannot be used stops `check --deploy`, naming the problem."""

from __future__ import annotations

import pytest
from django.conf import settings
from django.utils.module_loading import import_string
from rest_framework.authentication import TokenAuthentication

from tests.test_production_settings import GOOD_SECRET, run_manage


@pytest.mark.slow
def test_missing_or_malformed_vault_key_file_fails_the_deploy_check(tmp_path):
    env = {"GUARDIA_SECRET_KEY": GOOD_SECRET, "GUARDIA_ALLOWED_HOSTS": "guardia.example.go.kr"}
    missing = run_manage(tmp_path, "check", "--deploy", GUARDIA_VAULT_KEY_FILE=str(tmp_path / "nope.key"), **env)
    assert missing.returncode != 0
    assert "cmdb.E001" in missing.stderr and "does not exist" in missing.stderr

    short = tmp_path / "short.key"
    short.write_text("c2hvcnQ=\n")
    result = run_manage(tmp_path, "check", "--deploy", GUARDIA_VAULT_KEY_FILE=str(short), **env)
    assert result.returncode != 0 and "must be 32 bytes (AES-256), got 5" in result.stderr


def test_api_clients_authenticate_with_drf_tokens():
    classes = [import_string(path) for path in settings.REST_FRAMEWORK["DEFAULT_AUTHENTICATION_CLASSES"]]
    assert any(issubclass(cls, TokenAuthentication) for cls in classes)
    assert "rest_framework.authtoken" in settings.INSTALLED_APPS
