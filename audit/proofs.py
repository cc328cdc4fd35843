"""Build an inclusion proof for one task's entries (checked offline by audit.proof_check).

The proof holds the task's entries as their canonical bytes, each institution's sub-chain
segment from the task's first entry there to a signed version 2 checkpoint (other tasks'
entries in that segment appear as seq and entry_hash only, so their content is not
disclosed), the sub-chain head and count, the Merkle path from that leaf to the root, and
the signed checkpoint. Layout: docs/audit.md "Inclusion proofs".
"""

from __future__ import annotations

from typing import Any

from django.db import connection

from . import canonical as canon
from . import merkle, services, subchains
from .models import AuditCheckpoint, AuditEntry
from .proof_check import FORMAT

_SUBCHAIN = 'SELECT seq, entry_hash FROM "TB_AUDIT_LOG" WHERE institution = %s AND seq <= %s ORDER BY seq'


class ProofError(Exception):
    """No proof can be made (unknown task, or the record diverged from its signed checkpoint)."""


def _covering_checkpoint(last_seq: int) -> AuditCheckpoint:
    """The earliest version 2 checkpoint covering last_seq, signing one if none does."""
    cp = AuditCheckpoint.objects.exclude(merkle_root="").filter(seq__gte=last_seq).order_by("seq", "id").first()
    if cp is None:
        cp = services.create_checkpoint("proof")
    if cp is None or cp.seq < last_seq:
        raise ProofError("no checkpoint covers the task's last entry")
    return cp


def _segment(inst: str, cp_seq: int, first_seq: int, shown: dict[int, tuple[str, str]]) -> dict[str, Any]:
    head, count, start = merkle.GENESIS, 0, None
    segment: list[dict[str, Any]] = []
    with connection.cursor() as cursor:
        cursor.execute(_SUBCHAIN, [inst, cp_seq])
        while rows := cursor.fetchmany(5000):
            for seq, digest in rows:
                if seq == first_seq:
                    start = (head, count)
                if start is not None:
                    item: dict[str, Any] = {"seq": seq, "entry_hash": digest}
                    if seq in shown:
                        item["prev_hash"], item["canonical"] = shown[seq]
                    segment.append(item)
                head, count = merkle.sub_hash(digest, head), count + 1
    if start is None:
        raise ProofError(f"entry {first_seq} is missing from the sub-chain of institution {inst!r}")
    return {"institution": inst, "start_count": start[1], "start_head": start[0], "segment": segment,
            "count": count, "head": head}  # fmt: skip


def build_proof(task: str) -> dict[str, Any]:
    rows = list(
        AuditEntry.objects.filter(task=task)
        .order_by("seq")
        .values_list("seq", "institution", "prev_hash", "canonical")  # fmt: skip
    )
    if not rows:
        raise ProofError(f"no audit entries for task {task!r}")
    cp = _covering_checkpoint(rows[-1][0])
    leaves = subchains.trusted_leaves(cp)
    if leaves is None:
        raise ProofError(f"checkpoint at seq {cp.seq}: stored leaves do not match its signed root; run verification")
    index = {leaf[0]: i for i, leaf in enumerate(leaves)}
    by_inst: dict[str, dict[int, tuple[str, str]]] = {}
    for seq, inst, prev, text in rows:
        by_inst.setdefault(inst, {})[seq] = (prev, text)
    subs = []
    for inst, shown in sorted(by_inst.items()):
        sub = _segment(inst, cp.seq, min(shown), shown)
        if inst not in index or leaves[index[inst]] != (inst, sub["count"], sub["head"]):
            raise ProofError(f"the sub-chain of institution {inst!r} differs from the signed checkpoint at seq "
                             f"{cp.seq}; run verification")  # fmt: skip
        sub["leaf_index"], sub["leaf_count"] = index[inst], len(leaves)
        sub["path"] = merkle.audit_path(leaves, index[inst])
        subs.append(sub)
    checkpoint = {"seq": cp.seq, "entry_hash": cp.entry_hash, "time": canon.time_text(cp.created_at),
                  "key_id": cp.key_id, "signature": cp.signature, "reason": cp.reason,
                  "merkle_root": cp.merkle_root}  # fmt: skip
    return {"format": FORMAT, "task": task, "entries": [r[0] for r in rows], "checkpoint": checkpoint,
            "subchains": subs}  # fmt: skip


def prove(actor: Any, task: str) -> dict[str, Any]:
    """Build the proof and audit that it was handed out (after the proof's checkpoint)."""
    proof = build_proof(task)
    services.record(actor, "audit.proof", result_code="ok",
                    payload={"proof_task": task, "checkpoint_seq": proof["checkpoint"]["seq"],
                             "entries": len(proof["entries"])})  # fmt: skip
    return proof
