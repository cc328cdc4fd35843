"""The restore drill, as an operator runs it: back up one host, destroy it, restore on a
fresh data directory, verify the chain, append, verify again. Each host is a set of
`manage.py` processes with its own GUARDIA_DATA_DIR (SQLite, keys, mirror, uploads)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.slow


def manage(data_dir: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    env = {**os.environ, "GUARDIA_DATA_DIR": str(data_dir)}
    for name in ("GUARDIA_AUDIT_MIRROR_DIR", "GUARDIA_AUDIT_SIGNING_KEY_FILE", "GUARDIA_MEDIA_ROOT", "DATABASE_URL"):
        env.pop(name, None)
    done = subprocess.run(
        [sys.executable, "manage.py", *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=180
    )
    if check:
        assert done.returncode == 0, done.stderr[-2000:]
    return done


SEAL_SECRET = (
    "from cmdb.models import Credential; c = Credential(name='drill', username='ops', kind='password'); "
    "c.set_secret('drill-secret-1'); c.save()"
)
REVEAL_SECRET = "from cmdb.models import Credential; print(Credential.objects.get(name='drill').reveal())"


def chain_report(data_dir: Path) -> dict:
    return json.loads(manage(data_dir, "audit_verify", "--json").stdout)


@pytest.fixture(scope="module")
def backed_up(tmp_path_factory):
    """Host A with a chain (migrate, several verifications, an upload), backed up, then destroyed."""
    tmp_path = tmp_path_factory.mktemp("drill")
    host_a = tmp_path / "host-a"
    manage(host_a, "migrate", "--no-input", "-v", "0")
    for _ in range(3):
        manage(host_a, "audit_verify")
    manage(host_a, "shell", "-c", SEAL_SECRET)  # creates the vault key on first use
    (host_a / "media" / "artifacts").mkdir(parents=True, exist_ok=True)
    (host_a / "media" / "artifacts" / "app.war").write_bytes(b"PK\x03\x04 sample")
    backup = tmp_path / "backup"
    out = manage(host_a, "backup", str(backup)).stdout
    assert "chain head seq" in out
    before = chain_report(host_a)
    assert before["ok"] is True
    shutil.rmtree(host_a)  # the host is lost
    return backup, before


def test_restore_drill_on_a_fresh_host(backed_up, tmp_path):
    backup, before = backed_up
    manifest = json.loads((backup / "manifest.json").read_text())
    assert manifest["engine"] == "sqlite"
    assert {"database.sqlite3", "keys/audit_ed25519.pem", "keys/vault.key", "media/artifacts/app.war"} <= set(
        manifest["files"]
    )
    assert oct((backup).stat().st_mode & 0o777) == "0o700"

    host_b = tmp_path / "host-b"
    out = manage(host_b, "restore", str(backup)).stdout
    assert "restored from" in out
    assert (host_b / "media" / "artifacts" / "app.war").read_bytes() == b"PK\x03\x04 sample"
    assert (host_b / "keys" / "audit_ed25519.pem").stat().st_mode & 0o777 == 0o600
    # The credential sealed on the lost host opens with the restored vault key.
    assert manage(host_b, "shell", "-c", REVEAL_SECRET).stdout.strip().splitlines()[-1] == "drill-secret-1"
    after = chain_report(host_b)  # appends an audit.verify entry, then verifies
    assert after["ok"] is True
    # Everything the lost host had, plus the restore's own entries and this verification.
    assert after["entries"] > manifest["head_seq"] >= before["entries"] - 1
    again = chain_report(host_b)
    assert again["ok"] is True and again["entries"] > after["entries"]

    # A second restore over a host that already has a chain is refused without --replace.
    refused = manage(host_b, "restore", str(backup), check=False)
    assert refused.returncode != 0 and "--replace" in refused.stderr
    # A backup never writes into a directory that holds something else.
    target = tmp_path / "busy"
    target.mkdir()
    (target / "keep.txt").write_text("operator's file")
    refused = manage(host_b, "backup", str(target), check=False)
    assert refused.returncode != 0 and "비어 있지 않습니다" in refused.stderr
    assert sorted(p.name for p in target.iterdir()) == ["keep.txt"]


def test_altered_or_incomplete_backup_is_refused_before_anything_is_touched(backed_up, tmp_path):
    backup = tmp_path / "copy"
    shutil.copytree(backed_up[0], backup)
    host_c = tmp_path / "host-c"
    (backup / "media" / "artifacts" / "app.war").write_bytes(b"PK\x03\x04 swapped")
    refused = manage(host_c, "restore", str(backup), check=False)
    assert refused.returncode != 0
    assert "media/artifacts/app.war" in refused.stderr and "SHA-256" in refused.stderr
    assert not (host_c / "guardia.sqlite3").exists() and not (host_c / "keys").exists()

    (backup / "media" / "artifacts" / "app.war").unlink()
    missing = manage(host_c, "restore", str(backup), check=False)
    assert missing.returncode != 0 and "media/artifacts/app.war" in missing.stderr

    (backup / "manifest.json").write_text("{not json")
    broken = manage(host_c, "restore", str(backup), check=False)
    assert broken.returncode != 0 and "manifest.json" in broken.stderr
    assert not (host_c / "guardia.sqlite3").exists()
