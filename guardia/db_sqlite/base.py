"""SQLite whose writers wait in line instead of in SQLite's busy-sleep lottery.

SQLite admits one writer. A writer that finds the lock taken sleeps in SQLite's busy
handler (1, 2, 5, 10 … 100 ms) and tries again: whoever happens to wake when the lock is free
wins, so under a burst one unlucky request can lose every round until its timeout and fail
with "database is locked", while later arrivals get through.

Here every write transaction (BEGIN IMMEDIATE, and a write statement outside a transaction)
first takes an exclusive flock on ``<database>.writelock``. A waiter blocks in the kernel
and is woken the moment the holder releases, in the kernel's queue order, so waits are bounded
by the work queued ahead, not by luck. (A writer arriving exactly as the lock is released
may take it first: a window of microseconds, not a lottery round of up to 100 ms.)
The wait is bounded by the connection's ``timeout`` option; past it the request fails with
"database is locked" before anything was written (the web tier answers 503 with
Retry-After, guardia.middleware.DatabaseBusyMiddleware).
Processes that do not use this backend still meet SQLite's own lock: nothing is weaker.
An in-memory database (one process) has no file to queue on and is used as is.
"""

from __future__ import annotations

import fcntl
import os
import threading

from django.db.backends.sqlite3 import base
from django.db.utils import OperationalError

WRITE_PREFIXES = ("INSERT", "UPDATE", "DELETE", "REPLACE")


class WriteQueue:
    """An exclusive cross-process lock on a file, with a timeout, waited for in a thread."""

    def __init__(self, path: str):
        self.path = path

    def acquire(self, timeout: float) -> int:
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # free: no thread, no wait
            return fd
        except BlockingIOError:
            pass
        except BaseException:
            os.close(fd)
            raise
        got = threading.Event()
        guard = threading.Lock()
        state = {"abandoned": False}

        def wait_in_line() -> None:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX)
            except OSError:
                os.close(fd)
                return
            with guard:
                if state["abandoned"]:  # the caller gave up meanwhile: pass the turn on
                    fcntl.flock(fd, fcntl.LOCK_UN)
                    os.close(fd)
                    return
                got.set()

        threading.Thread(target=wait_in_line, name="sqlite-write-queue", daemon=True).start()
        got.wait(timeout)
        with guard:
            if got.is_set():
                return fd
            state["abandoned"] = True
        raise OperationalError(f"database is locked (no write turn within {timeout:g} s)")

    @staticmethod
    def release(fd: int) -> None:
        try:
            fcntl.flock(fd, fcntl.LOCK_UN)
        finally:
            os.close(fd)


class DatabaseWrapper(base.DatabaseWrapper):
    _turn: int | None = None
    _queue: WriteQueue | None = None

    def get_new_connection(self, conn_params):
        connection = super().get_new_connection(conn_params)
        name = str(self.settings_dict["NAME"])
        self._queue = None if self.is_in_memory_db() or name.startswith("file:") else WriteQueue(f"{name}.writelock")
        self._timeout = float(self.settings_dict.get("OPTIONS", {}).get("timeout", 5))
        return connection

    def create_cursor(self, name=None):
        # One cursor class per connection wrapper, built at its first cursor (a cursor is
        # created for every statement; building the class each time cost seconds at scale).
        factory = self.__dict__.get("_cursor_factory")
        if factory is None:
            factory = self.__dict__["_cursor_factory"] = self._queued_cursor_class()
        return self.connection.cursor(factory=factory)

    def _queued_cursor_class(self) -> type:
        wrapper = self

        class QueuedCursor(base.SQLiteCursorWrapper):
            def execute(self, query, params=None):
                if wrapper._single_write(query):
                    with wrapper._write_turn():
                        return super().execute(query, params)
                return super().execute(query, params)

            def executemany(self, query, param_list):
                if wrapper._single_write(query):
                    with wrapper._write_turn():
                        return super().executemany(query, param_list)
                return super().executemany(query, param_list)

        return QueuedCursor

    # --- the turn ---------------------------------------------------------------------
    def _single_write(self, query) -> bool:
        """A write statement in autocommit mode (no transaction of ours holds the turn)."""
        return (
            self._queue is not None
            and self._turn is None
            and self.get_autocommit()
            and not self.in_atomic_block
            and isinstance(query, str)
            and query.lstrip()[:7].upper().startswith(WRITE_PREFIXES)
        )

    def _take_turn(self) -> None:
        if self._queue is not None and self._turn is None:
            self._turn = self._queue.acquire(self._timeout)

    def _give_turn(self) -> None:
        turn, self._turn = self._turn, None
        if turn is not None:
            WriteQueue.release(turn)

    def _write_turn(self):
        wrapper = self

        class Turn:
            def __enter__(self):
                wrapper._take_turn()

            def __exit__(self, *exc):
                wrapper._give_turn()

        return Turn()

    # --- transactions -----------------------------------------------------------------
    # The hooks below are private methods of Django's SQLite backend that django-stubs does
    # not declare; hence the targeted "type: ignore[misc]" on each super() call.
    def _start_transaction_under_autocommit(self):
        self._take_turn()
        try:
            super()._start_transaction_under_autocommit()  # type: ignore[misc]
        except BaseException:
            self._give_turn()
            raise

    def _commit(self):
        try:
            return super()._commit()  # type: ignore[misc]
        finally:
            self._give_turn()

    def _rollback(self):
        try:
            return super()._rollback()  # type: ignore[misc]
        finally:
            self._give_turn()

    def _close(self):
        try:
            return super()._close()  # type: ignore[misc]
        finally:
            self._give_turn()
