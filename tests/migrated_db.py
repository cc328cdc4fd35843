"""The migrated SQLite test database, kept between runs.

Building the test database runs every migration (seconds of CPU on each pytest-xdist worker).
The first run saves the migrated file under a key made of every migration file, the
installed apps and the Django and SQLite versions; a later run with the same key starts from
a copy and only runs ``migrate`` over it (nothing to apply; the post-migrate hooks still run:
roles, permissions, schedules). A changed migration changes the key, so a stale copy is never
used. Only for an SQLite default database; ``GUARDIA_TEST_DB_CACHE`` names the folder
(default ``~/.cache/guardia/test-db``), an empty value turns the copy off.
"""

from __future__ import annotations

import hashlib
import os
import sqlite3
import tempfile
from pathlib import Path

import django
from django.conf import settings
from django.db import connection

ROOT = Path(__file__).resolve().parent.parent


def _folder() -> Path | None:
    folder = os.environ.get("GUARDIA_TEST_DB_CACHE", str(Path.home() / ".cache" / "guardia" / "test-db"))
    if not folder or connection.vendor != "sqlite":
        return None
    return Path(folder)


def _key() -> str:
    digest = hashlib.sha256()
    for part in (django.__version__, sqlite3.sqlite_version, *settings.INSTALLED_APPS):
        digest.update(part.encode() + b"\0")
    for path in sorted(ROOT.glob("**/migrations/*.py")):
        if ".venv" not in path.parts:
            digest.update(str(path.relative_to(ROOT)).encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()[:32]


def _copy(source: str | Path, target: str | Path) -> None:
    """A consistent copy (the SQLite backup API, whatever the WAL holds)."""
    with sqlite3.connect(source) as src, sqlite3.connect(target) as dst:
        src.backup(dst)
    src.close()
    dst.close()


def restore() -> bool:
    """Put the saved migrated database where the test database goes; False when there is none
    (then the test database is built by migrating, and ``save`` keeps it)."""
    folder = _folder()
    name = connection.creation._get_test_db_name()
    if folder is None or connection.creation.is_in_memory_db(name):
        return False
    saved = folder / f"{_key()}.sqlite3"
    if not saved.exists() or Path(name).exists():
        return False
    _copy(saved, name)
    return True


def save() -> None:
    """Keep the just-migrated test database for later runs (written whole, then renamed)."""
    folder = _folder()
    name = connection.settings_dict["NAME"]
    if folder is None or connection.creation.is_in_memory_db(name):
        return
    saved = folder / f"{_key()}.sqlite3"
    if saved.exists():
        return
    try:
        folder.mkdir(parents=True, exist_ok=True)
        handle, partial = tempfile.mkstemp(dir=folder, suffix=".partial")
    except OSError:
        return  # no writable cache folder: the next run migrates again
    os.close(handle)
    try:
        _copy(name, partial)
        os.replace(partial, saved)
    finally:
        if os.path.exists(partial):
            os.unlink(partial)
    for old in folder.glob("*.sqlite3"):
        if old != saved:
            old.unlink(missing_ok=True)


def build() -> None:
    """Migrate a test database and keep it, unless one with the same key is kept already.
    ``scripts/test.sh`` runs this (``python -m tests.migrated_db``) beside the checks, in a
    data directory of its own, so the pytest workers start from the copy."""
    from django.test.utils import setup_test_environment

    if _folder() is None or (_folder() / f"{_key()}.sqlite3").exists():
        return
    setup_test_environment()
    connection.creation.create_test_db(verbosity=0, autoclobber=True, serialize=False)
    save()


if __name__ == "__main__":
    import tests.env  # noqa: F401  (the test run's environment, before the settings are read)

    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "guardia.settings")
    django.setup()
    build()
