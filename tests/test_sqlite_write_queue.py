"""SQLite writers take turns (guardia.db_sqlite): no "database is locked" for a burst that fits
in the timeout, waits bounded by the work queued ahead, and a clear failure past the timeout."""

from __future__ import annotations

import threading
import time
import uuid

import pytest
from django.contrib.sessions.models import Session
from django.db import OperationalError, connection, connections, transaction
from django.utils import timezone

from guardia.db_sqlite.base import DatabaseWrapper, WriteQueue

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def queued(sqlite_timeout):
    if not isinstance(connections["default"], DatabaseWrapper):
        pytest.skip("the write queue is the SQLite backend's")
    sqlite_timeout(3)


def writer(turns: int, hold: float, waits: list[float], errors: list[str]) -> None:
    try:
        for _ in range(turns):
            asked = time.monotonic()
            with transaction.atomic():
                waits.append(time.monotonic() - asked)
                Session.objects.create(session_key=uuid.uuid4().hex, session_data="x", expire_date=timezone.now())
                time.sleep(hold)  # a long transaction: the lock is held the whole time
            Session.objects.filter(session_data="never").delete()  # a write outside a transaction too
    except Exception as exc:  # any failure is the finding
        errors.append(repr(exc))
    finally:
        connections.close_all()


def test_a_burst_of_writers_all_get_their_turn(queued):
    writers, turns, hold = 8, 5, 0.05
    waits: list[float] = []
    errors: list[str] = []
    threads = [threading.Thread(target=writer, args=(turns, hold, waits, errors)) for _ in range(writers)]
    started = time.monotonic()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert Session.objects.count() == writers * turns
    # 40 turns of 50 ms: 2 s of work in all; nobody waited for more than the others' turns.
    assert time.monotonic() - started >= writers * turns * hold
    assert max(waits) < (writers - 1) * hold + 1.5, sorted(waits)[-5:]


def test_past_the_timeout_the_write_fails_before_writing(queued, tmp_path):
    holder = WriteQueue(f"{connection.settings_dict['NAME']}.writelock")
    turn = holder.acquire(1)
    connection.settings_dict["OPTIONS"]["timeout"] = 0.3
    connection.close()
    try:
        with pytest.raises(OperationalError, match="locked"), transaction.atomic():
            Session.objects.create(session_key="late", session_data="x", expire_date=timezone.now())
    finally:
        WriteQueue.release(turn)
    assert not Session.objects.filter(session_key="late").exists()
    Session.objects.create(session_key="now", session_data="x", expire_date=timezone.now())  # the turn is free again
