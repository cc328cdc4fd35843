"""Execution services: artifacts, parameter validation, running an approved task.

Governance calls in only by name: ``async_task("execution.tasks.run_task", pk)`` and the
PLAYBOOK_VALIDATOR setting (``execution.services.validate_parameters``).
"""

from __future__ import annotations

import hashlib
import logging
from pathlib import Path

from django.conf import settings
from django.utils import translation

import audit
from cmdb.models import HealthCriteria
from governance import attachments, control, plans
from governance.attachments import SHA256_RE, attachment_root, store_attachment

from . import playbooks
from .agent.runner import RoundOutcome, run_round
from .engine import Engine, EngineResult
from .errors import BLOCK_PREFIX as SANITIZER_BLOCK
from .errors import ParameterError, Refused
from .models import Outcome
from .plan import normalise_parameters
from .rolling import RolloutStrategy

log = logging.getLogger(__name__)
CHUNK = 1 << 20


class ArtifactStore:
    """Uploaded files under MEDIA_ROOT/artifacts/<sha256>: content-addressed, write-once.

    SSL private keys are stored sealed with the vault (governance.attachments); they are
    opened here, in the worker, only when a playbook reads or uploads them."""

    def __init__(self, root: Path | None = None):
        self.root = Path(root) if root else attachment_root()

    def file(self, sha256: str) -> Path:
        if not SHA256_RE.match(sha256):
            raise Refused(f"SHA-256이 아닙니다: {sha256!r}")
        return self.root / sha256

    def path(self, sha256: str) -> Path | bytes:
        """What the engine uploads: the stored file, or for a sealed key its opened bytes,
        so the key is never written to the worker's disk in clear."""
        file = self.file(sha256)
        if file.is_file() and attachments.is_sealed(file):
            return self.read(sha256)
        return file

    def _opened(self, sha256: str, file: Path) -> bytes:
        from cmdb.vault import VaultError

        try:
            return attachments.unseal(file.read_bytes(), sha256)
        except VaultError as exc:
            raise Refused(f"아티팩트 {sha256[:12]}…을(를) 열 수 없습니다: {exc}") from exc

    def verify(self, sha256: str) -> Path:
        """The pre-check 'artifact checksum': the stored bytes still hash to what was approved."""
        path = self.file(sha256)
        if not path.is_file():
            raise Refused(f"아티팩트 {sha256[:12]}…이(가) 아티팩트 저장소에 없습니다")
        digest = hashlib.sha256()
        if attachments.is_sealed(path):
            digest.update(self._opened(sha256, path))
        else:
            with path.open("rb") as handle:
                while chunk := handle.read(CHUNK):
                    digest.update(chunk)
        if digest.hexdigest() != sha256:
            raise Refused(
                f"아티팩트 {sha256[:12]}…이(가) 손상되었습니다: 내용의 해시가 {digest.hexdigest()[:12]}…입니다"
            )
        return path

    def read(self, sha256: str) -> bytes:
        path = self.verify(sha256)
        return self._opened(sha256, path) if attachments.is_sealed(path) else path.read_bytes()


def store_artifact(fileobj_or_bytes, name: str) -> dict:
    """Store an uploaded file; returns {sha256, path, size, name} to put into task parameters.

    Attachments belong to the ticket, so the one implementation lives in governance.
    """
    return store_attachment(fileobj_or_bytes, name)


def validate_parameters(sub_type: str, parameters: dict) -> dict:
    """PLAYBOOK_VALIDATOR for governance.submit_task: raises ParameterError (a ValueError) whose
    ``errors`` name each field (``log_path``, ``rollout.drain_flag``, ``health.url``).

    This checks what needs no server: types, ranges, patterns, path syntax, which health
    thresholds a request may set. Whether a path lies under a server's CMDB roots is decided
    per target when the plan is rendered (execution.plan), also before anyone approves."""
    if not isinstance(parameters, dict | None):
        raise ParameterError({"parameters": "객체(JSON)여야 합니다"})
    parameters = normalise_parameters(sub_type, parameters)
    errors: dict[str, str] = {}
    for check in (
        lambda: playbooks.build(sub_type, parameters),
        lambda: RolloutStrategy.from_parameters(parameters.get("rollout")),
    ):
        try:
            check()
        except ParameterError as exc:
            errors.update(exc.errors)
    if errors:
        raise ParameterError(errors)
    return parameters


def criteria_for(systems) -> dict:
    return {c.system_id: c for c in HealthCriteria.objects.filter(system__in=list(systems))}


def run_task(task_pk: int) -> str | None:
    """Run an APPROVED task to PENDING_PM_VALIDATION or a failure state. Quiet if it must not run."""
    # What a run writes (reasons, timeline lines, the result package) is stored once and read by
    # everyone, so it is written in the site's language, never in that of whoever started it.
    with translation.override(settings.LANGUAGE_CODE):
        return _run_task(task_pk)


def _run_task(task_pk: int) -> str | None:
    task = control.execution_started(task_pk)
    if task is None:
        log.info("task %s not started (gone, not approved or stopped)", task_pk)
        return None
    try:
        result = execute_task(task)
    except Exception as exc:  # a crash mid-run leaves servers in an unknown state: say so, loudly
        log.exception("execution of %s crashed", task.task_id)
        control.execution_failed(task.pk, Outcome.STATE_UNCERTAIN, f"실행 엔진이 비정상 종료되었습니다: {exc!r}")
        return Outcome.STATE_UNCERTAIN
    if result.outcome == Outcome.SUCCEEDED:
        control.execution_finished(task.pk, result.package)
    else:
        control.execution_failed(task.pk, result.outcome, result.reason, result.package)
    return result.outcome


def execute_task(task) -> EngineResult | RoundOutcome | _Refusal:
    """Run an approved task, after checking that what runs is what was approved: the playbook
    version pinned at approval is the installed one, and the plan rendered now from the stored
    parameters, the targets and the current CMDB hashes to the approved plan's SHA-256.
    Any difference refuses before a connection is opened (and alerts the owner and the PMs)."""
    name = task.playbook or task.sub_type
    try:
        parameters = validate_parameters(name, task.parameters)
        playbook = playbooks.build(name, parameters)
        strategy = RolloutStrategy.from_parameters(parameters.get("rollout"), tier=task.system.tier)
    except ParameterError as exc:
        return refuse_parameters(exc, task)
    if task.playbook_version != playbook.VERSION:
        approved = f"v{task.playbook_version}" if task.playbook_version else "고정 버전 없음"
        return _Refusal(
            f"{playbook.NAME} {approved}(으)로 승인되었으나 설치된 버전은 v{playbook.VERSION}입니다; "
            "아무것도 변경하지 않았습니다"
        )
    targets = list(task.targets.with_related())
    servers = [s for s in targets if s.active]
    if not servers:
        return _Refusal("활성 대상 서버가 없습니다; 아무것도 변경하지 않았습니다")
    try:
        current = plans.plan_sha256(plans.render_plan(name, parameters, task.system, targets, task_ref=task.task_id))
    except ParameterError as exc:
        return refuse_parameters(exc, task)
    approved_sha = getattr(task, "plan_sha256", "") or ""
    if current != approved_sha:
        plans.alert_plan_changed(task, approved_sha, current)
        return _Refusal(
            f"실행 계획이 승인된 것과 다릅니다 (승인 {approved_sha[:12] or '없음'}, "
            f"현재 {current[:12]}); 아무것도 변경하지 않았습니다"
        )
    if getattr(playbook, "AGENT", False):  # CODE_FIX: the work agent's round, no server touched
        return run_round(task, playbook)
    return engine_for(task, playbook, servers, strategy).run()


def engine_for(task, playbook, servers: list, strategy: RolloutStrategy, **options) -> Engine:
    """The rolling engine for a task's servers, as a run and the reaper's recovery both build
    it: the artifact store, the task's stop flag checked between steps, the playbook's health
    limits and the health criteria of the servers' systems."""
    return Engine(
        playbook=playbook,
        servers=servers,
        strategy=strategy,
        artifacts=ArtifactStore(),
        task=task,
        stop_check=lambda: control.should_stop(task.pk),
        health_overrides=playbook.health_limits,
        criteria_by_system=criteria_for({s.system_id for s in servers}),
        **options,
    )


class _Refusal:
    """Parameters or targets refused before an Execution row exists."""

    def __init__(self, reason: str):
        self.outcome = Outcome.FAILED_ROLLED_BACK
        self.reason = reason
        self.package: dict = {}


def refuse_parameters(exc: ParameterError, task=None) -> _Refusal:
    blocked = [str(m) for m in exc.errors.values() if SANITIZER_BLOCK in str(m)]
    if blocked and task is not None:
        # A command the sanitizer refuses is a security event wherever it is caught.
        audit.record(
            None,
            "security.violation",
            task=task.task_id,
            target=task.system.code,
            payload={"institution": task.system.institution.code, "reason": blocked[0][:500]},
        )
    return _Refusal(f"매개변수가 거부되어 아무것도 변경하지 않았습니다: {exc}")
