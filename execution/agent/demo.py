"""The demo application's git repository: the one-page web app under demo_app/, committed
into a fresh repository (tests, the demo walk-through). Its build produces a real WAR that
the testbed's WAS stand-in serves, so a changed page is visible over HTTP after the deploy."""

from __future__ import annotations

import shutil
from pathlib import Path

from .git import git

DEMO_APP = Path(__file__).with_name("demo_app")
DEMO_SOURCE = {
    "ref": "main",
    "build_command": "python3 build.py",
    "test_command": "python3 test.py",
    "artifact_path": "dist/app.war",
    "deploy_name": "app.war",
    "scope": "src/\nVERSION",
}


def create_demo_repository(path: Path) -> Path:
    """A new git repository at ``path`` holding the demo application, one commit on main."""
    path = Path(path)
    shutil.copytree(DEMO_APP, path, ignore=shutil.ignore_patterns("__pycache__", "dist"))
    git("init", "--quiet", "--initial-branch=main", cwd=path)
    git("add", "--all", cwd=path)
    git("commit", "--quiet", "-m", "demo application 1.0.0", cwd=path)
    return path
