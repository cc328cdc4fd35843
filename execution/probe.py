"""The TCP probe: does anything accept a connection on host:port within the timeout.

Standard library only, and nothing else in execution is imported by it, so the sshd testbed
(which runs without Django settings) probes its ports with the same function the health
checks use.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Callable

# The port wait's schedule (wait_open): the first retry soon, then each pause 1.5 times the one
# before, never longer than WAIT_MAX, so a port that opens is seen within WAIT_MAX of opening
# while a slow start costs a few connects a second rather than one every few milliseconds.
WAIT_FIRST = 0.01
WAIT_MAX = 0.04
CONNECT_TIMEOUT = 0.5


class PortProbe:
    """host:port resolved once (getaddrinfo), then probed by connecting to what it resolved to,
    so a wait that connects many times asks the resolver once. A name that does not resolve yet
    is asked again at the next probe."""

    def __init__(self, host: str, port: int):
        self.host, self.port = host, port
        self.addresses: list[tuple[int, tuple]] = []

    def _resolve(self) -> list[tuple[int, tuple]]:
        if not self.addresses:
            try:
                found = socket.getaddrinfo(self.host, self.port, type=socket.SOCK_STREAM)
            except (OSError, UnicodeError):
                return []
            self.addresses = [(family, address) for family, _type, _proto, _name, address in found]
        return self.addresses

    def accepts(self, timeout: float = CONNECT_TIMEOUT) -> bool:
        """One connect to each resolved address until one accepts (then closed at once)."""
        for family, address in self._resolve():
            try:
                with socket.socket(family, socket.SOCK_STREAM) as sock:
                    sock.settimeout(timeout)
                    if sock.connect_ex(address) == 0:
                        return True
            except OSError:
                continue
        return False


def port_open(host: str, port: int, timeout: float = CONNECT_TIMEOUT) -> bool:
    """One look: does host:port accept a connection now (the same probe the wait repeats)."""
    return PortProbe(host, port).accepts(timeout=timeout)


def wait_open(host: str, port: int, seconds: float, sleep: Callable[[float], None] = time.sleep) -> bool:
    """True as soon as host:port accepts a connection, False once ``seconds`` have passed without
    it (the last probe made at the deadline, none after it). ``sleep`` waits between probes (the
    engine passes one that raises when the kill switch is pulled)."""
    probe = PortProbe(host, port)
    deadline = time.monotonic() + seconds
    pause = WAIT_FIRST
    while True:
        left = deadline - time.monotonic()
        if probe.accepts(timeout=min(CONNECT_TIMEOUT, max(0.05, left))):
            return True
        left = deadline - time.monotonic()
        if left <= 0:
            return False
        sleep(min(pause, left))
        pause = min(WAIT_MAX, pause * 1.5)
