"""The rollout strategy, the plan of groups and tiers, and the per-server context.

A plan is a list of groups; a group is the unit of parallel work, of the safety gate and
of rollback. Canary servers go first (their own group), then each CMDB rolling group
(N/2 for redundant WAS pairs) in batches.

The ServerContext is what a playbook sees for one server. It runs in a worker thread and
never touches the database: every step result goes onto the engine's queue, and the
engine's orchestrating thread writes rows, audit entries and live events.
"""

from __future__ import annotations

import hashlib
import math
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from django.utils.translation import gettext

from audit import scrub
from cmdb import vault
from governance.labels import group_label

from .errors import ParameterError, Refused, SecurityViolation, StepFailed, StepTimedOut
from .parameters import Param, server_roots

EXCERPT = 4000
# How long a step waits for the steps before it to be committed (ServerContext.journaled).
JOURNAL_WAIT_SECONDS = 60
# The maintenance flag a load balancer reads: a file below the server's app_path, named like a
# flag, so neither touch nor the rm that follows can reach a file outside the app or its artifact.
DRAIN_FLAG = Param("path", roots=("app",), strictly_below=True, suffixes=(".flag", ".down"), max_length=255)
STRATEGY_FIELDS = (
    ("canary_share", float),
    ("batch_size", int),
    ("batch_percent", float),
    ("max_parallel", int),
    ("failures_allowed", int),
    ("safety_gate", bool),
    ("gate_sample", int),
    ("rollback_all", bool),
    ("drain_flag", str),
)

TYPE_MESSAGE = {
    float: "숫자여야 합니다",
    int: "정수여야 합니다",
    bool: "true 또는 false여야 합니다",
    str: "문자열이어야 합니다",
}


def drain_flag_path(server, flag: str) -> str:
    """The drain flag's absolute path on this server, confined below its app_path."""
    return DRAIN_FLAG.confine("rollout.drain_flag", flag, server_roots(server), server.server_id)


class Aborted(Exception):
    """The kill switch (or a failure elsewhere in the group) stopped this server at a step boundary."""


class Lost(Exception):
    """The connection dropped mid-step: whether the step took effect is unknown."""


@dataclass
class RolloutStrategy:
    canary_share: float | None = None  # None: flagged canary servers, else 1 % of 100+ servers
    batch_size: int = 50
    batch_percent: float | None = None  # e.g. 0.1 = batches of 10 % of all servers
    max_parallel: int = 16
    failures_allowed: int = 0
    safety_gate: bool = True
    gate_sample: int = 16  # earlier servers re-checked at each gate besides the batch just done (-1: all)
    rollback_all: bool = False
    drain_flag: str = ""  # a maintenance flag file below the server's app_path (DRAIN_FLAG)

    @classmethod
    def from_parameters(cls, rollout: dict | None, tier: int = 2) -> RolloutStrategy:
        if rollout is not None and not isinstance(rollout, dict):
            raise ParameterError({"rollout": "객체(JSON)여야 합니다"})
        rollout = dict(rollout or {})
        strategy = cls()
        known = {name for name, _kind in STRATEGY_FIELDS}
        errors = {name: "알 수 없는 롤아웃 항목입니다" for name in sorted(set(rollout) - known)}
        for name, kind in STRATEGY_FIELDS:
            if name in rollout and rollout[name] is not None:
                value = rollout[name]
                if kind is float and isinstance(value, int | float) and not isinstance(value, bool):
                    value = float(value)
                if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
                    errors[name] = TYPE_MESSAGE[kind]
                    continue
                setattr(strategy, name, value)
        if strategy.canary_share is not None and not 0 <= strategy.canary_share <= 1:
            errors["canary_share"] = "0과 1 사이여야 합니다"
        if strategy.batch_percent is not None and not 0 < strategy.batch_percent <= 1:
            errors["batch_percent"] = "0보다 크고 1 이하여야 합니다"
        if not 1 <= strategy.batch_size <= 100_000:
            errors["batch_size"] = "1 이상이어야 합니다"
        if not -1 <= strategy.gate_sample <= 100_000:
            errors["gate_sample"] = "-1(전체) 이상이어야 합니다"
        if not 0 <= strategy.failures_allowed <= 100_000:
            errors["failures_allowed"] = "0 이상이어야 합니다"
        if not 1 <= strategy.max_parallel <= 256:
            errors["max_parallel"] = "1에서 256 사이여야 합니다"
        if strategy.drain_flag and "drain_flag" not in errors:
            try:
                strategy.drain_flag = DRAIN_FLAG.clean("drain_flag", strategy.drain_flag)
            except ParameterError as exc:
                errors.update(exc.errors)
        if errors:
            raise ParameterError({f"rollout.{k}": v for k, v in errors.items()})
        if tier == 1 and "batch_size" not in rollout and strategy.batch_percent is None:
            strategy.batch_size = 10  # mission-critical sites roll out slowly unless told otherwise
        return strategy


@dataclass
class Group:
    index: int
    tier: str  # "canary" / "batch" / "all"
    rolling_group: int | None
    servers: list

    @property
    def label(self) -> str:
        if self.tier == "canary":
            return "canary"
        if self.tier == "all":
            return "all servers"
        return f"group {self.rolling_group}, batch {self.index}"

    @property
    def label_ko(self) -> str:
        """The label in the words failure reasons and timeline lines use (the plan keeps `label`)."""
        return group_label(self.tier, self.rolling_group, self.index, self.label)


def plan_groups(servers: list, strategy: RolloutStrategy, rolling: bool = True) -> list[Group]:
    servers = sorted(servers, key=lambda s: (s.rolling_group, s.server_id))
    if not rolling:
        return [Group(0, "all", None, servers)] if servers else []
    total = len(servers)
    if strategy.canary_share is None:
        canaries = [s for s in servers if s.canary]
        if not canaries and total >= 100:
            canaries = servers[: total // 100]
    elif strategy.canary_share > 0:
        count = max(1, round(total * strategy.canary_share))
        flagged = [s for s in servers if s.canary]
        canaries = (flagged + [s for s in servers if not s.canary])[:count]
    else:
        canaries = []
    groups: list[Group] = []
    if canaries and len(canaries) < total:
        groups.append(Group(0, "canary", None, canaries))
    else:
        canaries = []
    chosen = {s.pk for s in canaries}
    rest = [s for s in servers if s.pk not in chosen]
    size = strategy.batch_size
    if strategy.batch_percent is not None:
        size = max(1, math.ceil(total * strategy.batch_percent))
    by_group: dict[int, list] = {}
    for server in rest:
        by_group.setdefault(server.rolling_group, []).append(server)
    for rolling_group, members in sorted(by_group.items()):
        for start in range(0, len(members), size):
            groups.append(Group(len(groups), "batch", rolling_group, members[start : start + size]))
    return groups


def gate_sample(done: list, size: int, gate_round: int) -> list:
    """The earlier servers the safety gate re-checks this round, besides the batch just finished.

    Every earlier server was checked by its own post-checks and by the gate of its own batch.
    What the gate looks for afterwards is a regression the rollout causes elsewhere (a shared
    database or session store broken by the new version, a dependency overloaded): that shows on
    many servers at once, so a bounded sample finds it. Re-checking everything done so far made
    the gates O(n^2) (5,500 HTTP checks for 1,000 servers in batches of 100). The sample walks
    through ``done`` round-robin, so every earlier server is re-checked again within
    ceil(len(done) / size) gates. ``size`` -1 = all of them (the old behaviour), 0 = none.
    """
    if size < 0 or size >= len(done):
        return list(done)
    if size == 0:
        return []
    start = (gate_round * size) % len(done)
    return [done[(start + i) % len(done)] for i in range(size)]


# ctx.state keys that record a decision, not a change on the server (see ServerContext.touched).
NOT_CHANGES = frozenset({"env_variant"})

# The command text of a step a resumed run skipped because it was already done.
SKIPPED = "# 재개: 이미 완료된 단계 (다시 실행하지 않음)"


@dataclass
class Replayed:
    """The result of a skipped step: its journaled output, so what the playbook parses from it
    (the old PID, the log size before startup) is what the first run read."""

    stdout: str
    stderr: str = ""
    exit_code: int = 0
    timed_out: bool = False
    output_sha256: str = ""


@dataclass(frozen=True)
class Chained:
    """One step of ServerContext.run_chain. ``on_start()``: called before the server may start
    the step (what a rollback must know may have begun, e.g. that the live file is being
    replaced). ``on_end(state)``: called once the step ended, with its recorded state (OK,
    FAILED, TIMEOUT, KILLED, or LOST when the connection went while it ran), so a step cut off
    midway can be counted as having done its work."""

    name: str
    command: str
    timeout: float = 60
    ok_codes: tuple[int, ...] = (0,)
    shell: str | None = None
    on_start: Any = None
    on_end: Any = None

    def started(self) -> None:
        if self.on_start is not None:
            self.on_start()

    def ended(self, state: str) -> None:
        if self.on_end is not None:
            self.on_end(state)


@dataclass
class Record:
    """One message from a worker to the orchestrating thread."""

    kind: str  # "step" / "server" / "journaled" (set data["committed"] once what came before is committed)
    server_id: str
    data: dict[str, Any] = field(default_factory=dict)


def env_schema_for(engine, server):
    """The server's environment schema, all of the run's schemas read in one query (None: none,
    or scanning before a run is off: PROFILE_SCAN_BEFORE_RUN)."""
    from django.conf import settings

    if not getattr(settings, "PROFILE_SCAN_BEFORE_RUN", True):
        return None
    schemas = getattr(engine, "env_schemas", None)
    if schemas is None:
        from cmdb.models import EnvSchema

        pks = [s.pk for s in getattr(engine, "servers", None) or [server]]
        schemas = {e.server_id: e for e in EnvSchema.objects.filter(server_id__in=pks)}
        engine.env_schemas = schemas
    return schemas.get(server.pk)


class ServerContext:
    """One server in one execution: its single SSH connection and what was done so far."""

    planning = False  # see execution.plan.PlanContext

    def __init__(self, engine, server, health, playbook):
        self.engine = engine
        self.server = server
        self.health = health
        self.playbook = playbook
        self.task_ref = engine.task_ref
        self.state: dict = {}  # how far forward() got: read by rollback()
        self.data: dict = {}  # findings for the result package
        self.phase = "forward"
        self.seq = 0
        self.transport = None
        self.current_step = ""
        self.quiet = False  # safety-gate checks record failures only
        # A resumed run (execution.reaper): forward steps already done, journaled or verified on
        # the server, with the output to replay. They are recorded as skipped, never sent again.
        self.resume: dict[str, str] = {}
        self._lock = threading.Lock()
        self._connect_failed: Exception | None = None
        self._preconnect = True  # may still be pre-connected (see preconnect); off once closed
        # The CMDB environment schema: a server that has one is scanned before its first step.
        self.env_schema = env_schema_for(engine, server)
        self._scanned = self.env_schema is None

    @property
    def touched(self) -> bool:
        """Did forward() change anything here (so a stop must restore it)? What a playbook notes
        before any change (NOT_CHANGES: the environment variant it chose) does not count."""
        return any(key not in NOT_CHANGES for key in self.state)

    # --- connection -------------------------------------------------------------------
    def connect(self):
        with self._lock:  # a pre-connection of this server may be under way on another thread
            if self.transport is None:
                failed, self._connect_failed = self._connect_failed, None
                if failed is not None:  # the pre-connection's refusal, audited once, surfaces here
                    raise failed
                self.transport = self._open()
            return self.transport

    def _open(self):
        from .transport import SSHTransport

        # A service playbook (deploy, restart) runs many steps here: all through the supervisor.
        transport = SSHTransport(self.server, task=self.task_ref, many_steps=getattr(self.playbook, "SERVICE", False))
        transport.connect()
        return transport

    def preconnect(self) -> None:
        """Open this server's connection before its group starts: TCP, key exchange, the pinned
        host key's check and authentication, nothing more. No session is opened and no command
        sent (the supervisor's session starts with the first step), so a safety gate still
        evaluated meanwhile holds every remote command of this group. A refusal is kept and
        raised by the first step's connect(), where it is classified as if made then."""
        with self._lock:
            if not self._preconnect or self.transport is not None or self.engine.halt.is_set():
                return
            try:
                self.transport = self._open()
            except Exception as exc:
                self._connect_failed = exc

    def close(self) -> None:
        with self._lock:  # after a pre-connection in flight, and none opened after this
            transport, self.transport = self.transport, None
            self._preconnect = False
        if transport is not None:
            try:
                transport.close()
            except Exception:  # closing a dead connection must not hide the real outcome
                pass

    def kill_running(self) -> None:
        transport = self.transport
        if transport is not None:
            try:
                transport.kill_running()
            except Exception:
                pass

    # --- steps ------------------------------------------------------------------------
    def _guard(self) -> None:
        # Rollback ignores the stop: stopping means "restore the current group".
        if self.phase == "forward" and self.engine.halt.is_set():
            raise Aborted(self.engine.halt_reason or gettext("중지 요청"))
        if not self._scanned and self.phase == "forward":
            self._scanned = True  # the scan's own run() comes back through here
            from .profiles import gate

            gate(self)  # raises Refused on a disallowed drift: nothing else has run on the server

    def sleep(self, seconds: float) -> None:
        if self.phase == "forward":
            if self.engine.halt.wait(seconds):
                raise Aborted(self.engine.halt_reason or gettext("중지 요청"))
        else:
            time.sleep(seconds)

    def journaled(self) -> None:
        """Wait until every step this server has recorded so far is committed to the journal.

        Steps reach the database through the orchestrating thread's recorder a drain later. A
        playbook calls this before a step whose effect the server cannot show (a site's data
        script): a worker lost after sending it then leaves the step before it in the journal,
        so recovery knows what to restore (execution.journal)."""
        if self.phase != "forward":
            return
        committed = threading.Event()
        self.engine.records.put(Record("journaled", self.server.server_id, {"committed": committed}))
        deadline = time.monotonic() + JOURNAL_WAIT_SECONDS
        while not committed.wait(0.05):
            self._guard()
            if time.monotonic() > deadline:
                raise StepFailed(
                    self.current_step or "journal", gettext("단계 기록이 저장되지 않아 다음 단계를 보내지 않습니다")
                )

    def _already_done(self, name: str) -> Replayed | None:
        """The step's recorded result when a resumed run finds it done (see ``resume``)."""
        if self.phase != "forward" or name not in self.resume:
            return None
        self._guard()
        self.current_step = name
        output = self.resume[name]
        self._emit(name, command=SKIPPED, exit_code=0, output=output, state="OK", started=time.time(), duration=0)
        return Replayed(stdout=output)

    def _emit(self, name: str, **data) -> None:
        self.seq += 1
        data.update(seq=self.seq, name=name, phase=self.phase)
        self.engine.records.put(Record("step", self.server.server_id, data))

    def _ended(self, name: str, command: str, state: str, exc: Exception, started: float, violation=False) -> None:
        """A step the transport ended (blocked, timed out, lost, upload refused): recorded and audited."""
        duration = time.time() - started
        self._emit(
            name,
            command=command,
            state=state,
            output=str(exc),
            started=started,
            duration=duration,
            audit=True,
            violation=violation,
        )

    def run(self, name: str, command: str, *, timeout: float = 60, ok_codes: tuple[int, ...] = (0,), **options: Any):
        """Run one step; ``options``: the transport's ``max_output`` (default 64 KiB) and ``shell``."""
        from .transport import CommandTimeout, ConnectionLost

        replayed = self._already_done(name)
        if replayed is not None:
            return replayed
        self._guard()
        self.current_step = name
        transport = self.connect()
        started = time.time()
        # One snapshot of the secrets this process knows for the command and its output: the
        # recorder redacts again only if more became known before it writes the step (its count).
        known = vault.known_secrets()
        redacted = scrub.redact_text(command, known)
        try:
            result = transport.run(command, timeout=timeout, **options)
        except SecurityViolation as exc:
            raise self._blocked(name, redacted, exc, started) from exc
        except CommandTimeout as exc:
            self._ended(name, redacted, "TIMEOUT", exc, started)
            raise StepTimedOut(name, self._timed_out(name, timeout)) from exc
        except ConnectionLost as exc:
            raise self._lost(name, redacted, exc, started) from exc
        state = self._record(name, redacted, known, result, ok_codes, started)
        self._raise_for(name, state, result, timeout)
        return result

    def run_chain(self, steps: list[Chained]) -> list:
        """Run ``steps`` one after the other as one program on the server (transport.run_chain):
        no round trip between two of them. Each is recorded as it ends, exactly as run() records
        it, with its ``on_start`` before the server may start it and its ``on_end`` once it
        ended. The server starts a step only when the one before ended well: a failure, a
        timeout or the kill switch ends the chain there, and the run's stop holds it (the step
        under way ends, no other starts). Raises as run() would for the step that ended it. A
        resumed run, or any phase but the forward one, runs the steps one by one."""
        from .transport import ChainStep, ConnectionLost

        if self.phase != "forward" or any(step.name in self.resume for step in steps):
            return [self.run_one(step) for step in steps]
        self._guard()
        self.current_step = steps[0].name
        transport = self.connect()
        known = vault.known_secrets()
        redacted = [scrub.redact_text(step.command, known) for step in steps]
        started = [time.time()]
        states: list[str] = []

        def ended(index: int, result) -> None:
            step = steps[index]
            states.append(self._record(step.name, redacted[index], known, result, step.ok_codes, started[-1]))
            started.append(time.time())
            step.ended(states[-1])
            if states[-1] == "OK" and index + 1 < len(steps):  # the server starts the next one now
                self.current_step = steps[index + 1].name
                steps[index + 1].started()

        steps[0].started()
        chain = [ChainStep(s.command, timeout=s.timeout, ok_codes=s.ok_codes, shell=s.shell) for s in steps]
        try:
            results = transport.run_chain(chain, on_result=ended, hold=self.engine.halt)
        except SecurityViolation as exc:
            index = getattr(exc, "chain_index", 0)
            raise self._blocked(steps[index].name, redacted[index], exc, started[-1]) from exc
        except ConnectionLost as exc:
            index = getattr(exc, "chain_index", len(states))
            steps[index].ended("LOST")
            for step in steps[index + 1 :]:  # the server may have gone on: rollback assumes it did
                step.started()
            raise self._lost(steps[index].name, redacted[index], exc, started[-1]) from exc
        if results:
            self._raise_for(steps[len(results) - 1].name, states[-1], results[-1], steps[len(results) - 1].timeout)
        if len(results) < len(steps):  # held by the run's stop after a step that ended well
            raise Aborted(self.engine.halt_reason or gettext("중지 요청"))
        return results

    def run_one(self, step: Chained):
        """One step run by itself (run()), with its ``on_start`` and its ``on_end`` told how it
        ended (a step cut off midway, KILLED, TIMEOUT or LOST, may have done part of its work)."""
        step.started()
        try:
            result = self.run(step.name, step.command, timeout=step.timeout, ok_codes=step.ok_codes, shell=step.shell)
        except (Aborted, Lost, StepFailed) as exc:
            step.ended({Aborted: "KILLED", Lost: "LOST", StepTimedOut: "TIMEOUT"}.get(type(exc), "FAILED"))
            raise
        step.ended("OK")
        return result

    def _blocked(self, name: str, redacted: str, exc: SecurityViolation, started: float) -> StepFailed:
        self._ended(name, redacted, "BLOCKED", exc, started, violation=True)
        return StepFailed(name, f"{exc} ({self.server.server_id})")  # "명령 검사기 차단: <reason> [<text>]"

    def _lost(self, name: str, redacted: str, exc: Exception, started: float) -> Lost:
        self._ended(name, redacted, "LOST", exc, started)
        return Lost(f"{name} 단계 중 {self.server.server_id} 연결이 끊겼습니다: {exc}")

    def _timed_out(self, name: str, timeout: float) -> str:
        return f"{name} 단계가 {timeout:g}초 후 시간 초과되었습니다 ({self.server.server_id})"

    def _record(self, name: str, redacted: str, known, result, ok_codes: tuple[int, ...], started: float) -> str:
        """Redact what the server printed, judge the step and queue its record; returns its state."""
        # What a server printed is redacted before anything reads, stores or shows it: the
        # playbook's parsing (findings), the step record and a failure reason alike.
        raw = (result.stdout or "", result.stderr or "")
        result.stdout, result.stderr = (scrub.redact_text(text, known) for text in raw)
        output = result.stdout + result.stderr
        if result.stdout and result.stderr:  # as stored: also what only the two together show
            output = scrub.redact_text(output, known)
        killed = getattr(result, "killed", False) or (
            self.phase == "forward" and self.engine.stopping and result.exit_code not in ok_codes
        )
        state = "OK"
        if killed:
            state = "KILLED"
        elif result.timed_out:
            state = "TIMEOUT"
        elif result.exit_code not in ok_codes:
            state = "FAILED"
        # The transport's digest is the raw stream's: once redaction changed the output, the digest
        # is the stored text's, so a short secret cannot be recovered by hashing guesses.
        sha = result.output_sha256 if output == "".join(raw) else output_digest(output)
        measured = {"exit_code": result.exit_code, "sha256": sha, "duration": result.duration}
        self._emit(
            name, command=redacted, output=output, state=state, audit=True, started=started,
            redacted_with=len(known), **measured,
        )  # fmt: skip
        return state

    def _raise_for(self, name: str, state: str, result, timeout: float) -> None:
        if state == "KILLED":
            raise Aborted(self.engine.halt_reason or gettext("중지 요청"))
        if state == "TIMEOUT":
            raise StepTimedOut(name, self._timed_out(name, timeout))
        if state == "FAILED":
            detail = (result.stderr or result.stdout or "").strip().splitlines()[-1:] or [""]
            raise StepFailed(
                name,
                f"{name} 단계가 종료 코드 {result.exit_code}로 끝났습니다 ({self.server.server_id})"
                + (f": {detail[0][:200]}" if detail[0] else ""),
            )

    def put(self, name: str, local, remote: str) -> None:
        from .transport import ConnectionLost, TransportError

        if self._already_done(name) is not None:
            return
        self._guard()
        self.current_step = name
        transport = self.connect()
        started = time.time()
        try:
            transport.put(str(local) if not isinstance(local, bytes) else local, remote)
        except ConnectionLost as exc:
            self._ended(name, f"sftp put {remote}", "LOST", exc, started)
            raise Lost(f"{name} 단계 중 {self.server.server_id} 연결이 끊겼습니다: {exc}") from exc
        except TransportError as exc:
            self._ended(name, f"sftp put {remote}", "FAILED", exc, started)
            raise StepFailed(name, f"{self.server.server_id}로 업로드 실패: {exc}") from exc
        self._emit(
            name,
            command=f"sftp put {remote} (SHA-256 verified on the server)",
            exit_code=0,
            state="OK",
            output=remote,
            started=started,
            audit=True,
            duration=time.time() - started,
        )

    def check(self, name: str, fn, plan: dict | None = None):
        """A check made from the worker (port, HTTP, served certificate): recorded like a step.
        ``plan`` describes it for the rendered plan only."""
        self._guard()
        self.current_step = name
        started = time.time()
        try:
            message = fn()
        except StepFailed as exc:
            self._emit(name, state="FAILED", output=exc.reason, started=started, duration=time.time() - started)
            raise
        if not self.quiet:
            self._emit(name, state="OK", output=str(message or ""), started=started, duration=time.time() - started)
        return message

    def artifact_path(self, sha256: str):
        return self.engine.artifacts.path(sha256)

    def root_path(self, path: str) -> str:
        """The drain flag on this server: below its app_path, never elsewhere (refused otherwise)."""
        try:
            return drain_flag_path(self.server, path)
        except ParameterError as exc:
            raise Refused(f"매개변수 거부: {exc}") from exc


def output_digest(output: str) -> str:
    return hashlib.sha256(output.encode("utf-8", "replace")).hexdigest()
