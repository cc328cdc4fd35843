"""The reaper: a task never stays EXECUTING without a live worker.

Every sweep (a django-q2 Schedule each minute, or ``manage.py reap_executions``) looks for
claims whose heartbeat stopped: the lease expired, or a stop was requested and two
heartbeats were missed (the kill switch must not wait out a whole lease). The reaper takes
the claim over (so two sweeps never recover one task), then:

1. marks the servers that were in flight UNCERTAIN and says so on the task page;
2. re-verifies each server the task still holds over SSH (execution.journal: the artifact's
   checksum in place, staging and backup present, process up, version served);
3. rolls those servers back from what it found, by the playbook's own rollback, never
   repeating a step blindly;
4. ends the task in a definite state (ABORTED when a stop was requested, FAILED_ROLLED_BACK,
   MANUAL_INTERVENTION_REQUIRED when a rollback failed, STATE_UNCERTAIN when a server could
   not be reached), alerts the owner and the PM, and records it in the audit chain.

A run that had finished but whose worker died before telling governance is reported as it
ended. If the reaper itself dies, the claim it took expires like any other and the next
sweep starts again from what the servers show.
"""

from __future__ import annotations

import logging
from datetime import timedelta

from django.db import transaction
from django.db.models import F, Max, Q
from django.utils import timezone

import audit
from governance import control
from governance.models import OpsTask, Status
from governance.notify import Message, notify
from governance.transitions import enqueue_execution, publish_line, task_link

from . import gateways, journal, leases
from .models import Execution, ExecutionLease, Outcome, RunState, ServerLease, StepResult

log = logging.getLogger(__name__)
MAX_RECOVERIES = 3  # then the task is left STATE_UNCERTAIN for a person, loudly
SCHEDULE_NAME = "execution-reaper"


def ensure_schedule() -> None:
    """One django-q2 Schedule, every minute: the sweep that bounds how long a dead worker's task
    stays EXECUTING (the lease plus this minute)."""
    from django_q.models import Schedule

    Schedule.objects.get_or_create(
        name=SCHEDULE_NAME,
        defaults={
            "func": "execution.tasks.reap_executions",
            "schedule_type": Schedule.MINUTES,
            "minutes": 1,
            "repeats": -1,
        },
    )


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
    lost = audit.record(
        "system",
        "execution.worker_lost",
        task=task.task_id,
        target=task.system.code,
        payload={
            "institution": task.system.institution.code,
            "holder": lease.holder,
            "execution": execution.pk if execution else None,
            "stop_requested": task.stop_requested,
            "text": f"워커 유실: {lease.holder} 응답 없음 — 서버 상태를 다시 확인합니다",
        },
    )
    publish_line(task.task_id, lost)
    if execution is None:
        outcome = Outcome.ABORTED if task.stop_requested else Outcome.FAILED_ROLLED_BACK
        reason = "실행 작업자가 서버에 접속하기 전에 중단되었습니다; 아무것도 변경하지 않았습니다"
        return _report(task, outcome, reason, lease, {})
    if execution.outcome != Outcome.RUNNING:
        return _report_finished(task, execution, lease)
    return Recovery(task, execution, lease).run()


def _report(task, outcome: str, reason: str, lease, servers: dict, package: dict | None = None) -> dict:
    # One transaction: the task's end and the chain's account of the recovery land together.
    with transaction.atomic():
        if outcome == Outcome.SUCCEEDED:
            control.execution_finished(task.pk, package or {})
        else:
            control.execution_failed(task.pk, outcome, reason)
        task.refresh_from_db()
        _record_recovery(task, outcome, reason, lease, servers)
        _alert_owner(task, f"[작업자 유실 복구] {task.task_id}: {task.get_status_display()} — {reason}"[:900])
    return {"task": task.task_id, "outcome": outcome, "status": task.status, "reason": reason}


def _record_recovery(task, outcome: str, reason: str, lease, servers: dict) -> None:
    entry = audit.record(
        "system",
        "execution.recovered",
        task=task.task_id,
        target=task.system.code,
        payload={
            "institution": task.system.institution.code,
            "outcome": outcome,
            "status": task.status,
            "reason": reason[:1000],
            "holder": lease.holder,
            "servers": servers,
            "text": f"워커 유실 복구 완료: {task.get_status_display()} — {reason[:200]}",
        },
    )
    publish_line(task.task_id, entry)


def _alert_owner(task, text: str) -> None:
    """execution_failed tells the requester and the PM; the system's owner hears it too."""
    from governance.routing import ownership_of

    ownership = ownership_of(task)
    people = {ownership.owner, ownership.deputy} if ownership else set()
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


class Recovery:
    """Re-verify and roll back the servers an interrupted execution still holds."""

    def __init__(self, task, execution, lease):
        self.task = task
        self.execution = execution
        self.lease = lease

    def _engine(self):
        from . import playbooks
        from .engine import Engine
        from .recorder import Recorder
        from .rolling import RolloutStrategy
        from .services import ArtifactStore, criteria_for, validate_parameters

        task = self.task
        name = task.playbook or task.sub_type
        parameters = validate_parameters(name, task.parameters)
        playbook = playbooks.build(name, parameters)
        strategy = RolloutStrategy.from_parameters(parameters.get("rollout"), tier=task.system.tier)
        self.runs = list(self.execution.server_runs.select_related("server__system__institution", "server__credential"))
        servers = [r.server for r in self.runs if r.server is not None]
        engine = Engine(
            playbook=playbook,
            servers=servers,
            strategy=strategy,
            artifacts=ArtifactStore(),
            task=task,
            actor="system",
            stop_check=lambda: None,
            health_overrides=playbook.health_limits,
            criteria_by_system=criteria_for({s.system_id for s in servers}),
        )
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

    def _done_steps(self, runs) -> dict[int, set[str]]:
        done: dict[int, set[str]] = {}
        for run_id, name in StepResult.objects.filter(server_run__in=runs, phase="forward", state="OK").values_list(
            "server_run", "name"
        ):
            done.setdefault(run_id, set()).add(name)
        return done

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

    def run(self, reason_prefix: str = "") -> dict:
        task = self.task
        try:
            engine = self._engine()
        except Exception as exc:
            return _report(
                task, Outcome.STATE_UNCERTAIN, f"작업자를 잃었고 계획을 다시 만들 수 없습니다: {exc}", self.lease, {}
            )
        held = set(ServerLease.objects.filter(lease__task_id=task.pk).values_list("server_ref", flat=True))
        in_flight = [r for r in self.runs if r.state == RunState.RUNNING]
        last = self._last_steps(in_flight)
        for run in in_flight:
            step = last.get(run.pk, "")
            engine.records.put(
                _server_record(
                    run.server_ref,
                    RunState.UNCERTAIN,
                    f"작업자 유실: '{step or '시작'}' 이후 상태 불확실 (worker lost)",
                )
            )
        engine.recorder.drain()
        engine._event(
            "execution", "RECOVERING", "worker lost; re-verifying servers", in_flight=[r.server_ref for r in in_flight]
        )
        touched = [
            r
            for r in self.runs
            if r.server is not None and r.server_ref in held and r.state not in (RunState.PENDING, RunState.REFUSED)
        ]
        for run in self.runs:
            if run.state == RunState.PENDING:
                engine.records.put(_server_record(run.server_ref, RunState.ABORTED, "not started: the worker was lost"))
        contexts = self._contexts(engine, touched)
        done = self._done_steps(touched)
        by_ref = {r.server_ref: r for r in touched}
        report: dict[str, dict] = {}

        def restore(ctx):
            run = by_ref[ctx.server.server_id]
            try:
                obs = journal.observe(engine.playbook, ctx, done.get(run.pk, set()))
            except Exception as exc:
                report[ctx.server.server_id] = {"observed": None, "error": str(exc)[:300]}
                engine._server(ctx, RunState.UNCERTAIN, f"재검증 실패: {exc}")
                return "uncertain"
            entry = report[ctx.server.server_id] = {"observed": obs.facts, "changed": obs.changed}
            if obs.problem:
                engine._server(ctx, RunState.ROLLBACK_FAILED, obs.problem)
                return "failed"
            if not obs.changed:
                entry["action"] = "none"
                engine._server(ctx, RunState.ROLLED_BACK, "re-verified on the server: nothing to undo")
                return None
            ctx.state = obs.state
            entry["action"] = "rollback"
            failure = engine._rollback_one(ctx, failed=run in in_flight)
            return "failed" if failure else None

        results = engine.parallel(list(contexts.values()), restore)
        outcome, reason = self._outcome(results, last, reason_prefix)
        result = engine._finish(outcome, reason, [])
        return _report(task, outcome, reason, self.lease, report, result.package)

    def _last_steps(self, runs) -> dict[int, str]:
        last: dict[int, str] = {}
        for run_id, name in (
            StepResult.objects.filter(server_run__in=runs)
            .order_by("server_run", "seq")
            .values_list("server_run", "name")
        ):
            last[run_id] = name
        return {r.pk: last.get(r.pk, "") for r in runs} if runs else {}

    def _outcome(self, results: dict, last: dict, prefix: str) -> tuple[str, str]:
        where = (
            ", ".join(f"{r.server_ref} '{last.get(r.pk) or '시작'}' 단계 이후" for r in self.runs if r.pk in last)
            or "서버 사이"
        )
        base = f"{prefix + '; ' if prefix else ''}작업자 {self.lease.holder}을(를) 잃었습니다 ({where})"
        if any(v == "failed" for v in results.values()):
            return Outcome.MANUAL_INTERVENTION_REQUIRED, f"{base}; 롤백 실패: 수동 조치가 필요합니다"
        if any(v == "uncertain" for v in results.values()):
            return Outcome.STATE_UNCERTAIN, f"{base}; 재검증하지 못한 서버가 있습니다"
        count = len(results)
        if self.task.stop_requested or OpsTask.objects.filter(pk=self.task.pk, stop_requested=True).exists():
            return Outcome.ABORTED, f"{base}; 킬 스위치로 중지되어 서버 {count}대를 복구했습니다"
        return Outcome.FAILED_ROLLED_BACK, f"{base}; 서버 {count}대를 재검증하고 롤백했습니다"


def _server_record(server_id: str, state: str, message: str):
    from .rolling import Record

    return Record("server", server_id, {"state": state, "message": message})
