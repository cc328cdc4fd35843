"""Verify an inclusion proof offline: needs only the proof file and the auditor's copy of the public key."""

from __future__ import annotations

from audit import proof_check
from audit.offline_command import OfflineCheckCommand


class Command(OfflineCheckCommand):
    help = "Verify a task inclusion proof against the Ed25519 public key (no database used)."
    file_help = "the proof (JSON, from audit_prove or GET /api/v1/audit/proof/<task>)"

    def check_file(self, path, key):
        return proof_check.check_proof_file(path, key)
