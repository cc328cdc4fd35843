"""django-q2 entry points (thin: the work is in services)."""

from __future__ import annotations

from . import services


def verify_chain_scheduled() -> dict:
    """Daily at 00:00: verify the chain; a break raises the alarm (services.run_verification)."""
    return services.run_verification(None, source="schedule").as_dict()


def hourly_checkpoint() -> int | None:
    checkpoint = services.hourly_checkpoint()
    return checkpoint.seq if checkpoint else None
