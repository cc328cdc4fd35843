"""Check an inclusion proof for one task's entries: no Django, no database, only the public key.

A proof (audit.proofs builds it; layout in docs/audit.md "Inclusion proofs") shows that the
task's entries, byte for byte, sit in their institution's sub-chain, that the sub-chain
reaches a head, that the head is a leaf under the Merkle root, and that the root is signed
in a version 2 checkpoint. The first problem is named (which entry, which institution).
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from hashlib import sha256
from pathlib import Path
from typing import Any

from . import canonical as canon
from . import merkle, signing

FORMAT = "guardia-audit-proof/1"


class ProofProblem(Exception):
    """What broke, in words an auditor can act on."""


@dataclass
class ProofCheck:
    ok: bool = True
    task: str = ""
    entries: list[int] = field(default_factory=list)
    institutions: list[str] = field(default_factory=list)
    checkpoint_seq: int | None = None
    problem: str = ""
    seconds: float = 0.0

    def message(self) -> str:
        if not self.ok:
            return f"FAILED: {self.problem}"
        names = ", ".join(repr(n) for n in self.institutions)
        return (
            f"OK: {len(self.entries)} entries of task {self.task} are in the sub-chain of institution {names} "
            f"under the Merkle root signed at checkpoint seq {self.checkpoint_seq}"
        )


def _hex64(value: Any, what: str) -> str:
    if not isinstance(value, str) or len(value) != 64 or any(c not in "0123456789abcdef" for c in value):
        raise ProofProblem(f"{what} is not a 64-character lowercase hex hash")
    return value


def _checkpoint(cp: Any, public_key) -> tuple[int, str]:
    if not isinstance(cp, dict) or not cp.get("merkle_root"):
        raise ProofProblem("the proof's checkpoint carries no Merkle root")
    try:
        message = signing.checkpoint_message(int(cp["seq"]), str(cp["entry_hash"]), str(cp["time"]),
                                             _hex64(cp["merkle_root"], "checkpoint merkle_root"))  # fmt: skip
    except (KeyError, TypeError, ValueError) as exc:
        raise ProofProblem(f"checkpoint is malformed ({exc})") from exc
    if not signing.verify(public_key, str(cp.get("signature", "")), message):
        raise ProofProblem(f"checkpoint at seq {cp['seq']}: signature does not verify with this public key")
    return int(cp["seq"]), cp["merkle_root"]


def _subchain(sub: dict, task: str, cp_seq: int, root: str) -> list[int]:
    """Walk one institution's segment to its head and the head up the Merkle path; the task's seqs."""
    inst = sub.get("institution")
    if not isinstance(inst, str):
        raise ProofProblem("a sub-chain has no institution name")
    label = f"sub-chain of institution {inst!r}"
    head = _hex64(sub.get("start_head"), f"{label}: start_head")
    count = sub.get("start_count")
    if type(count) is not int or count < 0:
        raise ProofProblem(f"{label}: start_count is not a non-negative integer")
    shown, last_seq = [], 0
    for item in sub.get("segment") or []:
        if not isinstance(item, dict):
            raise ProofProblem(f"{label}: a segment item is not an object")
        seq, digest = item.get("seq"), _hex64(item.get("entry_hash"), f"{label}: entry_hash of seq {item.get('seq')}")
        if type(seq) is not int or seq <= last_seq or seq > cp_seq:
            raise ProofProblem(f"{label}: seq {seq!r} is out of order or beyond the checkpoint")
        if "canonical" in item:
            text = str(item["canonical"]).encode("utf-8")
            prev = _hex64(item.get("prev_hash"), f"entry seq {seq}: prev_hash")
            if sha256(text + prev.encode()).hexdigest() != digest:
                raise ProofProblem(
                    f"entry seq {seq}: its canonical bytes do not hash to its entry_hash (content changed)"
                )
            try:
                entry = canon.parse(text)
            except ValueError as exc:
                raise ProofProblem(f"entry seq {seq}: not a canonical entry ({exc})") from exc
            if (entry["seq"], entry["task"], entry["institution"]) != (seq, task, inst):
                raise ProofProblem(f"entry seq {seq}: its hashed seq/task/institution do not match the proof")
            shown.append(seq)
        head, count, last_seq = merkle.sub_hash(digest, head), count + 1, seq
    if (head, count) != (sub.get("head"), sub.get("count")):
        raise ProofProblem(f"{label}: the segment does not lead to the stated head and count (an entry hash changed)")
    try:
        reached = merkle.root_from_path(merkle.leaf_hash(inst, count, head), sub.get("path") or [])
    except (KeyError, TypeError, ValueError) as exc:
        raise ProofProblem(f"{label}: Merkle path is malformed ({exc})") from exc
    if reached != root:
        raise ProofProblem(f"{label}: the Merkle path does not lead to the signed root")
    return shown


def check_proof(proof: Any, public_key) -> ProofCheck:
    started = time.perf_counter()
    check = ProofCheck()
    try:
        if not isinstance(proof, dict) or proof.get("format") != FORMAT:
            raise ProofProblem("not a GUARDiA audit inclusion proof")
        check.task = task = str(proof.get("task", ""))
        cp_seq, root = _checkpoint(proof.get("checkpoint"), public_key)
        check.checkpoint_seq = cp_seq
        shown: list[int] = []
        for sub in proof.get("subchains") or []:
            if not isinstance(sub, dict):
                raise ProofProblem("a sub-chain is not an object")
            shown += _subchain(sub, task, cp_seq, root)
            check.institutions.append(sub["institution"])
        claimed = proof.get("entries")
        if not claimed or sorted(shown) != claimed:
            raise ProofProblem(f"the proof lists entries {claimed!r} but proves {sorted(shown)!r}")
        check.entries = claimed
    except ProofProblem as exc:
        check.ok, check.problem = False, str(exc)
    check.seconds = time.perf_counter() - started
    return check


def check_proof_file(path: str | Path, public_key) -> ProofCheck:
    try:
        proof = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        return ProofCheck(ok=False, problem=f"unreadable proof file: {exc}")
    return check_proof(proof, public_key)


def is_proof_file(path: str | Path) -> bool:
    """A proof starts with its format member; exports start with a header line or a CSV BOM."""
    with Path(path).open("rb") as fh:
        return b'"format": "guardia-audit-proof/' in fh.read(80).replace(b'":"', b'": "')
