"""The audit record. `audit.record(...)` is the one way anything is written to it.

This package imports none of the other apps: the record knows nothing of what it records.
"""

from __future__ import annotations

from typing import Any


def record(actor: Any, action: str, **fields: Any):
    """Append one entry to the hash chain; see audit.services.record for the contract."""
    from .services import record as _record

    return _record(actor, action, **fields)


def record_many(items: list[tuple[Any, str, dict[str, Any]]]):
    """Append (actor, action, record()'s fields) in order with one chain-head round; see audit.services."""
    from .services import record_many as _record_many

    return _record_many(items)
