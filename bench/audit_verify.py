"""Verification rates: out of SQLite and from an export file, each beside the raw
chained-hashlib rate for the same records in the same run; plus 1M-entry peak memory.

    python bench/audit_verify.py [N]            # default 200000
    python bench/audit_verify.py 1000000 --memory
"""

from __future__ import annotations

import resource
import sys
import time

from audit_common import raw_chain_rate, seed, setup

N = int(sys.argv[1]) if len(sys.argv) > 1 and sys.argv[1].isdigit() else 200_000
data_dir = setup()

from audit import exports, offline, signing
from audit.models import AuditEntry
from audit.verify import verify_chain

print(f"seeding {N} entries ... {seed(N):.1f} s")
if "--memory" in sys.argv:
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    report = verify_chain()
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"verify {N}: {report.message()}")
    print(f"verify {N} entries from SQLite: {report.seconds:.2f} s = {report.rate:,.0f}/s; "
          f"peak RSS {rss:.0f} MB (process before verify {rss_before:.0f} MB)")  # fmt: skip
    sys.exit(0 if report.ok else 1)

sample = [t.encode() for t in AuditEntry.objects.order_by("seq").values_list("canonical", flat=True)]
ceiling = raw_chain_rate(sample)
del sample
report = verify_chain()
assert report.ok, report.message()
print(f"SQLite verify:  {report.rate:>10,.0f} entries/s  ({report.entries} in {report.seconds:.2f} s, "
      f"{report.checkpoints} signatures checked)")  # fmt: skip
print(f"raw ceiling:    {ceiling:>10,.0f} entries/s  (chained sha256 over the same canonical bytes in memory)")

path = data_dir / "bench-export.jsonl"
with open(path, "wb") as fh:
    exports.write("jsonl", exports.ExportFilter(), fh)
key = signing.own_public_key()
started = time.perf_counter()
check = offline.verify_export(path, key)
elapsed = time.perf_counter() - started
assert check.ok, check.message()
print(f"export verify:  {check.entries / elapsed:>10,.0f} entries/s  ({check.entries} in {elapsed:.2f} s, JSON Lines "
      f"{path.stat().st_size / 1e6:.0f} MB, incl. manifest digest and both signatures)")  # fmt: skip
csv_path = data_dir / "bench-export.csv"
with open(csv_path, "wb") as fh:
    exports.write("csv", exports.ExportFilter(), fh)
started = time.perf_counter()
check = offline.verify_export(csv_path, key)
elapsed = time.perf_counter() - started
assert check.ok, check.message()
print(f"CSV verify:     {check.entries / elapsed:>10,.0f} entries/s  (parses each row to compare the columns)")
