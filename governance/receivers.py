"""Reactions to other layers' signals (connected in apps.py)."""

from __future__ import annotations

from .control import engage_global_stop


def on_chain_broken(sender, report=None, **kwargs) -> None:
    """An audit-chain break stops all new execution until an admin acknowledges it (seed 4.1)."""
    summary = getattr(report, "summary", None) or str(report)
    engage_global_stop("audit-verifier", f"audit chain broken: {summary}", requires_ack=True)
