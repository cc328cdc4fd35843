"""Sub-chains and the Merkle root: what a checkpoint with a root costs.

    python bench/audit_merkle.py [N] [INSTITUTIONS]      # default 1,000,000 entries, 100 institutions

Seeds N entries over the institutions with version 1 checkpoints every 1,000 (a chain
written before the upgrade), then measures: the first version 2 checkpoint (heads rebuilt
from the first entry), a regular interval checkpoint (1,000 new entries since the previous
root), appends through audit.record with the root checkpoints inline, verification before
and after roots exist (sub-chain recomputation on), and one task's inclusion proof.
"""

from __future__ import annotations

import platform
import sys
import time

from audit_common import seed, setup

args = [a for a in sys.argv[1:] if a.isdigit()]
N = int(args[0]) if args else 1_000_000
INSTITUTIONS = int(args[1]) if len(args) > 1 else 100
setup()

from django.conf import settings

import audit
from audit import proof_check, proofs, services, signing, subchains
from audit.verify import verify_chain

print(f"{platform.node()}: {platform.python_implementation()} {platform.python_version()}, SQLite WAL; "
      "2-core Debian VM, shared with other test runs")  # fmt: skip
print(f"seeding {N:,} entries over {INSTITUTIONS} institutions (v1 checkpoints every 1,000) ... "
      f"{seed(N, institutions=INSTITUTIONS):.1f} s")  # fmt: skip

report = verify_chain()
assert report.ok, report.message()
print(f"verify, v1 checkpoints only (no sub-chain work): {report.seconds:.2f} s = {report.rate:,.0f}/s")

started = time.perf_counter()
cp = services.create_checkpoint("manual")
first = time.perf_counter() - started
print(f"first v2 checkpoint after the upgrade (heads rebuilt from {cp.seq:,} entries, {INSTITUTIONS} leaves): "
      f"{first * 1000:,.0f} ms")  # fmt: skip

# Appends through audit.record; every 1,000th signs an interval checkpoint inline. "before"
# swaps in the version 1 signer (no root) for comparison; blocks alternate because the
# machine's load swings (the append path itself is unchanged: only the checkpoint differs).
settings.AUDIT_CHECKPOINT_EVERY = 1000
v2_signer = services._sign_checkpoint


def v1_signer(seq: int, entry_hash: str, reason: str):
    now = services.timezone.now()
    kid, sig = signing.sign(signing.checkpoint_message(seq, entry_hash, services.canon.time_text(now)))
    cp = services.AuditCheckpoint(seq=seq, entry_hash=entry_hash, created_at=now, key_id=kid, signature=sig,
                                  reason=reason)  # fmt: skip
    cp.save()
    return cp


rates: dict[str, list[float]] = {"before (v1 checkpoints)": [], "after (v2, with root)": []}
for block in range(4):
    label = list(rates)[block % 2]
    services._sign_checkpoint = v1_signer if block % 2 == 0 else v2_signer
    started = time.perf_counter()
    for i in range(2000):
        audit.record("bench", "bench.append", task=f"OPS-BENCH-{i % 7}", command=f"echo {i}",
                     payload={"institution": f"I{i % INSTITUTIONS:03d}"})  # fmt: skip
    rates[label].append(2000 / (time.perf_counter() - started))
services._sign_checkpoint = v2_signer
for label, values in rates.items():
    print(f"appends via audit.record, SQLite, 1 writer, {label}: " + ", ".join(f"{r:,.0f}/s" for r in values))

for i in range(999):
    audit.record("bench", "bench.append", payload={"institution": f"I{i % INSTITUTIONS:03d}"})
head = services.ChainHead.objects.get(id=1).seq
started = time.perf_counter()
leaves = subchains.leaves_at(head)
scan = time.perf_counter() - started
started = time.perf_counter()
cp = services.create_checkpoint("manual")
regular = time.perf_counter() - started
print(f"regular checkpoint at seq {cp.seq:,} ({INSTITUTIONS} leaves, entries since the previous root scanned): "
      f"{regular * 1000:.1f} ms (of which heads {scan * 1000:.1f} ms)")  # fmt: skip

for i in range(20):
    audit.record("bench", "bench.task", task="OPS-PROOF-1", command=f"step {i}", payload={"institution": "I007"})
started = time.perf_counter()
proof = proofs.build_proof("OPS-PROOF-1")
built = time.perf_counter() - started
check = proof_check.check_proof(proof, signing.own_public_key())
assert check.ok, check.message()
sub = proof["subchains"][0]
print(f"inclusion proof for 20 entries: built in {built * 1000:.0f} ms (signs a checkpoint), "
      f"segment {len(sub['segment'])} entries, path {len(sub['path'])} steps; checked offline in "
      f"{check.seconds * 1000:.1f} ms")  # fmt: skip

report = verify_chain()
assert report.ok, report.message()
print(f"verify with root checkpoints (sub-chains recomputed, {report.checkpoints:,} signatures): "
      f"{report.entries:,} entries in {report.seconds:.2f} s = {report.rate:,.0f}/s")  # fmt: skip
