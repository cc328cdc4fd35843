"""A throwaway PostgreSQL 15 cluster for tests and benchmarks.

Debian's server refuses to run as root, so initdb and pg_ctl run as the `postgres` OS
user through `runuser`. The cluster lives in a temp dir, listens on 127.0.0.1 on a free
port with trust authentication (loopback only, torn down afterwards) and is removed at
the end. Use the session fixture `pg_url` in tests (``from tests.pg import pg_url`` in a
conftest or test module), or `PostgresCluster` directly in bench scripts.

Django in the test process stays on SQLite; code that should run on PostgreSQL runs in
a subprocess with GUARDIA_DATABASE_URL set to this URL (then `manage.py migrate`).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.waiting import free_port

PG_BIN = Path(os.getenv("GUARDIA_PG_BIN", "/usr/lib/postgresql/15/bin"))


class PostgresCluster:
    def __init__(self, *, fsync: bool = True, database: str = "guardia", extra: tuple[str, ...] = ()):
        self.fsync, self.database, self.extra = fsync, database, extra
        self.port = 0
        self.root: Path | None = None

    @property
    def url(self) -> str:
        return f"postgres://postgres@127.0.0.1:{self.port}/{self.database}"

    def _as_postgres(self, *argv: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            ["runuser", "-u", "postgres", "--", *argv], check=True, capture_output=True, text=True, timeout=120
        )

    def start(self) -> PostgresCluster:
        self.root = Path(tempfile.mkdtemp(prefix="guardia-pg-"))
        shutil.chown(self.root, "postgres", "postgres")
        data = self.root / "data"
        self._as_postgres(str(PG_BIN / "initdb"), "-D", str(data), "-A", "trust", "-U", "postgres",
                          "-E", "UTF8", "--no-locale", "--no-sync")  # fmt: skip
        self.port = free_port()
        options = [f"-p {self.port}", "-c listen_addresses=127.0.0.1", f"-k {self.root}", "-c max_connections=100"]
        if not self.fsync:
            options += ["-c fsync=off", "-c synchronous_commit=off", "-c full_page_writes=off"]
        options += list(self.extra)
        self._as_postgres(str(PG_BIN / "pg_ctl"), "-D", str(data), "-l", str(self.root / "server.log"),
                          "-o", " ".join(options), "-w", "-t", "60", "start")  # fmt: skip
        self._as_postgres(str(PG_BIN / "createdb"), "-h", "127.0.0.1", "-p", str(self.port), "-U", "postgres",
                          self.database)  # fmt: skip
        return self

    def stop(self) -> None:
        if self.root is None:
            return
        try:
            self._as_postgres(str(PG_BIN / "pg_ctl"), "-D", str(self.root / "data"), "-m", "fast", "-w", "stop")
        except subprocess.CalledProcessError:
            pass  # never started, or already gone; the directory still goes
        finally:
            shutil.rmtree(self.root, ignore_errors=True)
            self.root = None

    def __enter__(self) -> PostgresCluster:
        try:
            return self.start()
        except BaseException:
            self.stop()
            raise

    def __exit__(self, *exc) -> None:
        self.stop()


@pytest.fixture(scope="session")
def pg_url() -> Iterator[str]:
    """postgres://... of a fresh cluster and database, stopped and removed after the session."""
    with PostgresCluster() as cluster:
        yield cluster.url


def django_env(url: str, data_dir: str | os.PathLike) -> dict[str, str]:
    """Environment for a subprocess running GUARDiA against this PostgreSQL database."""
    env = dict(os.environ)
    env.update(GUARDIA_DATABASE_URL=url, GUARDIA_DATA_DIR=str(data_dir), GUARDIA_DEBUG="false",
               GUARDIA_CHANNEL_LAYER="memory", DJANGO_SETTINGS_MODULE="guardia.settings")  # fmt: skip
    return env
