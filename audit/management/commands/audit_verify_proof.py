"""Verify an inclusion proof offline: needs only the proof file and the auditor's copy of the public key."""

from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError

from audit import proof_check, signing


class Command(BaseCommand):
    help = "Verify a task inclusion proof against the Ed25519 public key (no database used)."
    requires_system_checks: list = []
    requires_migrations_checks = False

    def add_arguments(self, parser):
        parser.add_argument("file", help="the proof (JSON, from audit_prove or GET /api/v1/audit/proof/<task>)")
        parser.add_argument("--public-key", required=True, help="PEM file (or base64 of the 32 raw bytes)")

    def handle(self, *args, **options):
        try:
            key = signing.load_public_key(options["public_key"])
        except (OSError, ValueError) as exc:
            raise CommandError(f"cannot read the public key: {exc}") from exc
        check = proof_check.check_proof_file(options["file"], key)
        if not check.ok:
            raise CommandError(check.message())
        self.stdout.write(check.message())
