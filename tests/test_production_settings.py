"""Production mode refuses unsafe configuration and passes `check --deploy`."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
GOOD_SECRET = "x" * 20 + "-production-secret-" + "y" * 20


def run_manage(tmp_path, *args, **env_overrides):
    env = {k: v for k, v in os.environ.items() if not k.startswith("GUARDIA_")}
    env.update({"GUARDIA_DATA_DIR": str(tmp_path), "GUARDIA_PRODUCTION": "true", **env_overrides})
    return subprocess.run(
        [sys.executable, "manage.py", *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120
    )


def test_production_refuses_debug_default_secret_and_missing_vault_key(tmp_path):
    result = run_manage(tmp_path, "check", GUARDIA_DEBUG="true")
    assert result.returncode != 0
    for problem in ("GUARDIA_DEBUG is on", "GUARDIA_SECRET_KEY is the default", "no vault key"):
        assert problem in result.stderr


@pytest.mark.slow
def test_production_check_deploy_is_clean(tmp_path):
    key = tmp_path / "vault.key"
    key.write_text("MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=\n")
    result = run_manage(
        tmp_path,
        "check",
        "--deploy",
        "--fail-level",
        "WARNING",
        GUARDIA_SECRET_KEY=GOOD_SECRET,
        GUARDIA_VAULT_KEY_FILE=str(key),
        GUARDIA_ALLOWED_HOSTS="guardia.example.go.kr",
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "no issues" in result.stdout


def test_bad_environment_value_names_the_variable(tmp_path):
    result = run_manage(tmp_path, "check", GUARDIA_PRODUCTION="maybe")
    assert result.returncode != 0 and "GUARDIA_PRODUCTION" in result.stderr


@pytest.mark.slow  # Django set up in a subprocess with the SQL Server backend loaded: seconds
def test_sql_server_url_selects_mssql_django(tmp_path):
    """The SQL Server path resolves to mssql-django's engine and its backend loads (no server
    runs here, so nothing connects)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("GUARDIA_")}
    env.update(
        {
            "GUARDIA_DATA_DIR": str(tmp_path),
            "GUARDIA_DATABASE_URL": "mssql://u:p@sql.internal:1433/guardia",
            "GUARDIA_MSSQL_DRIVER": "mssql-python",
            "DJANGO_SETTINGS_MODULE": "guardia.settings",
        }
    )
    code = (
        "import django; django.setup(); from django.db import connection; "
        "print(connection.settings_dict['ENGINE'], connection.vendor, connection.settings_dict['OPTIONS'])"
    )
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert "mssql microsoft" in result.stdout and "mssql_python" in result.stdout


def settings_in_subprocess(tmp_path, **env_overrides):
    """Import the settings module alone (no django.setup) under a clean GUARDIA_* environment."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("GUARDIA_")}
    env.update({"GUARDIA_DATA_DIR": str(tmp_path), **env_overrides})
    code = "import guardia.settings as s; print(','.join(s.INSTALLED_APPS))"
    return subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)


def test_production_settings_do_not_install_the_sshd_testbed(tmp_path):
    key = tmp_path / "vault.key"
    key.write_text("MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=\n")
    production = {
        "GUARDIA_PRODUCTION": "true",
        "GUARDIA_SECRET_KEY": GOOD_SECRET,
        "GUARDIA_VAULT_KEY_FILE": str(key),
    }
    result = settings_in_subprocess(tmp_path, **production)
    assert result.returncode == 0, result.stderr
    apps = result.stdout.strip().split(",")
    assert "execution" in apps and "testbed" not in apps

    # Turning it on in production is refused, naming the variable.
    refused = settings_in_subprocess(tmp_path, GUARDIA_TESTBED="true", **production)
    assert refused.returncode != 0 and "GUARDIA_TESTBED" in refused.stderr

    # Development installs it by default.
    development = settings_in_subprocess(tmp_path)
    assert development.returncode == 0, development.stderr
    assert "testbed" in development.stdout.strip().split(",")


# An integer setting given a value it refuses: the value, and the refusal it must name.
REFUSED = {
    "GUARDIA_PASSWORD_MIN_CLASSES": ("5", "expected at most 4, got 5"),
    "GUARDIA_PASSWORD_HISTORY": ("-1", "expected at least 0, got -1"),
    "GUARDIA_GATEWAY_HEARTBEAT_SECONDS": ("0", "expected at least 1, got 0"),
    "GUARDIA_SESSION_MAX_HOURS": ("twelve", "expected an integer, got 'twelve'"),
}


@pytest.mark.parametrize("variable", sorted(REFUSED))
def test_an_integer_setting_out_of_its_bounds_stops_the_start_naming_it(tmp_path, variable):
    value, refusal = REFUSED[variable]
    result = settings_in_subprocess(tmp_path, **{variable: value})
    assert result.returncode != 0
    assert f"{variable}: {refusal}" in result.stderr
    assert result.stdout == ""  # nothing was started


def test_an_integer_setting_at_its_bound_is_taken(tmp_path):
    result = settings_in_subprocess(tmp_path, GUARDIA_PASSWORD_MIN_CLASSES="4", GUARDIA_GATEWAY_HEARTBEAT_SECONDS="1")
    assert result.returncode == 0, result.stderr
