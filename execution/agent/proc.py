"""Running the agent, the build and the tests: a clean environment, an optional separate OS
user, a timeout that kills the whole process group, and a cap on the output kept.

Nothing of GUARDiA's environment reaches these processes: no settings, no database URL, no
vault key, no credentials. Only PATH, a locale, a HOME of the round's own, and the variable
names a site lists in ``AGENT_ENV_PASSTHROUGH`` (never ``GUARDIA_*`` or ``DJANGO_*``).
"""

from __future__ import annotations

import os
import pwd
import re
import signal
import subprocess
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from django.conf import settings

SAFE_PATH = "/usr/local/bin:/usr/bin:/bin"
_NEVER_PASSED = re.compile(r"^(GUARDIA_|DJANGO_)|(SECRET|PASSWORD|VAULT)", re.IGNORECASE)
CHUNK = 65536
# Output beyond the kept limit is read and dropped; a process that writes this many times
# the limit is killed as a runaway.
RUNAWAY_FACTOR = 64


@dataclass
class Ran:
    exit_code: int | None
    output: str
    truncated: bool
    timed_out: bool
    duration: float
    user: str
    runaway: bool = False  # killed for writing far more than the limit

    @property
    def ok(self) -> bool:
        return self.exit_code == 0 and not self.timed_out


def clean_env(home: Path) -> dict[str, str]:
    env = {"PATH": SAFE_PATH, "LANG": "C.UTF-8", "LC_ALL": "C.UTF-8", "HOME": str(home), "TMPDIR": str(home)}
    for name in getattr(settings, "AGENT_ENV_PASSTHROUGH", []):
        if name in os.environ and not _NEVER_PASSED.search(name):
            env[name] = os.environ[name]
    return env


def agent_account() -> pwd.struct_passwd | None:
    """The unprivileged account the agent, the build and the tests run as, when one is
    configured and GUARDiA may switch to it (it runs as root); else None: the current user."""
    name = getattr(settings, "AGENT_OS_USER", "")
    if not name or os.geteuid() != 0:
        return None
    try:
        return pwd.getpwnam(name)
    except KeyError:
        return None


def give_to(account: pwd.struct_passwd | None, *paths: Path) -> None:
    """Hand the round's worktree and home to the agent's account (recursively)."""
    if account is None:
        return
    for top in paths:
        for root, dirs, files in os.walk(top):
            for name in [*dirs, *files]:
                os.lchown(os.path.join(root, name), account.pw_uid, account.pw_gid)
        os.lchown(top, account.pw_uid, account.pw_gid)


def run_limited(
    argv: list[str], *, cwd: Path, home: Path, timeout: float, limit: int, account: pwd.struct_passwd | None = None
) -> Ran:
    """Run ``argv`` (no shell unless argv says so) and keep at most ``limit`` bytes of its
    combined output. On timeout the whole process group is killed."""
    started = time.monotonic()
    kwargs: dict = {}
    if account is not None:
        kwargs = {"user": account.pw_uid, "group": account.pw_gid, "extra_groups": []}
    try:
        process = subprocess.Popen(
            argv,
            cwd=cwd,
            env=clean_env(home),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            close_fds=True,
            umask=0o022,
            **kwargs,
        )
    except OSError as exc:
        return Ran(None, f"실행할 수 없습니다: {exc}", False, False, 0.0, account_name(account))
    kept = bytearray()
    state: dict[str, int | bool] = {"seen": 0}

    def read() -> None:
        assert process.stdout is not None
        while chunk := process.stdout.read1(CHUNK):  # type: ignore[attr-defined]
            state["seen"] += len(chunk)
            if len(kept) < limit:
                kept.extend(chunk[: limit - len(kept)])
            if state["seen"] > limit * RUNAWAY_FACTOR and not state.get("runaway"):
                state["runaway"] = True
                _kill(process)

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    timed_out = False
    try:
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        timed_out = True
        _kill(process)
        process.wait()
    reader.join(5)
    return Ran(
        exit_code=None if timed_out else process.returncode,
        output=kept.decode("utf-8", "replace"),
        truncated=state["seen"] > limit,
        timed_out=timed_out,
        duration=round(time.monotonic() - started, 3),
        user=account_name(account),
        runaway=bool(state.get("runaway")),
    )


def _kill(process: subprocess.Popen) -> None:
    try:
        os.killpg(process.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def account_name(account: pwd.struct_passwd | None) -> str:
    if account is not None:
        return account.pw_name
    try:
        return pwd.getpwuid(os.geteuid()).pw_name
    except KeyError:
        return str(os.geteuid())
