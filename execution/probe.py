"""The TCP probe: does anything accept a connection on host:port within the timeout.

Standard library only, and nothing else in execution is imported by it, so the sshd testbed
(which runs without Django settings) probes its ports with the same function the health
checks use.
"""

from __future__ import annotations

import socket


def port_open(host: str, port: int, timeout: float = 0.5) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False
