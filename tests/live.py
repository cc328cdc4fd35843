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


@contextmanager
def redis_server():
    """A throwaway loopback redis-server; yields its URL."""
    port = free_port()
    proc = subprocess.Popen(
        ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        wait_for_port(port, proc, timeout=20)
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        stop(proc)


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


@contextmanager
def daphne(env: dict[str, str], log_path: Path):
    port = free_port()
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "daphne", "-b", "127.0.0.1", "-p", str(port), "guardia.asgi:application"],
            cwd=ROOT,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        wait_for_port(port, proc, timeout=30)
        yield f"127.0.0.1:{port}"
    finally:
        stop(proc)


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
        proc = subprocess.Popen(
            [sys.executable, "manage.py", "qcluster"],
            cwd=ROOT,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        yield proc
    finally:
        if kill:
            kill_group(proc)
        else:
            stop(proc, timeout=20)
