"""Verify an export file offline: needs only the file and the auditor's copy of the public key."""

from __future__ import annotations

from audit import offline
from audit.offline_command import OfflineCheckCommand


class Command(OfflineCheckCommand):
    help = "Verify a CSV or JSON Lines audit export against the Ed25519 public key (no database used)."
    file_help = "the export (.csv or .jsonl)"

    def check_file(self, path, key):
        return offline.verify_export(path, key)

    def success_line(self, check) -> str:
        return f"{check.message()} [{check.format}, {check.seconds:.2f} s]"
