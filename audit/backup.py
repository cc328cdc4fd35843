"""Backup and restore of everything a GUARDiA host cannot rebuild: the database, the key
files (credential vault, audit signing key), the audit JSON Lines mirror and the uploaded
files (artifacts, certificates).

A backup is a directory (mode 0700) with a `manifest.json` that lists every file with its
size and SHA-256, the chain head at the time of the backup and the signing key's id. The
restore checks the manifest before it touches anything, refuses a backup with a missing or
altered file (and names it), puts every file back where the settings of the restoring host
say it belongs, migrates, and verifies the chain; it refuses to report success on a chain
that does not verify. Both runs are entries in the chain, so new entries continue it.

The database is copied with the engine's own tools: SQLite's online backup API (a
consistent copy while the web and the worker keep writing), `pg_dump`/`pg_restore` for
PostgreSQL. SQL Server is backed up with its own `BACKUP DATABASE` (docs/deploy.md).

Only settings are read here (no other app is imported): the audit layer stays at the
bottom of the import graph.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import sqlite3
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.management import call_command
from django.db import connection, connections
from django.db.utils import OperationalError, ProgrammingError
from django.utils import timezone

from . import services, signing
from .models import AuditEntry, ChainHead

MANIFEST = "manifest.json"
FORMAT = 1


class BackupError(Exception):
    """A backup or restore that cannot go on; the message says why in Korean."""


@dataclass
class Part:
    """One group of files in a backup: where it lives on this host and under which name."""

    name: str
    source: Path | None
    is_dir: bool = False


@dataclass
class Manifest:
    created_at: str
    engine: str
    head_seq: int
    head_hash: str
    key_id: str
    vault_key_in_environment: bool
    files: dict[str, dict[str, Any]] = field(default_factory=dict)

    def as_json(self) -> str:
        return json.dumps({"format": FORMAT, **self.__dict__}, ensure_ascii=False, indent=2, sort_keys=True)


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _engine() -> str:
    engine = connection.settings_dict["ENGINE"]
    if "sqlite" in engine or engine.startswith("guardia.db_sqlite"):
        return "sqlite"
    if "postgresql" in engine:
        return "postgresql"
    return engine


def _parts() -> list[Part]:
    vault_file = Path(settings.VAULT_KEY_FILE) if getattr(settings, "VAULT_KEY_FILE", "") else None
    return [
        Part("keys/vault.key", vault_file),
        Part("keys/audit_ed25519.pem", Path(settings.AUDIT_SIGNING_KEY_FILE)),
        Part("audit-mirror", Path(settings.AUDIT_MIRROR_DIR), is_dir=True),
        Part("media", Path(settings.MEDIA_ROOT), is_dir=True),
    ]


def _pg_env() -> dict[str, str]:
    db = connection.settings_dict
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin")}
    for key, value in (
        ("PGHOST", db.get("HOST")),
        ("PGPORT", db.get("PORT")),
        ("PGUSER", db.get("USER")),
        ("PGPASSWORD", db.get("PASSWORD")),
        ("PGDATABASE", db.get("NAME")),
    ):
        if value:
            env[key] = str(value)
    return env


def _run(argv: list[str], env: dict[str, str]) -> None:
    done = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=3600, check=False)
    if done.returncode != 0:
        # The tools' stderr names tables and files, never the password (it travels in PGPASSWORD).
        raise BackupError(f"{argv[0]} 실패 (종료 코드 {done.returncode}): {done.stderr.strip()[-500:]}")


def _dump_database(target: Path) -> str:
    engine = _engine()
    if engine == "sqlite":
        name = target / "database.sqlite3"
        source = sqlite3.connect(connection.settings_dict["NAME"], timeout=60)
        dest = sqlite3.connect(name)
        try:
            source.backup(dest)  # consistent while others write: SQLite's online backup API
        finally:
            dest.close()
            source.close()
        return name.name
    if engine == "postgresql":
        name = target / "database.pgdump"
        _run(["pg_dump", "--format=custom", "--no-owner", "--no-privileges", f"--file={name}"], _pg_env())
        return name.name
    raise BackupError(f"이 데이터베이스 엔진({engine})은 자체 백업 도구를 사용하십시오 (docs/deploy.md 참고).")


def _copy(part: Part, dest: Path) -> list[Path]:
    """Copy one part into the backup; return the files written (none when it does not exist here)."""
    if part.source is None or not part.source.exists():
        return []
    if part.is_dir:
        shutil.copytree(part.source, dest, dirs_exist_ok=False)
        return sorted(p for p in dest.rglob("*") if p.is_file())
    dest.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy2(part.source, dest)
    os.chmod(dest, 0o600)
    return [dest]


def create_backup(target: Path, actor: Any = None) -> Manifest:
    """Write a complete backup into `target` (which must not exist or be empty)."""
    target = Path(target)
    if target.exists() and any(target.iterdir()):
        raise BackupError(f"백업 위치가 비어 있지 않습니다: {target}")
    target.mkdir(parents=True, exist_ok=True, mode=0o700)
    os.chmod(target, 0o700)
    # The backup is itself an event of the chain and ends at a signed checkpoint, so the
    # restored chain can be checked against a signature made before the copy.
    services.record(actor, "backup.created", payload={"target": str(target)})
    services.create_checkpoint("backup")
    head = ChainHead.objects.filter(id=1).values_list("seq", "entry_hash").first() or (0, "")
    written = [target / _dump_database(target)]
    for part in _parts():
        written += _copy(part, target / part.name)
    manifest = Manifest(
        created_at=timezone.now().isoformat(),
        engine=_engine(),
        head_seq=head[0],
        head_hash=head[1],
        key_id=signing.key_id(signing.own_public_key()),
        vault_key_in_environment=bool(getattr(settings, "VAULT_KEY", "")),
    )
    for path in written:
        manifest.files[path.relative_to(target).as_posix()] = {"size": path.stat().st_size, "sha256": _sha256(path)}
    (target / MANIFEST).write_text(manifest.as_json(), encoding="utf-8")
    return manifest


def read_manifest(source: Path) -> dict[str, Any]:
    """The manifest of a backup, after checking every file it lists (and that no file was added)."""
    source = Path(source)
    try:
        data = json.loads((source / MANIFEST).read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise BackupError(f"백업에 {MANIFEST} 파일이 없습니다: {source}") from exc
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise BackupError(f"{MANIFEST} 파일을 읽을 수 없습니다: {exc}") from exc
    if data.get("format") != FORMAT or not isinstance(data.get("files"), dict):
        raise BackupError(f"알 수 없는 백업 형식입니다: {data.get('format')!r}")
    for name, meta in sorted(data["files"].items()):
        path = source / name
        if not path.is_file():
            raise BackupError(f"백업 파일이 없습니다: {name}")
        if path.stat().st_size != meta.get("size") or _sha256(path) != meta.get("sha256"):
            raise BackupError(f"백업 파일이 변경되었습니다 (SHA-256 불일치): {name}")
    present = {p.relative_to(source).as_posix() for p in source.rglob("*") if p.is_file()} - {MANIFEST}
    extra = sorted(present - set(data["files"]))
    if extra:
        raise BackupError(f"목록에 없는 파일이 백업에 있습니다: {extra[0]}")
    return data


def _restore_database(source: Path, data: dict[str, Any]) -> None:
    engine = _engine()
    if data.get("engine") != engine:
        raise BackupError(f"백업의 데이터베이스({data.get('engine')})와 이 호스트의 데이터베이스({engine})가 다릅니다.")
    connections.close_all()
    if engine == "sqlite":
        name = Path(connection.settings_dict["NAME"])
        name.parent.mkdir(parents=True, exist_ok=True)
        for suffix in ("-wal", "-shm"):
            Path(f"{name}{suffix}").unlink(missing_ok=True)
        src = sqlite3.connect(source / "database.sqlite3")
        dest = sqlite3.connect(name)
        try:
            src.backup(dest)
        finally:
            dest.close()
            src.close()
        return
    _run(
        ["pg_restore", "--clean", "--if-exists", "--no-owner", "--no-privileges", "--single-transaction",
         f"--dbname={connection.settings_dict['NAME']}", str(source / "database.pgdump")],
        _pg_env(),
    )  # fmt: skip


def _database_is_empty() -> bool:
    try:
        return not AuditEntry.objects.exists()
    except (OperationalError, ProgrammingError):  # no tables yet: a fresh host
        return True


def restore_backup(source: Path, *, replace: bool = False, actor: Any = None):
    """Put a checked backup back on this host; return the verification report of the chain."""
    source = Path(source)
    data = read_manifest(source)
    if not replace and not _database_is_empty():
        raise BackupError("이 호스트의 데이터베이스에 이미 감사 체인이 있습니다. 덮어쓰려면 --replace 를 지정하십시오.")
    for part in _parts():
        names = [n for n in data["files"] if n == part.name or n.startswith(part.name + "/")]
        if part.source is None:
            if names:
                raise BackupError(f"{part.name} 의 복원 위치가 설정되지 않았습니다 (GUARDIA_VAULT_KEY_FILE).")
            continue
        for name in names:
            dest = part.source / Path(name).relative_to(part.name) if part.is_dir else part.source
            dest.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source / name, dest)
            if not part.is_dir:
                os.chmod(dest, 0o600)
    _restore_database(source, data)
    call_command("migrate", interactive=False, verbosity=0)
    report = services.run_verification(actor, source="restore")
    if not report.ok:
        raise BackupError(f"복원된 감사 체인이 검증되지 않습니다: {report.message()}")
    head = ChainHead.objects.filter(id=1).values_list("seq", flat=True).first() or 0
    if head < int(data.get("head_seq") or 0):
        raise BackupError(f"복원된 체인이 백업보다 짧습니다 ({head} < {data.get('head_seq')}).")
    services.record(actor, "backup.restored", payload={"source": str(source), "head_seq": data.get("head_seq")})
    return report
