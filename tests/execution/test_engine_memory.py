"""The engine's memory between groups: a closed connection's reference cycle is freed by the
collection after its group, not kept until a full collection happens to run."""

from __future__ import annotations

import gc
import weakref

from execution.engine import RunGarbage


class Connection:
    """A stand-in for a closed paramiko Transport: an object in a reference cycle with itself."""

    def __init__(self) -> None:
        self.handlers = {"close": self.close}

    def close(self) -> None:
        pass


def test_a_groups_cyclic_garbage_goes_at_the_groups_collection_and_the_freeze_ends_with_the_run():
    before = gc.get_freeze_count()
    with RunGarbage() as garbage:
        assert gc.get_freeze_count() > before  # what was alive at the start is not walked again
        gone = Connection()
        ref = weakref.ref(gone)
        del gone
        assert ref() is not None  # a cycle: reference counting alone does not free it
        garbage.collect()
        assert ref() is None
    assert gc.get_freeze_count() == before == 0


def test_what_an_earlier_run_left_uncollected_is_collected_before_the_freeze_not_kept_through_this_run():
    left = Connection()  # an earlier run's closed connection, a cycle no collection has reached yet
    ref = weakref.ref(left)
    del left
    assert ref() is not None
    with RunGarbage():
        # Frozen, it would be out of every collection's reach until the run ends.
        assert ref() is None


def test_a_run_inside_a_run_leaves_the_outer_freeze_alone():
    with RunGarbage() as outer:
        frozen = gc.get_freeze_count()
        # Frozen objects freed meanwhile leave the count (it can only shrink): the inner run
        # neither freezes again (it would grow) nor unfreezes (it would fall to 0).
        with RunGarbage() as inner:
            assert not inner.frozen and 0 < gc.get_freeze_count() <= frozen
        assert outer.frozen and 0 < gc.get_freeze_count() <= frozen
    assert gc.get_freeze_count() == 0


def resident_kib() -> int:
    with open("/proc/self/status") as status:
        return next(int(line.split()[1]) for line in status if line.startswith("VmRSS:"))


def test_the_memory_a_groups_garbage_freed_goes_back_to_the_kernel():
    """Freed blocks between blocks still in use stay resident in malloc's free lists until they
    are handed back; the collection after each group hands them back."""
    with RunGarbage() as garbage:
        blocks, kept = [], []
        for n in range(40_000):  # ~160 MB of malloc'ed blocks, each next to one that stays
            blocks.append(Connection())
            blocks[-1].payload = bytes(4096) + n.to_bytes(4, "big")
            kept.append(bytes(600) + n.to_bytes(4, "big"))
        del blocks
        before = resident_kib()
        garbage.collect()
        after = resident_kib()
    assert len(kept) == 40_000
    assert before - after > 100_000, (before, after)  # KiB: most of the ~160 MB went back
