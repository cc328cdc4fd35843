"""The rolling engine: group by group, bounded parallelism, safety gate, rollback, kill switch.

Threads: the orchestrating thread (the one calling Engine.run) plans, waits, polls the
kill switch, and is the only one writing to the database (execution.recorder). A thread
pool of at most ``max_parallel`` workers runs the servers of the current group, each over
its own single SSH connection, kept open until the group is finished so a rollback reuses it.

Failure policy: the first failure halts the group at the next step boundary
and the whole group is restored, including servers that had already succeeded (TS-02);
optionally every earlier group too. A failed rollback is stop-the-world:
MANUAL_INTERVENTION_REQUIRED. A dropped connection is STATE_UNCERTAIN. The kill switch
kills the remote process group of running steps and restores the current group: ABORTED.
"""

from __future__ import annotations

import collections
import ctypes
import gc
import logging
import queue
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field

from django.conf import settings
from django.db import connections
from django.db.models import Q
from django.utils import timezone
from django.utils.translation import gettext

import audit
from cmdb import vault
from governance import events, reports
from governance.results import LOG_EXCERPT_CHARS, HealthCheck, ResultPackage, ServerResult, version_in

from .errors import ParameterError, Refused, SecurityViolation, StepFailed
from .healthcheck import Health
from .models import Execution, Outcome, ServerRun, StepResult
from .parameters import q
from .playbooks.base import Playbook
from .recorder import LiveSender, Recorder
from .rolling import Aborted, Group, Lost, Record, RolloutStrategy, ServerContext, gate_sample, plan_groups

log = logging.getLogger(__name__)
STOP_POLL_SECONDS = 0.1
# How often a parallel phase commits what its workers reported (Recorder.drain): every drain is a
# transaction with its chain-head round, step and server rows, and a hop for its live events,
# whether it carries one step or a hundred. A drain after every completion and every idle wake
# made 1,304 of them in a 1,000-server rolling deploy (2.4 ms of the orchestrating thread each
# beside what they carried); once an interval, 281. Only while at least DRAIN_WIDE workers report
# at once: with fewer, steps come slowly and a drain at every wake costs little, and a step is in
# the journal within a wake of its end (what recovery and the operator see of a lost worker). A
# worker waiting for its steps to be committed (ServerContext.journaled) waits up to this much longer.
DRAIN_SECONDS = 0.2
DRAIN_WIDE = 8
# Early connections of the next group at most (EXECUTION_PRECONNECT): an authenticated, idle
# paramiko connection holds ~30 KB here (100 of them: +3 MB), so a whole batch of 10 % of 1,000
# servers fits; the bound is for sites with far larger batches.
PRECONNECT_LIMIT = 256
LOG_TAIL_LINES = 60


M_ARENA_MAX = -8  # glibc mallopt parameter
_arenas_limited = False


def limit_malloc_arenas() -> None:
    """At most EXECUTION_MALLOC_ARENAS glibc malloc arenas in this process (0: glibc's default, 8
    per core). Every SSH worker thread and every paramiko reader thread that allocates may get an
    arena of its own, each grown and fragmented separately: at 1,000 servers (100 connections open
    per batch) that was 10-20 MB of the worker's peak. Once per process, before the pool starts."""
    global _arenas_limited
    arenas = int(getattr(settings, "EXECUTION_MALLOC_ARENAS", 2))
    if _arenas_limited or arenas <= 0:
        return
    _arenas_limited = True
    try:  # the process's own symbols: no ldconfig subprocess to find libc
        ctypes.CDLL(None).mallopt(M_ARENA_MAX, arenas)
    except (OSError, AttributeError):  # not glibc: nothing to limit
        pass


def _release_free_memory() -> None:
    """Hand the pages a group's collected connections freed back to the kernel (glibc's
    malloc_trim): without it they stay in the arenas' free lists, fragmented, and the next group's
    connections (and the next group's early ones beside them) grow the heap past them."""
    try:
        ctypes.CDLL(None).malloc_trim(0)
    except (OSError, AttributeError):  # not glibc: nothing to hand back
        pass


class RunGarbage:
    """Collects the cyclic garbage a run leaves, group by group, without a full collection.

    A closed paramiko connection is a reference cycle (its handler table of bound methods, its
    channels, its reader thread's last frames): only a full collection frees it, and with a Django
    worker's few hundred thousand long-lived objects a full collection is rare (and costs ~0.3 s
    of everyone's GIL). So a 1,000-server run kept every connection it ever closed (~1,200 with
    the gates' reconnections) until it ended. The objects alive when the run starts are frozen
    (gc.freeze): a collection after each group then walks only what the run itself made, and
    the memory it freed goes back to the kernel.

    What the worker's previous run left uncollected (its engine, contexts and closed connections
    are cycles too) is collected before the freeze: frozen, it would stay for this whole run, and
    the next run's peak would sit on top of the last one's garbage (at 1,000 servers a full
    collection here takes well under 0.1 s and hands back ~10 MB)."""

    def __init__(self) -> None:
        self.frozen = False

    def __enter__(self) -> RunGarbage:
        if gc.isenabled() and gc.get_freeze_count() == 0:  # not when another run froze them already
            gc.collect()
            _release_free_memory()
            gc.freeze()
            self.frozen = True
        return self

    def collect(self) -> None:
        if self.frozen:
            gc.collect()
            _release_free_memory()

    def __exit__(self, *exc) -> None:
        if self.frozen:
            gc.unfreeze()


def _in_worker(fn, ctx):
    try:
        return fn(ctx)
    finally:
        # The transport audits refusals from this thread: close that thread's connection.
        connections.close_all()


@dataclass
class Failure:
    kind: str  # failed / refused / lost / aborted / not_started
    reason: str
    at: float = field(default_factory=time.monotonic)


@dataclass
class EngineResult:
    outcome: str
    reason: str
    execution: Execution
    package: dict


class Engine:
    def __init__(
        self,
        *,
        playbook: Playbook,
        servers: list,
        strategy: RolloutStrategy,
        artifacts,
        task=None,
        inspection=None,
        actor="system",
        stop_check=None,
        health_overrides: dict | None = None,
        criteria_by_system: dict | None = None,
    ):
        self.playbook = playbook
        self.servers = servers
        self.strategy = strategy
        self.artifacts = artifacts
        self.task = task
        self.inspection = inspection
        self.actor = actor
        self.stop_check = stop_check or (lambda: None)
        self.health_overrides = dict(health_overrides or {})
        self.criteria = criteria_by_system or {}
        self.task_ref = task.task_id if task else f"INSP-{inspection.pk if inspection else 0}"
        self.live_group = events.task_group(task.task_id) if task else ""
        system = task.system if task else (inspection.system if inspection else None)
        self.institution_code = system.institution.code if system else ""
        self.records: queue.SimpleQueue[Record] = queue.SimpleQueue()
        from .transport import Hold

        self.halt = Hold()  # a threading.Event that also wakes the chains waiting on it
        self.halt_reason = ""
        self.stopping = False  # the kill switch (not just a failure elsewhere in the group)
        self.active: list[ServerContext] = []
        self.first_failure: tuple[ServerContext, Failure] | None = None
        self._last_poll = 0.0
        self._last_drain = 0.0
        self._fail_count = 0
        self._gate_round = 0
        self._lock = threading.Lock()
        self._pool: ThreadPoolExecutor | None = None
        self._live: LiveSender | None = None
        self._prepared: dict[str, ServerContext] = {}  # the next group's, pre-connected (_preconnect)
        self._lined_up: collections.deque[ServerContext] = collections.deque()  # not yet started (_feed)
        self._early: list = []  # their connections' futures
        self.resume_from: dict = {}  # server id -> execution.journal.Observation (the reaper's resume)
        self.garbage = RunGarbage()

    # --- entry point ------------------------------------------------------------------
    def run(self) -> EngineResult:
        limit_malloc_arenas()
        self._live = LiveSender() if self.live_group else None
        try:
            with self.garbage:
                return self._run()
        finally:
            if self._pool is not None:
                self._pool.shutdown(wait=True)
                self._pool = None
            if self._live is not None:
                self._live.close()

    def _run(self) -> EngineResult:
        s = self.strategy
        self.execution = Execution.objects.create(
            task=self.task,
            inspection=self.inspection,
            task_ref=self.task_ref,
            playbook=self.playbook.NAME,
            playbook_version=self.playbook.VERSION,
            canary_share=s.canary_share if s.canary_share is not None else 0.01,
            batch_size=s.batch_size,
            max_parallel=s.max_parallel,
            failures_allowed=s.failures_allowed,
            safety_gate=s.safety_gate,
            rollback_all=s.rollback_all,
        )
        groups = plan_groups(self.servers, s, rolling=self.playbook.ROLLING)
        runs = ServerRun.objects.bulk_create(
            [
                ServerRun(
                    execution=self.execution,
                    server=srv,
                    server_ref=srv.server_id,
                    group_index=g.index,
                    tier=g.tier,
                    playbook_version=self.playbook.VERSION,
                )
                for g in groups
                for srv in g.servers
            ]
        )
        self.recorder = Recorder(self, {r.server_ref: r for r in runs}, live=self._live)
        self.execution.plan = [[srv.server_id for srv in g.servers] for g in groups]
        self.contexts: dict[str, ServerContext] = {}
        try:
            self.playbook.prepare(self.artifacts)
        except (Refused, ParameterError) as exc:
            return self._finish(Outcome.FAILED_ROLLED_BACK, f"서버를 건드리기 전에 거부되었습니다: {exc}", [])
        except SecurityViolation as exc:
            self._line(
                audit.record(
                    self.actor,
                    "security.violation",
                    task=self.task_ref,
                    payload={"institution": self.institution_code, "reason": str(exc)[:500]},
                )
            )
            return self._finish(Outcome.FAILED_ROLLED_BACK, f"서버를 건드리기 전에 거부되었습니다: {exc}", [])
        done: list[ServerContext] = []
        for index, group in enumerate(groups):
            reason = self.poll_stop(force=True)
            if reason:
                return self._finish(Outcome.ABORTED, f"{group.label_ko} 시작 전에 중지되었습니다: {reason}", done)
            outcome = self.run_group(group, done, groups[index + 1] if index + 1 < len(groups) else None)
            if outcome is not None:
                return self._finish(outcome[0], outcome[1], done)
        return self._finish(Outcome.SUCCEEDED, "", done)

    # --- one group --------------------------------------------------------------------
    def run_group(
        self, group: Group, done: list[ServerContext], following: Group | None = None
    ) -> tuple[str, str] | None:
        servers = [srv.server_id for srv in group.servers]
        text = gettext("%(group)s: 서버 %(count)d대 시작") % {"group": group.label_ko, "count": len(servers)}
        self._event("group", "RUNNING", text, index=group.index, servers=servers)
        # Saved in the audit chain, so the line the task page shows live is the line it shows after a reload.
        group_entry = audit.record(
            self.actor,
            "execution.group",
            task=self.task_ref,
            payload={"institution": self.institution_code, "text": text, "index": group.index, "servers": servers},
        )
        self._line(group_entry)
        contexts = [
            self._prepared.pop(srv.server_id) if srv.server_id in self._prepared else self._context(srv)
            for srv in group.servers
        ]
        self.active = contexts
        self.halt.clear()
        self.first_failure = None
        self._fail_count = 0
        self._preconnect(following)
        results = self.parallel(contexts, self._forward_one)
        failures = {ctx: f for ctx, f in results.items() if f is not None and f.kind != "not_started"}
        if not failures and self.strategy.safety_gate and self.playbook.ROLLING:
            # The batch just finished, plus a bounded, rotating sample of earlier ones (see gate_sample).
            earlier = gate_sample(done, self.strategy.gate_sample, self._gate_round)
            self._gate_round += 1
            gate = self.safety_gate(contexts + earlier)
            if gate:
                ctx, reason = gate
                ctx.data["failure"] = reason
                self._server(ctx, "FAILED", reason)
                failures[ctx] = Failure("failed", f"안전 게이트: {reason}")
                self.first_failure = (ctx, failures[ctx])
        real = {c: f for c, f in failures.items() if f.kind in ("failed", "refused")}
        tolerated = (
            not self.stopping
            and len(real) == len(failures)
            and len(real) <= self.strategy.failures_allowed
            and self.playbook.ROLLING
        )
        if not failures or tolerated:
            if failures:
                bad = self.parallel(list(failures), self._rollback_one)
                if any(bad.values()):
                    return self._manual(bad)
            self.parallel([c for c in contexts if c not in failures and c.state.get("drained")], self._undrain)
            self._close(contexts)
            self.garbage.collect()  # the group's closed connections (see RunGarbage)
            done.extend(c for c in contexts if c not in failures)
            self._event("group", "SUCCEEDED", gettext("%(group)s 완료") % {"group": group.label_ko}, index=group.index)
            self._release(contexts)
            return None
        return self._stop_group(group, contexts, failures, done)

    def _stop_group(self, group, contexts, failures, done) -> tuple[str, str]:
        first = self.first_failure[1] if self.first_failure else next(iter(failures.values()))
        if self.stopping:
            outcome, reason = Outcome.ABORTED, f"{group.label_ko} 실행 중 중지되었습니다: {self.halt_reason}"
        elif any(f.kind == "lost" for f in failures.values()):
            lost = next(f for f in failures.values() if f.kind == "lost")
            outcome, reason = Outcome.STATE_UNCERTAIN, lost.reason
        elif not self.playbook.ROLLING:
            outcome, reason = (
                Outcome.FAILED_ROLLED_BACK,
                f"{first.reason} (서버 {len(failures)}대 실패; 롤백할 것 없음)",
            )
        else:
            outcome, reason = Outcome.FAILED_ROLLED_BACK, first.reason
        # Restore every server of the group that was touched, succeeded ones included (TS-02).
        restore = [c for c in contexts if c.touched and failures.get(c, Failure("", "")).kind != "lost"]
        for ctx in contexts:
            if not ctx.touched and ctx not in failures:
                self._server(ctx, "ABORTED", "시작하지 않음: 롤아웃이 중지되었습니다")
        if self.playbook.ROLLING:
            bad = self.parallel(restore, lambda c: self._rollback_one(c, failed=c in failures))
            if any(bad.values()):
                self._close(contexts)
                return self._manual(bad, after=reason)
            if self.strategy.rollback_all and done:
                earlier = list(done)
                bad = self.parallel(earlier, self._rollback_one)
                self._close(earlier)
                if any(bad.values()):
                    self._close(contexts)
                    return self._manual(bad, after=reason)
                done.clear()
        self._close(contexts)
        self._event("group", outcome, reason, index=group.index)
        return outcome, reason

    def _manual(self, bad: dict, after: str = "") -> tuple[str, str]:
        ctx, failure = next((c, f) for c, f in bad.items() if f)
        reason = f"{ctx.server.server_id} 롤백 실패: {failure.reason}"
        if after:
            reason += f" (이후: {after})"
        return Outcome.MANUAL_INTERVENTION_REQUIRED, reason

    # --- per server -------------------------------------------------------------------
    def _context(self, server) -> ServerContext:
        criteria = self.criteria.get(server.system_id)
        health = Health.for_server(server, criteria, self.health_overrides)
        ctx = ServerContext(self, server, health, self.playbook)
        seed = self.resume_from.get(server.server_id)
        if seed is not None:  # a resumed run: what the server showed and which steps are done
            ctx.state, ctx.resume, ctx.seq = dict(seed.state), dict(seed.done), seed.seq
        self.contexts[server.server_id] = ctx
        return ctx

    def _forward_one(self, ctx: ServerContext) -> Failure | None:
        if self.halt.is_set():
            return Failure("not_started", "시작하지 않음")
        self._server(ctx, "RUNNING", "")
        failure: Failure | None = None
        try:
            if self.strategy.drain_flag:
                ctx.state["drained"] = True
                ctx.run("drain", f"touch {q(ctx.root_path(self.strategy.drain_flag))}", timeout=15)
            self.playbook.forward(ctx)
        except Aborted as exc:
            failure = Failure("aborted", f"{ctx.current_step or '시작'} 단계에서 중지되었습니다: {exc}")
        except Lost as exc:
            reachable = self._probe(ctx.server)
            failure = Failure("lost", f"{exc}; 확인 접속: {'성공' if reachable else '실패'}, 단계 상태 알 수 없음")
        except StepFailed as exc:
            failure = Failure("failed", exc.reason)
        except Refused as exc:
            failure = Failure("refused", str(exc))
        except Exception as exc:  # transport errors at connect (host key, auth) and the unexpected
            failure = self._classify(ctx, exc)
        if not self.playbook.ROLLING:
            ctx.close()  # nothing to roll back: free the connection (1,000 open sockets exhaust select())
        if failure is None:
            self._server(ctx, "SUCCEEDED", "", health=ctx.data.get("health", {}))
            return None
        state = {"aborted": "ABORTED", "lost": "UNCERTAIN", "refused": "REFUSED"}.get(failure.kind, "FAILED")
        if failure.kind != "aborted":  # stopped because another server failed (or a stop): not its own failure
            ctx.data["failure"] = failure.reason
        self._server(ctx, state, failure.reason, health=ctx.data.get("health", {}))
        if failure.kind in ("failed", "refused", "lost"):
            with self._lock:
                self._fail_count += 1
                if self.first_failure is None:
                    self.first_failure = (ctx, failure)
                over = self._fail_count > self.strategy.failures_allowed or failure.kind == "lost"
            if over and self.playbook.ROLLING:
                self.halt_reason = self.halt_reason or f"{ctx.server.server_id} 실패"
                self.halt.set()
        return failure

    def _classify(self, ctx: ServerContext, exc: Exception) -> Failure:
        from . import transport

        sid = ctx.server.server_id
        if isinstance(exc, transport.HostKeyMismatch):
            return Failure("refused", f"{sid}의 호스트 키가 고정된 지문과 다릅니다: 연결을 거부했습니다")
        if isinstance(exc, transport.ConnectionLost):
            return Failure("lost", f"{sid} 연결이 끊겼습니다: {exc}")
        if isinstance(exc, transport.TransportError):
            return Failure("refused", f"{sid}에 연결할 수 없습니다: {exc}")
        log.exception("unexpected error on %s", sid)
        return Failure("failed", f"{sid}에서 예기치 않은 오류: {exc!r}")

    def _probe(self, server) -> bool:
        from .transport import SSHTransport

        try:
            return bool(SSHTransport(server).probe())
        except Exception:
            return False

    def _rollback_one(self, ctx: ServerContext, failed: bool = False) -> Failure | None:
        ctx.phase = "rollback"
        ctx.quiet = False
        self._server(ctx, "RUNNING", "롤백 중")
        tail = ""
        try:
            if failed:
                tail = self._log_tail(ctx)
            self.playbook.rollback(ctx)
            if ctx.state.get("drained"):
                ctx.run("undrain", f"rm -f -- {q(ctx.root_path(self.strategy.drain_flag))}", timeout=15)
        except Exception as exc:
            reason = exc.reason if isinstance(exc, StepFailed) else str(exc) or type(exc).__name__
            if not tail:
                try:
                    tail = self._log_tail(ctx)
                except Exception:
                    tail = ""
            self._server(ctx, "ROLLBACK_FAILED", reason, log_tail=tail)
            return Failure("failed", reason)
        # The server that failed keeps its reason next to the rollback: the PM and the task page read it.
        cause = ctx.data.get("failure")
        self._server(ctx, "ROLLED_BACK", f"롤백 완료: {cause}" if cause else "롤백 완료", log_tail=tail)
        return None

    def _log_tail(self, ctx: ServerContext) -> str:
        if not ctx.health.log_path:
            return ""
        result = ctx.run(
            "log-tail", f"tail -n {LOG_TAIL_LINES} {q(ctx.health.log_path)}", timeout=15, ok_codes=tuple(range(256))
        )
        return result.stdout[-8000:]

    def _undrain(self, ctx: ServerContext) -> Failure | None:
        if ctx.state.get("drained"):
            ctx.phase = "hook"
            try:
                ctx.run("undrain", f"rm -f -- {q(ctx.root_path(self.strategy.drain_flag))}", timeout=15)
            except Exception as exc:
                return Failure("failed", str(exc))
        return None

    def safety_gate(self, contexts: list[ServerContext]) -> tuple[ServerContext, str] | None:
        def check(ctx: ServerContext) -> Failure | None:
            ctx.phase, ctx.quiet = "check", True
            try:
                self.playbook.verify(ctx)
            except StepFailed as exc:
                return Failure("failed", exc.reason)
            except Exception as exc:
                return Failure("failed", f"{ctx.server.server_id}: {exc}")
            finally:
                ctx.phase, ctx.quiet = "forward", False
            return None

        results = self.parallel(contexts, check)
        bad = [(c, f.reason) for c, f in results.items() if f]
        self._event(
            "group",
            "GATE",
            "safety gate passed" if not bad else f"safety gate failed: {bad[0][1]}",
            checked=len(contexts),
        )
        return bad[0] if bad else None

    # --- plumbing ---------------------------------------------------------------------
    def _preconnect(self, group: Group | None) -> None:
        """Line up the next group's first servers for early connections (ServerContext.preconnect),
        at most EXECUTION_PRECONNECT of them (0: none). They are queued once this group's last
        wave has started (_feed), so the threads that wave leaves idle open them, and the safety
        gate's checks take the threads they still hold. No session, no command: the gate still
        holds the group, and a group that never starts has them closed unused (_finish)."""
        self._lined_up.clear()
        self._early = [f for f in self._early if not f.done()]
        limit = int(getattr(settings, "EXECUTION_PRECONNECT", PRECONNECT_LIMIT))
        if group is None or not self.playbook.ROLLING or limit <= 0:
            return
        from .profiles import policies_for, policy_problem

        policies = policies_for(self)
        for srv in group.servers[:limit]:
            ctx = self._prepared[srv.server_id] = self._context(srv)
            # A server with an environment schema connects first through the site-profile gate,
            # which checks the system's SSH policy before connecting: not early. Nor one that
            # policy forbids (the policies the gate reads; the plan was checked against them).
            if ctx.env_schema is None and not policy_problem(srv, policies.get(srv.system_id)):
                self._lined_up.append(ctx)

    def _feed(self, busy: int) -> None:
        """Queue the lined-up early connections once fewer than ``max_parallel`` jobs are left."""
        if self.halt.is_set():  # a failure or a stop: this group ends here, the next never starts
            self._lined_up.clear()
            return
        if not self._lined_up or busy >= self.strategy.max_parallel:
            return
        assert self._pool is not None
        while self._lined_up:
            ctx = self._lined_up.popleft()
            self._early.append(self._pool.submit(_in_worker, ServerContext.preconnect, ctx))

    def parallel(self, contexts: list[ServerContext], fn) -> dict:
        """``fn`` on every context on the pool, draining the recorder and polling the kill switch
        while they run; idle threads meanwhile open lined-up early connections (_feed)."""
        results: dict = {}
        if not contexts:
            return results
        if self._pool is None:
            # One pool for the whole run: starting 16 threads for every batch, gate and hook
            # cost the orchestrating thread a GIL hand-off per thread (~700 starts at 1,000 servers).
            self._pool = ThreadPoolExecutor(max_workers=self.strategy.max_parallel, thread_name_prefix="guardia-ssh")
        # Each future reports its own completion on a queue: a wait() over every pending future per
        # completion installs and removes a waiter on each of them (up to 1,000 for a single group).
        completed: queue.SimpleQueue[Future] = queue.SimpleQueue()
        futures = {}
        for ctx in contexts:
            future = self._pool.submit(_in_worker, fn, ctx)
            futures[future] = ctx
            future.add_done_callback(completed.put)
        left = len(futures)
        while left:
            self._feed(left)
            finished: list[Future] = []
            try:
                finished.append(completed.get(timeout=0.05))
                while True:
                    finished.append(completed.get_nowait())
            except queue.Empty:
                pass
            for future in finished:
                results[futures[future]] = future.result()
            left -= len(finished)
            now = time.monotonic()
            if min(left, self.strategy.max_parallel) < DRAIN_WIDE or now - self._last_drain >= DRAIN_SECONDS:
                self._last_drain = now
                self.recorder.drain()
            self.poll_stop()
        self.recorder.drain()
        return results

    def poll_stop(self, force: bool = False) -> str | None:
        now = time.monotonic()
        if self.stopping:
            return self.halt_reason
        if not force and now - self._last_poll < STOP_POLL_SECONDS:
            return None
        self._last_poll = now
        reason = self.stop_check()
        if reason:
            self.stopping = True
            self.halt_reason = reason
            self.halt.set()
            # A local thread giving up is not a stop: kill what runs on the servers.
            for ctx in self.active:
                ctx.kill_running()
            entry = audit.record(
                self.actor,
                "execution.kill_switch",
                task=self.task_ref,
                payload={
                    "institution": self.institution_code,
                    "reason": reason,
                    "running": [c.server.server_id for c in self.active if c.current_step],
                },
            )
            self._line(entry)
        return reason

    def _server(self, ctx: ServerContext, state: str, message: str, **extra) -> None:
        self.records.put(Record("server", ctx.server.server_id, {"state": state, "message": message, **extra}))

    def _event(self, kind: str, status: str, message: str, **data) -> None:
        if self.live_group:
            self._send(events.LiveEvent(kind=kind, task_id=self.task_ref, status=status, message=message, data=data))

    def _send(self, event: events.LiveEvent) -> None:
        """After the steps recorded so far, in order (the recorder's queue of live events)."""
        recorder = getattr(self, "recorder", None)
        if recorder is not None:
            recorder.send([(self.live_group, event)])
        else:
            events.send(self.live_group, event)

    def _line(self, entry) -> None:
        """An audit entry of this run as a live timeline line (the task page renders it like a reload)."""
        if self.live_group:
            line = reports.live_line(entry)
            data = {"action": entry.action, "line": line}
            self._send(events.LiveEvent(kind="timeline", task_id=self.task_ref, message=line["text"], data=data))

    def _release(self, contexts: list[ServerContext]) -> None:
        """Done with these servers for good: another task may change them now (execution.leases).
        Not while a later failure could still roll them back or a safety gate re-check them."""
        s = self.strategy
        if self.task is None or s.rollback_all or (s.safety_gate and s.gate_sample != 0 and self.playbook.ROLLING):
            return
        from .leases import release_servers

        release_servers(self.task.pk, [c.server.server_id for c in contexts])

    def _close(self, contexts: list[ServerContext]) -> None:
        for ctx in contexts:
            ctx.close()

    def _finish(self, outcome: str, reason: str, done: list[ServerContext]) -> EngineResult:
        self.recorder.drain()
        self._lined_up.clear()  # a group that never starts: its connections not yet made never are
        for future in self._early:
            future.cancel()
        self._close(list(self.contexts.values()))
        execution = self.execution
        execution.outcome = outcome
        execution.reason = reason
        execution.finished_at = timezone.now()
        execution.summary = self._summary()
        execution.save(update_fields=["outcome", "reason", "finished_at", "summary", "plan"])
        self._event("execution", outcome, reason or gettext("실행 완료"), execution=execution.pk)
        return EngineResult(outcome, reason, execution, self._package(execution))

    def _summary(self) -> dict:
        counts: dict[str, int] = {}
        for run in self.recorder.runs.values():
            counts[run.state] = counts.get(run.state, 0) + 1
        findings = {sid: ctx.data for sid, ctx in self.contexts.items() if ctx.data}
        return {
            "states": counts,
            "servers": len(self.recorder.runs),
            "groups": len(self.execution.plan),
            "findings": findings,
        }

    def _package(self, execution: Execution) -> dict:
        """The result package the PM validates (governance.results): per server the state, the
        versions served before and after, every health check with its status and latency,
        findings and the log tail; the summary counts are computed by the contract itself."""
        checks: dict[str, list[HealthCheck]] = {}
        rows = (
            StepResult.objects.filter(server_run__execution=execution)
            .filter(Q(command="") | Q(name__endswith="post-check"))
            .order_by("server_run_id", "seq")
            .values_list("server_run__server_ref", "name", "phase", "state", "duration_ms", "output_excerpt")
        )
        for server_ref, name, phase, state, duration_ms, output in rows:
            ctx = self.contexts.get(server_ref)
            http = (ctx.data.get("health", {}) if ctx else {}).get(name) or {}
            checks.setdefault(server_ref, []).append(
                HealthCheck(
                    name=name,
                    kind=_check_kind(name),
                    ok=state == "OK",
                    phase="rollback" if phase == "rollback" else "check" if phase == "check" else "forward",
                    status=http.get("status"),
                    latency_ms=http.get("latency_ms", duration_ms),
                    detail=(output or "").strip()[:300],
                )
            )
        servers = []
        for run in self.recorder.runs.values():
            ctx = self.contexts.get(run.server_ref)
            data = ctx.data if ctx else {}
            answers = [v for v in (data.get("health") or {}).values() if isinstance(v, dict) and "body" in v]
            servers.append(
                ServerResult(
                    server=run.server_ref,
                    state=run.state,
                    group=run.group_index,
                    message=run.message,
                    version_before=(ctx.state.get("old_version", "") if ctx else ""),
                    version_after=version_in(answers[-1]["body"]) if answers else "",
                    health=checks.get(run.server_ref, []),
                    findings={k: v for k, v in data.items() if k not in ("health", "failure")},
                    log_excerpt=(run.log_tail or "")[-LOG_EXCERPT_CHARS:],
                    own_failure=str(data.get("failure") or ""),
                )
            )
        expected = getattr(self.playbook, "expected_version", None)
        package = ResultPackage(
            playbook=execution.playbook,
            playbook_version=execution.playbook_version,
            outcome=execution.outcome,
            reason=execution.reason,
            expected_version=expected() if callable(expected) else "",
            execution=execution.pk,
            first_failure=self.first_failure[0].server.server_id if self.first_failure else "",
            servers=servers,
            diff=getattr(self.playbook, "diff", "") or "",
        )
        # Findings, diffs and reasons quote what servers printed: redacted like step output.
        return vault.redact_structure(package.to_json())


def _check_kind(name: str) -> str:
    if name.endswith("port"):
        return "port"
    if name.endswith("http"):
        return "http"
    if name.endswith("post-check"):
        return "process"
    return "check"
