"""Export timings for N entries (default 100,000): CSV, JSON Lines, PDF.

python bench/audit_export.py [N]
"""

from __future__ import annotations

import resource
import sys
import time

from audit_common import seed, setup

N = int(sys.argv[1]) if len(sys.argv) > 1 else 100_000
data_dir = setup()

from audit import exports

print(f"seeding {N} entries ... {seed(N):.1f} s")
for fmt in ("csv", "jsonl", "pdf"):
    path = data_dir / f"bench-export.{fmt}"
    started = time.perf_counter()
    with open(path, "wb") as fh:
        result = exports.write(fmt, exports.ExportFilter(), fh)
    elapsed = time.perf_counter() - started
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"export {fmt:5}: {result.count} entries in {elapsed:.1f} s ({path.stat().st_size / 1e6:.0f} MB; "
          f"process peak RSS so far {rss:.0f} MB; includes the pre-export chain verification)")  # fmt: skip
