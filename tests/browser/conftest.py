"""Real-browser tests: Debian chromium through Playwright, and a real stack (redis-server, a
migrated file database, Daphne) started as child processes. The console's test-client page
tests are in tests/console/."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

from tests.browser.demo_stack import chromium_browser, demo_stack
from tests.waiting import free_port, wait_for_port

REPO = Path(__file__).resolve().parents[2]


# --- the cross-process stack for the browser test -------------------------------------
def stop_process(proc: subprocess.Popen) -> None:
    """Stop a child we started, by its own PID; escalate if it ignores SIGTERM."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)


@pytest.fixture
def live_stack(tmp_path):
    """redis-server + migrated SQLite file + seeded data + Daphne, each a child process of this test.

    The test talks to it only over HTTP/WebSocket, so pytest-django's test database is not used.
    """
    redis_port, http_port = free_port(), free_port()
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "guardia.settings",
        "GUARDIA_DATA_DIR": str(tmp_path / "data"),
        "GUARDIA_DATABASE_URL": f"sqlite:///{tmp_path / 'live.sqlite3'}",
        "GUARDIA_CHANNEL_LAYER": "redis",
        "GUARDIA_REDIS_URL": f"redis://127.0.0.1:{redis_port}/0",
        "GUARDIA_BASE_URL": f"http://127.0.0.1:{http_port}",
        "GUARDIA_DEBUG": "true",  # WhiteNoise then serves static files straight from the finders
        "GUARDIA_LOG_LEVEL": "WARNING",
    }
    children: list[subprocess.Popen] = []
    logs = tmp_path / "logs"
    logs.mkdir()
    try:
        redis = subprocess.Popen(
            ["redis-server", "--port", str(redis_port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
            stdout=open(logs / "redis.log", "wb"),
            stderr=subprocess.STDOUT,
        )
        children.append(redis)
        wait_for_port(redis_port, redis)
        subprocess.run(
            [sys.executable, "manage.py", "migrate", "--noinput", "-v", "0"], cwd=REPO, env=env, check=True, timeout=180
        )
        seeded = subprocess.run(
            [sys.executable, str(Path(__file__).with_name("seed_live.py"))],
            cwd=REPO,
            env=env,
            check=True,
            timeout=60,
            capture_output=True,
            text=True,
        )
        task_id, step_id = seeded.stdout.strip().splitlines()[-1].split()
        daphne = subprocess.Popen(
            [sys.executable, "-m", "daphne", "-b", "127.0.0.1", "-p", str(http_port), "guardia.asgi:application"],
            cwd=REPO,
            env=env,
            stdout=open(logs / "daphne.log", "wb"),
            stderr=subprocess.STDOUT,
        )
        children.append(daphne)
        wait_for_port(http_port, daphne)
        yield SimpleNamespace(
            base_url=f"http://127.0.0.1:{http_port}",
            task_id=task_id,
            step_id=int(step_id),
            password=SEED_PASSWORD,
            logs=logs,
            daphne=daphne,
        )
    finally:
        for proc in reversed(children):
            stop_process(proc)


SEED_PASSWORD = "Live-Test-pw-2026"


@pytest.fixture
def browser():
    with chromium_browser() as chromium:
        yield chromium


@pytest.fixture(scope="module")
def chromium():
    """One browser for a whole module (the demo-stack walkthroughs)."""
    with chromium_browser() as browser:
        yield browser


@pytest.fixture(scope="module")
def demo(request, tmp_path_factory):
    """The demo stack of tests/browser/demo_stack.py, one per module that asks for it."""
    with demo_stack(tmp_path_factory.mktemp(request.module.__name__.rpartition(".")[2])) as stack:
        yield stack
