"""Real processes for cross-process tests: Redis, Daphne and the django-q2 cluster.

Each helper records the server's own PID (not a wrapper shell's), checks the port is
free first, and the fixtures stop what they started (a stale Daphne keeps the port).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from contextlib import contextmanager
from pathlib import Path

from tests.waiting import free_port, wait_for_port

ROOT = Path(__file__).resolve().parent.parent


def stop(proc: subprocess.Popen, timeout: float = 10.0) -> None:
    if proc.poll() is not None:
        return
    try:
        os.killpg(proc.pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout)


def start(args: list[str], output, env: dict[str, str] | None = None) -> subprocess.Popen:
    """A child run from the repository in a session of its own (stop() signals its whole
    group), stdout and stderr both to ``output`` (a file or subprocess.DEVNULL)."""
    return subprocess.Popen(args, cwd=ROOT, env=env, stdout=output, stderr=subprocess.STDOUT, start_new_session=True)


@contextmanager
def listening(args: list[str], port: int, output, env: dict[str, str] | None = None, timeout: float = 30):
    """start() a server and return once it accepts connections on ``port``; stop it on the way out."""
    proc = start(args, output, env)
    try:
        wait_for_port(port, proc, timeout=timeout)
        yield proc
    finally:
        stop(proc)


@contextmanager
def redis_server():
    """A throwaway loopback redis-server; yields its URL."""
    port = free_port()
    args = ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
    with listening(args, port, subprocess.DEVNULL, timeout=20):
        yield f"redis://127.0.0.1:{port}/0"


def service_env(database_url: str, redis_url: str, **extra: str) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        {
            "GUARDIA_DATABASE_URL": database_url,
            "GUARDIA_REDIS_URL": redis_url,
            "GUARDIA_CHANNEL_LAYER": "redis",
            "PYTHONUNBUFFERED": "1",
            **extra,
        }
    )
    return env


def sqlite_child_env(**extra: str) -> dict[str, str]:
    """The environment for a child process (Daphne, manage.py) on this test's SQLite database
    with the in-memory channel layer."""
    from django.conf import settings

    return dict(
        os.environ,
        GUARDIA_DATABASE_URL=f"sqlite:///{settings.DATABASES['default']['NAME']}",
        GUARDIA_CHANNEL_LAYER="memory",
        PYTHONUNBUFFERED="1",
        **extra,
    )


@contextmanager
def daphne(env: dict[str, str], log_path: Path):
    port = free_port()
    args = [sys.executable, "-m", "daphne", "-b", "127.0.0.1", "-p", str(port), "guardia.asgi:application"]
    with open(log_path, "wb") as log, listening(args, port, log, env):
        yield f"127.0.0.1:{port}"


def kill_group(proc: subprocess.Popen) -> None:
    """SIGKILL the whole process group at once (a cluster, its sentinel and every worker), as a
    dying host would."""
    if proc.poll() is None:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        proc.wait(10)


@contextmanager
def qcluster(env: dict[str, str], log_path: Path, *, append: bool = False, kill: bool = False):
    """`manage.py qcluster` in its own process group. append: add to the log of an earlier
    cluster; kill: SIGKILL the group on the way out instead of stopping it cleanly."""
    with open(log_path, "ab" if append else "wb") as log:
        proc = start([sys.executable, "manage.py", "qcluster"], log, env)
    try:
        yield proc
    finally:
        if kill:
            kill_group(proc)
        else:
            stop(proc, timeout=20)
