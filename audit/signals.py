"""Signals the audit layer sends; other layers connect receivers (audit imports none of them)."""

from __future__ import annotations

from django.dispatch import Signal

# Sent with report=<verification report> when verification finds a break.
chain_broken = Signal()
