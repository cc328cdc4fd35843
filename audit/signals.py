"""Signals the audit app sends; other apps connect to them (audit imports no other app).

chain_broken(sender, report): verification found a break. `report` is an
audit.verify.VerifyReport (report.first_broken_seq, report.kind, report.detail). The
governance app engages the global stop (admin acknowledgement required) and alerts
admins and PMs.
"""

from __future__ import annotations

import django.dispatch

chain_broken = django.dispatch.Signal()
