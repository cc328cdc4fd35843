"""Write an inclusion proof for one task's audit entries (checked offline by audit_verify_proof)."""

from __future__ import annotations

import json
from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from audit import proofs


class Command(BaseCommand):
    help = "Write a JSON inclusion proof for one task's entries: sub-chain segment, Merkle path, signed checkpoint."

    def add_arguments(self, parser):
        parser.add_argument("task", help="the task id, e.g. OPS-20260101-001")
        parser.add_argument("--out", required=True, help="where to write the proof (JSON)")

    def handle(self, *args, **options):
        try:
            proof = proofs.prove("manage.py audit_prove", options["task"])
        except proofs.ProofError as exc:
            raise CommandError(str(exc)) from exc
        Path(options["out"]).write_text(json.dumps(proof, ensure_ascii=False, indent=1) + "\n", encoding="utf-8")
        self.stdout.write(f"wrote {options['out']}: {len(proof['entries'])} entries, checkpoint seq "
                          f"{proof['checkpoint']['seq']}")  # fmt: skip
