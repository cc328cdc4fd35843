"""Tests wait on conditions, not on fixed sleeps: one polling helper and the waits built on it
(and the free port a child process is started on, before waiting for it to listen).

A fixed sleep is either too short on a loaded machine (a flaky test) or too long everywhere
(a slow one). ``wait_until`` returns as soon as the condition holds and fails with a message
naming what was awaited when it does not hold in time.
"""

from __future__ import annotations

import socket
import subprocess
import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


class WaitTimeout(AssertionError):
    """The awaited condition did not hold in time."""


def wait_until(predicate: Callable[[], T], timeout: float = 10.0, interval: float = 0.05, *, message: str = "") -> T:
    """Call ``predicate`` every ``interval`` seconds until it returns a true value, and return
    that value; raise WaitTimeout after ``timeout`` seconds. The predicate may raise to stop
    waiting early (the process it waits for has exited, say)."""
    deadline = time.monotonic() + timeout
    while True:
        result = predicate()
        if result:
            return result
        if time.monotonic() >= deadline:
            raise WaitTimeout(message or f"condition not met within {timeout} s")
        time.sleep(interval)


def free_port() -> int:
    """A loopback TCP port nothing listens on right now (for a child process to bind)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for_port(
    port: int, proc: subprocess.Popen | None = None, timeout: float = 30.0, host: str = "127.0.0.1"
) -> None:
    """Wait until something listens on ``host:port``; fail at once if ``proc`` (the child
    that should open it) has exited."""

    def listening() -> bool:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"{proc.args!r} exited with {proc.returncode} before listening on {port}")
        with socket.socket() as sock:
            return sock.connect_ex((host, port)) == 0

    wait_until(listening, timeout, message=f"nothing listening on {host}:{port} after {timeout} s")
