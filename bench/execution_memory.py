"""Where the worker's memory goes during execution_scale.py's runs (its --memory option).

A sampling thread reads, every SAMPLE_SECONDS: the process's resident memory (/proc/self/status
VmRSS, of it RssAnon), glibc's heap (mallinfo2: bytes in use, free in the arenas, mmapped
blocks), Python's own allocated blocks (sys.getallocatedblocks), the threads alive and, of them,
paramiko's connection threads (one per open SSH connection). Each sample is tagged with the phase
and the rolling group under way (Engine.run_group wrapped), so the report says WHEN the peak
happens and roughly WHAT holds it: Python objects, C heap (OpenSSL, buffers), free heap
fragments, or thread stacks. With --memory-trace, tracemalloc also runs and a snapshot is taken
whenever the resident memory passes its previous snapshot by TRACE_STEP_MB; the last one (the
peak's) is summarised by traceback. tracemalloc slows the run and adds its own memory: its RSS
figures are not the worker's.
"""

from __future__ import annotations

import ctypes
import sys
import threading
import time
import tracemalloc
from dataclasses import dataclass, field

SAMPLE_SECONDS = 0.02
TRACE_STEP_MB = 2.0
MB = 1024 * 1024


class _Mallinfo2(ctypes.Structure):
    _fields_ = [
        (name, ctypes.c_size_t)
        for name in ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks", "fordblks")
    ] + [("keepcost", ctypes.c_size_t)]


try:
    _mallinfo2 = ctypes.CDLL(None).mallinfo2
    _mallinfo2.restype = _Mallinfo2
except (OSError, AttributeError):  # not glibc 2.33+
    _mallinfo2 = None


def _status() -> dict[str, float]:
    values = {}
    with open("/proc/self/status") as status:
        for row in status:
            key, _, rest = row.partition(":")
            if key in ("VmRSS", "VmHWM", "RssAnon", "RssFile", "Threads"):
                values[key] = int(rest.split()[0]) / (1 if key == "Threads" else 1024)
    return values


@dataclass
class Sample:
    at: float
    phase: str
    group: str
    rss: float  # MB
    hwm: float  # the kernel's high-water mark (reset at each phase's start)
    anon: float
    heap_used: float  # malloc'd, in use (arenas + mmapped blocks), MB
    heap_free: float  # free in the arenas, not returned to the kernel
    mmapped: float
    py_blocks: int
    threads: int
    connections: int


@dataclass
class MemorySampler:
    phase: str = "set-up"
    group: str = "-"
    samples: list[Sample] = field(default_factory=list)
    trace: bool = False
    snapshot: tracemalloc.Snapshot | None = None
    snapshot_rss: float = 0.0
    snapshot_at: str = ""

    def start(self) -> None:
        if self.trace:
            tracemalloc.start(12)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="memory-sampler", daemon=True)
        self._thread.start()
        self._wrap_groups()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()

    def _wrap_groups(self) -> None:
        from execution.engine import Engine

        run_group = Engine.run_group
        sampler = self

        def tagged(engine, group, *args, **kwargs):
            sampler.group = f"{group.index} ({len(group.servers)})"
            try:
                return run_group(engine, group, *args, **kwargs)
            finally:
                sampler.group = f"after {group.index}"

        Engine.run_group = tagged  # type: ignore[method-assign]
        from governance import control, plans

        for owner, name in (
            (control, "execution_started"),
            (plans, "render_plan"),
            (plans, "plan_sha256"),
            (Engine, "_finish"),
            (Engine, "_summary"),
            (Engine, "_package"),
            (control, "execution_finished"),
            (control, "execution_failed"),
        ):
            setattr(owner, name, self._tag(getattr(owner, name), name))

    def _tag(self, fn, label: str):
        """``fn`` with the samples taken while it runs tagged ``label`` (as a group is)."""
        sampler = self

        def tagged(*args, **kwargs):
            before, sampler.group = sampler.group, label
            try:
                return fn(*args, **kwargs)
            finally:
                sampler.group = before

        return tagged

    def _connections(self) -> int:
        import paramiko

        return sum(1 for t in threading.enumerate() if isinstance(t, paramiko.Transport))

    def _run(self) -> None:
        while not self._stop.wait(SAMPLE_SECONDS):
            status = _status()
            info = _mallinfo2() if _mallinfo2 is not None else None
            used = (info.uordblks + info.hblkhd) / MB if info else 0.0
            sample = Sample(
                time.monotonic(),
                self.phase,
                self.group,
                status["VmRSS"],
                status["VmHWM"],
                status.get("RssAnon", 0.0),
                used,
                info.fordblks / MB if info else 0.0,
                info.hblkhd / MB if info else 0.0,
                sys.getallocatedblocks(),
                int(status["Threads"]),
                self._connections(),
            )
            self.samples.append(sample)
            if self.trace and sample.rss >= self.snapshot_rss + TRACE_STEP_MB:
                self.snapshot = tracemalloc.take_snapshot()
                self.snapshot_rss = _status()["VmRSS"]
                self.snapshot_at = f"{sample.phase}, group {sample.group}"

    def report(self) -> None:
        """Per phase: the sample with the highest RSS and what it held, and the group profile."""
        phases: dict[str, list[Sample]] = {}
        for s in self.samples:
            phases.setdefault(s.phase, []).append(s)
        print("\nworker memory by phase (MB; heap = glibc malloc in use / free in its arenas / mmapped):")
        for name, rows in phases.items():
            top = max(rows, key=lambda s: s.rss)
            # The high-water mark catches what a sample missed: the first sample that saw it.
            high = next(s for s in rows if s.hwm >= rows[-1].hwm)
            print(
                f"  [{name}] high-water mark {high.hwm:.0f} MB, first seen in group {high.group} at "
                f"{high.at - rows[0].at:.1f} s (RSS then {high.rss:.0f}, heap {high.heap_used:.0f}, "
                f"Python blocks {high.py_blocks:,}, SSH connections {high.connections})"
            )
            print(
                f"    highest sample: RSS {top.rss:.0f} (anon {top.anon:.0f}) in group {top.group} at "
                f"{top.at - rows[0].at:.1f} s of {rows[-1].at - rows[0].at:.1f} s: heap {top.heap_used:.0f} / "
                f"{top.heap_free:.0f} / {top.mmapped:.0f}, Python blocks {top.py_blocks:,}, threads {top.threads}, "
                f"SSH connections {top.connections}"
            )
            groups: dict[str, list[Sample]] = {}
            for s in rows:
                groups.setdefault(s.group, []).append(s)
            if len(groups) > 2:
                cells = []
                for group, members in groups.items():
                    high = max(members, key=lambda s: s.rss)
                    cells.append(f"{group}: {high.rss:.0f}/{high.heap_free:.0f}f/{high.connections}c")
                print("    by group (peak RSS / heap free / connections): " + "; ".join(cells))
        if self.snapshot is not None:
            self._summarise_snapshot()

    def _summarise_snapshot(self) -> None:
        assert self.snapshot is not None
        snap = self.snapshot.filter_traces([tracemalloc.Filter(False, tracemalloc.__file__)])
        total = sum(stat.size for stat in snap.statistics("filename"))
        print(f"\ntracemalloc at RSS {self.snapshot_rss:.0f} MB ({self.snapshot_at}): {total / MB:.1f} MB traced")
        for stat in snap.statistics("filename")[:12]:
            print(f"  {stat.size / MB:6.2f} MB {stat.count:8d} blocks  {stat.traceback[0].filename}")
        print("  by line:")
        for stat in snap.statistics("lineno")[:20]:
            frame = stat.traceback[0]
            print(f"  {stat.size / MB:6.2f} MB {stat.count:8d} blocks  {frame.filename}:{frame.lineno}")
        print("  by traceback (the largest five):")
        for stat in snap.statistics("traceback")[:5]:
            print(f"  {stat.size / MB:6.2f} MB {stat.count:8d} blocks")
            for line in stat.traceback.format(limit=6, most_recent_first=True):
                print("     " + line)
