"""Real-sshd testbed on loopback (seed 12.1 stage 3). See docs/testbed.md."""

from __future__ import annotations

from .core import FAULTS, INITIAL_APP, Testbed, TestbedError

__all__ = ["FAULTS", "INITIAL_APP", "Testbed", "TestbedError"]
