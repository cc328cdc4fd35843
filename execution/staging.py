"""Work that runs beside the next steps of the same server: an upload (``put_behind``) and a
worker-side check (``check_beside``).

The transfer goes to the target's partial name on the connection's own SFTP channel while the
step supervisor runs the steps after it (a deploy's pre-check and backup); nothing is moved until
the playbook calls ``finish()``, which waits for the transfer, records it as its own step row (its
real start and end, so its interval overlaps those of the steps that ran meanwhile), and then
runs ``<name>-verify``: the server's SHA-256 compared and the file moved into place in one
command, a step row of its own. ``cancel()`` (a failed or stopped step before ``finish``) stops
the transfer and removes the partial file, so a server whose pre-check fails keeps nothing.

The kill switch reaches the transfer through the transport (SSHTransport.kill_running cancels
it between two chunks), and every step after it still passes the context's stop check.

``check_beside`` starts a check made from the worker (the HTTP health probe) on a pool thread
while the next remote step (the post-check) runs; ``finish()`` records it, with its own start
and end, and raises its failure.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

from django.utils.translation import gettext

from .errors import StepFailed
from .rolling import Aborted, Lost, Record

VERIFY_SUFFIX = "-verify"
_pool: ThreadPoolExecutor | None = None
_pool_lock = threading.Lock()


def submit(fn: Callable[[], Any]) -> Future:
    """``fn`` on the worker's shared pool of probe threads (HTTP and port probes: they wait on the
    network, not on the CPU)."""
    global _pool
    with _pool_lock:
        if _pool is None:
            _pool = ThreadPoolExecutor(max_workers=32, thread_name_prefix="guardia-probe")
        return _pool.submit(fn)


def record(ctx: Any, seq: int, name: str, state: str, output: str, started: float, ended: float, **extra) -> None:
    """One step row with its own number and clock (it may overlap the rows of the steps that ran
    meanwhile): what ServerContext records for a step, from the work that ran beside it."""
    data = {"seq": seq, "name": name, "phase": ctx.phase, "state": state, "output": output, "started": started}
    data["duration"] = max(0.0, ended - started)
    ctx.engine.records.put(Record("step", ctx.server.server_id, {**data, **extra}))


def check_beside(ctx: Any, name: str, fn: Callable[[], Any], plan: dict) -> Any:
    """``ctx.check(name, fn, plan)`` started now and collected by ``finish()`` after the steps run
    meanwhile (while planning: listed, and those steps marked as running at the same time)."""
    if ctx.planning:
        return ctx.check_beside(name, fn, plan)
    return CheckBeside(ctx, name, fn)


class CheckBeside:
    def __init__(self, ctx: Any, name: str, fn: Callable[[], Any]):
        ctx._guard()
        ctx.seq += 1
        self.ctx, self.name, self.seq = ctx, name, ctx.seq
        self.started = self.ended = time.time()

        def timed() -> Any:
            try:
                return fn()
            finally:
                self.ended = time.time()

        self.future = submit(timed)

    def finish(self, *, raise_failure: bool = True) -> Any:
        """Wait for the check and record it; its StepFailed is raised unless ``raise_failure`` is
        False (a step run meanwhile failed first: that failure is the one reported)."""
        ctx = self.ctx
        try:
            message = self.future.result()
        except StepFailed as exc:
            record(ctx, self.seq, self.name, "FAILED", exc.reason, self.started, self.ended)
            if raise_failure:
                raise
            return None
        if not ctx.quiet:
            record(ctx, self.seq, self.name, "OK", str(message or ""), self.started, self.ended)
        return message


def put_behind(ctx: Any, name: str, local: Any, remote: str) -> Any:
    """``ctx.put`` while the steps after it run: ``finish()`` on what it returns waits, records,
    checks and moves; ``cancel()`` stops it and removes what it wrote. While planning, the plan
    context lists it and marks the steps run before ``finish`` as running at the same time."""
    if ctx.planning:
        return ctx.put_behind(name, local, remote)
    return Behind(ctx, name, local, remote)


class Behind:
    def __init__(self, ctx: Any, name: str, local: Any, remote: str):
        self.ctx, self.name, self.remote = ctx, name, remote
        self.upload: Any = None
        self.recorded = self.done = False
        if ctx._already_done(name) is not None:
            return  # a resumed run found the file staged: the transfer and its check are not repeated
        ctx._guard()
        ctx.current_step = name
        transport = ctx.connect()
        # Its row is numbered where it starts, so the steps list in the order they began.
        ctx.seq += 1
        self.seq = ctx.seq
        self.upload = transport.start_put(str(local) if not isinstance(local, bytes) else local, remote)

    def _record(self, state: str, output: str, **extra: Any) -> None:
        upload = self.upload
        self.recorded = True
        command = f"sftp put {upload.partial} (beside the next steps; SHA-256 checked by {self.name}{VERIFY_SUFFIX})"
        ended = upload.ended or time.time()
        record(
            self.ctx, self.seq, self.name, state, output, upload.started, ended, command=command, audit=True, **extra
        )

    def finish(self) -> None:
        """Wait for the transfer, record it, then check its SHA-256 on the server and move it into
        place (``<name>-verify``). Raises like ServerContext.put (StepFailed, Lost, Aborted)."""
        from .transport import ConnectionLost, TransportError, UploadCancelled, hash_and_move

        upload, ctx = self.upload, self.ctx
        if upload is None or self.done:
            return
        try:
            digest = upload.wait()
        except (UploadCancelled, ConnectionLost, TransportError) as exc:
            self.done = True  # the transport removed the partial file (if it still could)
            if isinstance(exc, UploadCancelled):
                self._record("KILLED", str(exc))
                raise Aborted(ctx.engine.halt_reason or gettext("중지 요청")) from exc
            if isinstance(exc, ConnectionLost):
                self._record("LOST", str(exc))
                raise Lost(f"{self.name} 단계 중 {ctx.server.server_id} 연결이 끊겼습니다: {exc}") from exc
            self._record("FAILED", str(exc))
            raise StepFailed(self.name, f"{ctx.server.server_id}로 업로드 실패: {exc}") from exc
        self._record("OK", upload.partial, exit_code=0, sha256=digest)
        # From here a failure leaves the partial file to cancel(), which removes it.
        check = ctx.run(
            self.name + VERIFY_SUFFIX,
            hash_and_move(upload.partial, digest, self.remote),
            timeout=120,
            shell="/bin/sh",
        )
        try:
            ctx.transport.judge_hash(check, upload.partial, digest, moved=True)
        except TransportError as exc:
            raise StepFailed(self.name + VERIFY_SUFFIX, f"{ctx.server.server_id}로 업로드 실패: {exc}") from exc
        self.done = True

    def cancel(self) -> None:
        """Unless ``finish`` completed: stop the transfer, remove its partial file from the server,
        and record the transfer as stopped if ``finish`` had not recorded it."""
        upload = self.upload
        if upload is None or self.done:
            return
        self.done = True
        finished = upload.cancel()
        if not self.recorded:
            self._record("KILLED", f"{'전송 완료 후' if finished else '전송 중'} 취소: {upload.partial} 삭제")
