"""The reaper: a task never stays EXECUTING without a live worker.

Every sweep (a django-q2 Schedule each minute, or ``manage.py reap_executions``) looks for
claims whose heartbeat stopped: the lease expired, or a stop was requested and two
heartbeats were missed (the kill switch must not wait out a whole lease). The reaper takes
the claim over (so two sweeps never recover one task), then:

1. marks the servers that were in flight UNCERTAIN, says so on the task page and alerts the
   system's owner and the PM at once;
2. re-verifies each server the task still holds over SSH (execution.journal: per playbook,
   whether each step's effect is on the server: checksums, backups, the process and its PID,
   the certificate files, the rotated log, the managed cron block), after waiting for the dead
   worker's last remote command to end;
3. by the recovery policy (the system's, else the site's setting) either resumes the rollout
   from the step journal (steps done are skipped with their recorded output, the rest runs as
   the engine would have run it) or rolls those servers back by the playbook's own rollback,
   never repeating a step blindly;
4. ends the task in a definite state (resumed to the end: PENDING_PM_VALIDATION; ABORTED when
   a stop was requested, FAILED_ROLLED_BACK, MANUAL_INTERVENTION_REQUIRED when a rollback
   failed, STATE_UNCERTAIN when a server could not be reached or shows a step nothing can
   tell), alerts the owner and the PM, and records it in the audit chain.

A run that had finished but whose worker died before telling governance is reported as it
ended. If the reaper itself dies, the claim it took expires like any other and the next
sweep starts again from what the servers show.
"""

from __future__ import annotations

import logging
from datetime import timedelta

from django.conf import settings
from django.db import transaction
from django.db.models import F, Max, Q
from django.utils import timezone
from django.utils.translation import gettext as _

from governance import control
from governance.models import OpsTask, Status
from governance.notify import Message, notify
from governance.transitions import audit_task, enqueue_execution, publish_line, record_task, task_link

from . import gateways, journal, leases, schedules
from .models import Execution, ExecutionLease, Outcome, RunState, ServerLease, StepResult
from .playbooks.base import Playbook

log = logging.getLogger(__name__)
MAX_RECOVERIES = 3  # then the task is left STATE_UNCERTAIN for a person, loudly
SCHEDULE_NAME = "execution-reaper"


def ensure_schedule() -> None:
    """One django-q2 Schedule, every minute: the sweep that bounds how long a dead worker's task
    stays EXECUTING (the lease plus this minute)."""
    schedules.every_minute(SCHEDULE_NAME, "execution.tasks.reap_executions")


def reaper_holder() -> str:
    return f"reaper:{leases.holder_id()}"


def orphaned_leases(now=None) -> list[ExecutionLease]:
    """Expired claims, and claims of stopped tasks whose holder missed two heartbeats and a half.
    A claim's heartbeat is a sixth of its lifetime as its holder set it (expires - renewed), so a
    worker configured with another lease length is judged by its own."""
    now = now or timezone.now()
    found = list(
        ExecutionLease.objects.filter(Q(expires_at__lt=now) | Q(task__stop_requested=True)).select_related("task")
    )
    return [
        lease
        for lease in found
        if lease.expires_at < now or lease.renewed_at < now - 2.5 * (lease.expires_at - lease.renewed_at) / 6
    ]


def claim(lease: ExecutionLease, holder: str) -> bool:
    """Take an orphaned claim over; False when its worker renewed it or another sweep took it."""
    now = timezone.now()
    return bool(
        ExecutionLease.objects.filter(pk=lease.pk, holder=lease.holder, renewed_at=lease.renewed_at).update(
            holder=holder,
            renewed_at=now,
            expires_at=now + timedelta(seconds=leases.lease_seconds()),
            recoveries=F("recoveries") + 1,
        )
    )


def sweep() -> list[dict]:
    """One pass: recover every orphaned task, then queue waiters nobody queued."""
    holder = reaper_holder()
    results: list[dict] = []
    for lease in orphaned_leases():
        # A site gateway recovers only its own tasks (only it reaches their servers), the central
        # workers only theirs; a task left by a dead gateway waits for the gateway to be back.
        if gateways.recovers_here(lease.task) and claim(lease, holder):
            results.append(_recover_claimed(lease.task_id, holder, lease))
    # EXECUTING with no claim at all: started before claims existed, or the claim was dropped
    # after the run crashed while telling governance. Give a live run the lease time first.
    stale = timezone.now() - timedelta(seconds=leases.lease_seconds())
    for task in OpsTask.objects.filter(status=Status.EXECUTING, execution_lease__isnull=True, updated_at__lt=stale):
        adopted = _adopt(task, holder) if gateways.recovers_here(task) else None
        if adopted is not None:
            results.append(_recover_claimed(task.pk, holder, adopted))
    leases.dispatch_waiters(resend_after=leases.lease_seconds())
    return results


def _adopt(task: OpsTask, holder: str) -> ExecutionLease | None:
    """Claim a task that runs without any claim, and whichever of its last run's servers no
    other task holds now (those the reaper may re-verify and restore)."""
    now = timezone.now()
    lease, created = ExecutionLease.objects.get_or_create(
        task=task,
        defaults={
            "task_ref": task.task_id,
            "holder": holder,
            "acquired_at": task.approved_at or task.created_at,
            "renewed_at": now,
            "expires_at": now + timedelta(seconds=leases.lease_seconds()),
            "recoveries": 1,
        },
    )
    if not created:
        return None
    execution = Execution.objects.filter(task=task).order_by("-started_at", "-pk").first()
    if execution is not None:
        runs = execution.server_runs.exclude(server=None).exclude(server__lease__isnull=False)
        ServerLease.objects.bulk_create(
            [
                ServerLease(server_id=r.server_id, server_ref=r.server_ref, lease=lease)
                for r in runs
                if r.server_id is not None
            ],
            ignore_conflicts=True,
        )
    return lease


def _recover_claimed(task_pk: int, holder: str, lease: ExecutionLease) -> dict:
    try:
        with leases.Heartbeat(task_pk, holder):
            result = recover(task_pk, lease)
    except Exception as exc:
        log.exception("recovery of task %s failed", task_pk)
        if lease.recoveries + 1 < MAX_RECOVERIES:
            # Leave the claim to expire: the next sweep tries again from what the servers show.
            return {"task": lease.task_ref, "outcome": "RETRY", "reason": repr(exc)}
        result = _give_up(task_pk, f"복구가 {MAX_RECOVERIES}회 실패했습니다: {exc!r}")
    leases.release(task_pk, holder)
    return result


def _give_up(task_pk: int, reason: str) -> dict:
    task = OpsTask.objects.get(pk=task_pk)
    if task.status == Status.EXECUTING:
        control.execution_failed(task_pk, Outcome.STATE_UNCERTAIN, reason)
    return {"task": task.task_id, "outcome": Outcome.STATE_UNCERTAIN, "reason": reason}


def recover(task_pk: int, lease: ExecutionLease) -> dict:
    task = OpsTask.objects.select_related("system__institution").get(pk=task_pk)
    if task.status != Status.EXECUTING:
        # The worker died before the task started (still APPROVED: queue it again) or after
        # governance heard the end (only the claim was left behind).
        if task.status == Status.APPROVED and not task.stop_requested:
            enqueue_execution(task)
        return {"task": task.task_id, "outcome": "RELEASED", "status": task.status}
    execution = (
        Execution.objects.filter(task=task, started_at__gte=lease.acquired_at - timedelta(seconds=1))
        .order_by("-started_at", "-pk")
        .first()
    )
    lost = record_task(
        "system",
        "execution.worker_lost",
        task,
        holder=lease.holder,
        execution=execution.pk if execution else None,
        stop_requested=task.stop_requested,
        text=f"워커 유실: {lease.holder} 응답 없음 — 서버 상태를 다시 확인합니다",
    )
    publish_line(task.task_id, lost)
    # At once, not only when the recovery ends (a resumed rollout may take a while): who owns
    # the system and the institution's PM learn that a worker died and the reaper took over.
    _alert_owner(
        task, f"[작업자 유실] {task.task_id}: {lease.holder} 응답 없음 — 서버를 재검증하고 복구합니다", pm=True
    )
    if execution is None:
        outcome = Outcome.ABORTED if task.stop_requested else Outcome.FAILED_ROLLED_BACK
        reason = "실행 작업자가 서버에 접속하기 전에 중단되었습니다; 아무것도 변경하지 않았습니다"
        return _report(task, outcome, reason, lease, {})
    if execution.outcome != Outcome.RUNNING:
        return _report_finished(task, execution, lease)
    return Recovery(task, execution, lease).recover()


def _report(task, outcome: str, reason: str, lease, servers: dict, package: dict | None = None, mode: str = "") -> dict:
    # One transaction: the task's end and the chain's account of the recovery land together.
    with transaction.atomic():
        if outcome == Outcome.SUCCEEDED:
            control.execution_finished(task.pk, package or {})
        else:
            control.execution_failed(task.pk, outcome, reason)
        task.refresh_from_db()
        _record_recovery(task, outcome, reason, lease, servers, mode)
        _alert_owner(task, f"[작업자 유실 복구] {task.task_id}: {task.get_status_display()} — {reason}"[:900])
    return {"task": task.task_id, "outcome": outcome, "status": task.status, "reason": reason}


def _record_recovery(task, outcome: str, reason: str, lease, servers: dict, mode: str = "") -> None:
    audit_task(
        "system",
        "execution.recovered",
        task,
        outcome=outcome,
        reason=reason[:1000],
        holder=lease.holder,
        policy=mode,
        servers=servers,
        text=f"워커 유실 복구 완료: {task.get_status_display()} — {reason[:200]}",
    )


def _alert_owner(task, text: str, pm: bool = False) -> None:
    """execution_failed tells the requester and the PM; the system's owner hears it too."""
    from governance.routing import ownership_of

    ownership = ownership_of(task)
    people = {ownership.owner, ownership.deputy} if ownership else set()
    if pm:
        people.add(task.system.institution.pm)
    for person in people - {None}:
        notify(person, Message(text, kind="alert", task=task, link=task_link(task)))


def _report_finished(task, execution, lease) -> dict:
    """The engine ended but its worker died before governance heard of it."""
    if execution.outcome == Outcome.SUCCEEDED:
        package = Recovery(task, execution, lease).verified_package()
        if package is None:  # a server no longer serves what the run left: roll back instead
            return Recovery(task, execution, lease).run(reason_prefix="servers changed after a finished run")
        return _report(task, Outcome.SUCCEEDED, "", lease, {}, package)
    return _report(
        task,
        execution.outcome,
        execution.reason or "실행은 끝났으나 작업자가 결과를 보고하기 전에 사라졌습니다",
        lease,
        {},
    )


def recovery_policy(task, playbook) -> str:
    """``resume`` or ``rollback``: the system's choice, else the site's setting (default rollback).
    A stop always rolls back; a playbook with nothing to undo (rotation, cleanup) is finished."""
    if task.stop_requested:
        return "rollback"
    if type(playbook).rollback is Playbook.rollback and not playbook.READ_ONLY:
        return "resume"
    chosen = getattr(task.system, "recovery_policy", "") or getattr(settings, "EXECUTION_RECOVERY_POLICY", "rollback")
    return "resume" if chosen == "resume" else "rollback"


class Recovery:
    """Re-verify the servers an interrupted execution still holds, then resume the rollout from
    its step journal or roll those servers back, as the system's policy says."""

    def __init__(self, task, execution, lease):
        self.task = task
        self.execution = execution
        self.lease = lease
        self.fallback = ""  # why a resume was not possible

    def _engine(self):
        from . import playbooks
        from .recorder import Recorder
        from .rolling import RolloutStrategy
        from .services import engine_for, validate_parameters

        task = self.task
        name = task.playbook or task.sub_type
        self.parameters = validate_parameters(name, task.parameters)
        playbook = playbooks.build(name, self.parameters)
        strategy = RolloutStrategy.from_parameters(self.parameters.get("rollout"), tier=task.system.tier)
        self.runs = list(self.execution.server_runs.select_related("server__system__institution", "server__credential"))
        servers = [r.server for r in self.runs if r.server is not None]
        engine = engine_for(task, playbook, servers, strategy, actor="system")
        engine.execution = self.execution
        engine.recorder = Recorder(engine, {r.server_ref: r for r in self.runs})
        engine.contexts = {}
        return engine

    def _contexts(self, engine, runs) -> dict:
        seqs = dict(
            StepResult.objects.filter(server_run__in=runs)
            .values("server_run")
            .annotate(top=Max("seq"))
            .values_list("server_run", "top")
        )
        contexts = {}
        for run in runs:
            ctx = engine._context(run.server)
            ctx.seq = seqs.get(run.pk) or 0
            contexts[run.server_ref] = ctx
        return contexts

    @staticmethod
    def _journals(runs) -> dict[int, dict[str, str]]:
        """Per server run: the forward steps recorded OK, name -> output (the step journal)."""
        journals: dict[int, dict[str, str]] = {}
        for run_id, name, output in (
            StepResult.objects.filter(server_run__in=runs, phase="forward", state="OK")
            .order_by("server_run", "seq")
            .values_list("server_run", "name", "output_excerpt")
        ):
            journals.setdefault(run_id, {})[name] = output
        return journals

    def verified_package(self) -> dict | None:
        engine = self._engine()
        runs = [r for r in self.runs if r.server is not None and r.state == RunState.SUCCEEDED]
        contexts = self._contexts(engine, runs)
        expected = getattr(engine.playbook, "expected_version", None)
        want = expected() if callable(expected) else ""
        for ctx in contexts.values():
            status, version = journal._probe_http(ctx)
            ctx.data["health"] = {"recover-http": {"status": status, "latency_ms": 0, "body": f"version={version}"}}
            if want and version != want:
                return None
        engine.recorder.drain()
        return engine._package(self.execution)

    def _mark_lost(self, engine) -> None:
        """The servers in flight become UNCERTAIN on the task page, and the page says why."""
        self.in_flight = [r for r in self.runs if r.state in (RunState.RUNNING, RunState.UNCERTAIN)]
        self.last = self._last_steps(self.in_flight)
        for run in self.in_flight:
            step = self.last.get(run.pk, "")
            engine.records.put(
                _server_record(
                    run.server_ref,
                    RunState.UNCERTAIN,
                    f"작업자 유실: '{step or '시작'}' 이후 상태 불확실 (worker lost)",
                )
            )
        engine.recorder.drain()
        engine._event(
            "execution",
            "RECOVERING",
            "worker lost; re-verifying servers",
            in_flight=[r.server_ref for r in self.in_flight],
        )

    def _touched(self) -> list:
        """The held servers the lost worker may have changed: every one it recorded as started,
        and the not-yet-started ones of the first group that has any. A worker records a server's
        start on its queue and the orchestrating thread commits it a drain later, so the group
        under way may hold servers that started (even finished their restart) while their rows
        still say PENDING; the groups after it cannot have begun, since a group starts only after
        the one before ended and its rows were committed."""
        held = set(ServerLease.objects.filter(lease__task_id=self.task.pk).values_list("server_ref", flat=True))
        pending = [r.group_index for r in self.runs if r.state == RunState.PENDING]
        current = min(pending) if pending else None
        return [
            r
            for r in self.runs
            if r.server is not None
            and r.server_ref in held
            and r.state != RunState.REFUSED
            and (r.state != RunState.PENDING or r.group_index == current)
        ]

    def recover(self) -> dict:
        try:
            engine = self._engine()
        except Exception as exc:
            return _report(
                self.task,
                Outcome.STATE_UNCERTAIN,
                f"작업자를 잃었고 계획을 다시 만들 수 없습니다: {exc}",
                self.lease,
                {},
            )
        self._mark_lost(engine)
        if recovery_policy(self.task, engine.playbook) == "resume":
            try:
                result = self.resume(engine)
            finally:
                engine._close(list(engine.contexts.values()))
                if engine._pool is not None:
                    engine._pool.shutdown(wait=True)
            if result is not None:
                return result
        return self.run(reason_prefix=self.fallback)

    def _resume_blockers(self, engine) -> str:
        failing = [r.server_ref for r in self.runs if r.state in FAILING]
        if failing or StepResult.objects.filter(server_run__execution=self.execution, phase="rollback").exists():
            return f"실행이 이미 실패 처리 중이었습니다 ({', '.join(failing) or '롤백 단계 기록'})"
        try:
            engine.playbook.prepare(engine.artifacts)
        except Exception as exc:
            return f"준비 단계 실패: {exc}"
        from governance import plans

        name = self.task.playbook or self.task.sub_type
        targets = list(self.task.targets.with_related())
        current = plans.plan_sha256(
            plans.render_plan(name, self.parameters, self.task.system, targets, task_ref=self.task.task_id)
        )
        if current != (self.task.plan_sha256 or ""):
            return "실행 계획이 승인된 것과 다릅니다"
        return ""

    def resume(self, engine) -> dict | None:
        """Skip what is done, re-verify what was in flight, run the rest; None: roll back instead."""
        blocker = self._resume_blockers(engine)
        touched = self._touched()
        contexts = self._contexts(engine, touched)
        journals = self._journals(touched)
        by_ref = {r.server_ref: r for r in self.runs}

        def look(ctx):
            try:
                return journal.observe(engine.playbook, ctx, journals.get(by_ref[ctx.server.server_id].pk, {}))
            except Exception as exc:
                return f"재검증 실패: {exc}"

        observed = engine.parallel(list(contexts.values()), look) if not blocker else {}
        engine._close(list(contexts.values()))
        report: dict[str, dict] = {}
        problems = [blocker] if blocker else []
        for ctx, obs in observed.items():
            sid = ctx.server.server_id
            if isinstance(obs, str):
                problems.append(f"{sid}: {obs}")
                report[sid] = {"observed": None, "error": obs[:300]}
                continue
            report[sid] = {"observed": obs.facts, "action": "resume", "skipped": sorted(obs.done)}
            if obs.problem or obs.unknown:
                problems.append(obs.problem or f"{sid}: '{obs.unknown}' 단계가 실행되었는지 서버에서 알 수 없습니다")
            obs.seq = ctx.seq
            engine.resume_from[sid] = obs
        if problems:
            self.fallback = "재개하지 않고 롤백합니다: " + "; ".join(problems)
            return None
        outcome = self._run_rest(engine, by_ref, journals)
        where = self._where()
        if outcome is None:
            result = engine._finish(Outcome.SUCCEEDED, "", [])
            reason = f"작업자 {self.lease.holder}을(를) 잃었으나 ({where}) 저널에서 재개해 완료했습니다"
            return _report(self.task, Outcome.SUCCEEDED, reason, self.lease, report, result.package, "resume")
        result = engine._finish(outcome[0], outcome[1], [])
        reason = f"작업자 {self.lease.holder}을(를) 잃고 ({where}) 재개했으나: {outcome[1]}"
        return _report(self.task, outcome[0], reason, self.lease, report, result.package, "resume")

    def _run_rest(self, engine, by_ref, journals) -> tuple[str, str] | None:
        """The plan's groups again: a finished group is passed over (its held servers stay
        available to later gates and rollback_all), the rest run with their journals."""
        from .rolling import Group

        done: list = []
        # The plan's groups as the first run made them (its server rows carry the group; the plan
        # itself is saved only when a run ends).
        groups: dict[int, list] = {}
        for run in sorted(by_ref.values(), key=lambda r: (r.group_index, r.server_ref)):
            if run.server is not None:
                groups.setdefault(run.group_index, []).append(run)
        for index, runs in sorted(groups.items()):
            servers = [r.server for r in runs]
            if all(r.state not in UNFINISHED for r in runs):
                for run in runs:
                    if run.server_ref in engine.resume_from:
                        ctx = engine._context(run.server)
                        # What its own health check saw, for the result package's version column.
                        for name, output in journals.get(run.pk, {}).items():
                            if name.endswith("http"):
                                ctx.data.setdefault("health", {})[name] = {"status": None, "body": output}
                        done.append(ctx)
                continue
            reason = engine.poll_stop(force=True)
            if reason:
                return Outcome.ABORTED, f"재개 중 중지되었습니다: {reason}"
            outcome = engine.run_group(Group(index, runs[0].tier, servers[0].rolling_group, servers), done)
            if outcome is not None:
                return outcome
        return None

    def _where(self) -> str:
        return (
            ", ".join(f"{r.server_ref} '{self.last.get(r.pk) or '시작'}' 단계 이후" for r in self.in_flight)
            or "서버 사이"
        )

    def run(self, reason_prefix: str = "") -> dict:
        """Roll back every server the task still holds, from what each server shows."""
        task = self.task
        try:
            engine = self._engine()
        except Exception as exc:
            return _report(
                task, Outcome.STATE_UNCERTAIN, f"작업자를 잃었고 계획을 다시 만들 수 없습니다: {exc}", self.lease, {}
            )
        if not hasattr(self, "in_flight"):
            self._mark_lost(engine)
        in_flight = {r.pk for r in self.in_flight}
        touched = self._touched()
        for run in self.runs:
            if run.state == RunState.PENDING and run not in touched:
                engine.records.put(
                    _server_record(run.server_ref, RunState.ABORTED, _("시작하지 않음: 작업자 프로세스를 잃음"))
                )
        contexts = self._contexts(engine, touched)
        journals = self._journals(touched)
        by_ref = {r.server_ref: r for r in touched}
        report: dict[str, dict] = {}

        def restore(ctx):
            run = by_ref[ctx.server.server_id]
            try:
                obs = journal.observe(engine.playbook, ctx, journals.get(run.pk, {}))
            except Exception as exc:
                report[ctx.server.server_id] = {"observed": None, "error": str(exc)[:300]}
                engine._server(ctx, RunState.UNCERTAIN, f"재검증 실패: {exc}")
                return "uncertain"
            entry = report[ctx.server.server_id] = {"observed": obs.facts, "changed": obs.changed}
            if obs.problem:
                engine._server(ctx, RunState.ROLLBACK_FAILED, obs.problem)
                return "failed"
            if obs.unknown and not _undoable(engine.playbook):
                text = f"'{obs.unknown}' 단계가 실행되었는지 서버에서 알 수 없고 되돌릴 방법이 없습니다"
                engine._server(ctx, RunState.UNCERTAIN, text)
                return "uncertain"
            if not obs.changed and not obs.unknown:
                entry["action"] = "none"
                if run.state == RunState.PENDING:  # recorded as not started, and the server agrees
                    engine._server(ctx, RunState.ABORTED, _("시작하지 않음: 작업자 프로세스를 잃음"))
                    return "not_started"
                engine._server(ctx, RunState.ROLLED_BACK, "re-verified on the server: nothing to undo")
                return None
            ctx.state = obs.state
            entry["action"] = "rollback"
            failure = engine._rollback_one(ctx, failed=run.pk in in_flight)
            return "failed" if failure else None

        try:
            results = engine.parallel(list(contexts.values()), restore)
        finally:
            if engine._pool is not None:
                engine._pool.shutdown(wait=True)
        outcome, reason = self._outcome(results, reason_prefix)
        result = engine._finish(outcome, reason, [])
        return _report(task, outcome, reason, self.lease, report, result.package, "rollback")

    def _last_steps(self, runs) -> dict[int, str]:
        last: dict[int, str] = {}
        for run_id, name in (
            StepResult.objects.filter(server_run__in=runs)
            .order_by("server_run", "seq")
            .values_list("server_run", "name")
        ):
            last[run_id] = name
        return {r.pk: last.get(r.pk, "") for r in runs} if runs else {}

    def _outcome(self, results: dict, prefix: str) -> tuple[str, str]:
        base = f"{prefix + '; ' if prefix else ''}작업자 {self.lease.holder}을(를) 잃었습니다 ({self._where()})"
        if any(v == "failed" for v in results.values()):
            return Outcome.MANUAL_INTERVENTION_REQUIRED, f"{base}; 롤백 실패: 수동 조치가 필요합니다"
        if any(v == "uncertain" for v in results.values()):
            return Outcome.STATE_UNCERTAIN, f"{base}; 재검증하지 못한 서버가 있습니다"
        count = sum(1 for v in results.values() if v != "not_started")
        if self.task.stop_requested or OpsTask.objects.filter(pk=self.task.pk, stop_requested=True).exists():
            return Outcome.ABORTED, f"{base}; 킬 스위치로 중지되어 서버 {count}대를 복구했습니다"
        return Outcome.FAILED_ROLLED_BACK, f"{base}; 서버 {count}대를 재검증하고 롤백했습니다"


FAILING = (RunState.FAILED, RunState.ROLLED_BACK, RunState.ROLLBACK_FAILED, RunState.ABORTED)
UNFINISHED = (RunState.PENDING, RunState.RUNNING, RunState.UNCERTAIN)


def _undoable(playbook) -> bool:
    return type(playbook).rollback is not Playbook.rollback


def _server_record(server_id: str, state: str, message: str):
    from .rolling import Record

    return Record("server", server_id, {"state": state, "message": message})
