"""Real-sshd testbed on loopback for development, tests and the demo (not installed in production)."""

from __future__ import annotations

from .core import FAULTS, INITIAL_APP, Testbed, TestbedError

__all__ = ["FAULTS", "INITIAL_APP", "Testbed", "TestbedError"]
