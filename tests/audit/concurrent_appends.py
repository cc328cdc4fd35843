"""N threads each appending M entries at once; used by the tests (SQLite in-process,
PostgreSQL in a subprocess: ``python -m tests.audit.concurrent_appends THREADS PER_THREAD``
with GUARDIA_DATABASE_URL set) and by bench/audit_append.py."""

from __future__ import annotations

import json
import sys
import threading
import time


def hammer(threads: int, per_thread: int) -> dict:
    """Run the writers; return latencies summary and the chain facts needed by the asserts."""
    from django.db import connection

    import audit
    from audit.models import AuditEntry

    barrier = threading.Barrier(threads)
    latencies: list[float] = []
    errors: list[str] = []
    lock = threading.Lock()

    def writer(n: int) -> None:
        mine = []
        try:
            barrier.wait()
            for i in range(per_thread):
                t0 = time.perf_counter()
                audit.record(f"writer-{n}", "test.concurrent", task=f"T{n}", payload={"i": i, "institution": "CONC"})
                mine.append(time.perf_counter() - t0)
        except Exception as exc:  # reported to the caller, which fails the run
            errors.append(f"{type(exc).__name__}: {exc}")
        finally:
            connection.close()
            with lock:
                latencies.extend(mine)

    started = time.perf_counter()
    pool = [threading.Thread(target=writer, args=(n,)) for n in range(threads)]
    for t in pool:
        t.start()
    for t in pool:
        t.join()
    elapsed = time.perf_counter() - started
    latencies.sort()
    seqs = list(AuditEntry.objects.filter(action="test.concurrent").values_list("seq", flat=True))
    links = AuditEntry.objects.order_by("seq").values_list("seq", "prev_hash", "entry_hash")
    forks, prev = 0, None
    for _seq, prev_hash, entry_hash in links.iterator(chunk_size=5000):
        if prev is not None and prev_hash != prev:
            forks += 1
        prev = entry_hash
    return {
        "errors": errors,
        "count": len(seqs),
        "distinct_seq": len(set(seqs)),
        "min_seq": min(seqs) if seqs else None,
        "max_seq": max(seqs) if seqs else None,
        "forks": forks,
        "seconds": elapsed,
        "rate": len(latencies) / elapsed if elapsed else 0,
        "p50_ms": latencies[len(latencies) // 2] * 1000 if latencies else 0,
        "p99_ms": latencies[int(len(latencies) * 0.99)] * 1000 if latencies else 0,
    }


def main() -> None:
    import django

    django.setup()
    from audit.verify import verify_chain

    threads, per_thread = int(sys.argv[1]), int(sys.argv[2])
    result = hammer(threads, per_thread)
    report = verify_chain()
    result.update(verify_ok=report.ok, verify=report.message(), vendor=__import__("django.db").db.connection.vendor)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
