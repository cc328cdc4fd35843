"""Execution services: artifacts, parameter validation, running an approved task.

Governance calls in only by name: ``async_task("execution.tasks.run_task", pk)`` and the
PLAYBOOK_VALIDATOR setting (``execution.services.validate_parameters``).
"""

from __future__ import annotations

import hashlib
import logging
from pathlib import Path

from django.conf import settings

from cmdb.models import HealthCriteria, Server
from governance import attachments
from governance import services as governance
from governance.attachments import store_attachment

from . import playbooks
from .engine import Engine, EngineResult
from .models import Outcome
from .playbooks.base import ParameterError, Refused
from .rolling import RolloutStrategy

log = logging.getLogger(__name__)
CHUNK = 1 << 20


class ArtifactStore:
    """Uploaded files under MEDIA_ROOT/artifacts/<sha256>: content-addressed, write-once.

    SSL private keys are stored sealed with the vault (governance.attachments); they are
    opened here, in the worker, only when a playbook reads or uploads them."""

    def __init__(self, root: Path | None = None):
        self.root = Path(root or Path(settings.MEDIA_ROOT) / "artifacts")

    def file(self, sha256: str) -> Path:
        if len(sha256) != 64 or any(c not in "0123456789abcdef" for c in sha256):
            raise Refused(f"not a SHA-256: {sha256!r}")
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
            raise Refused(f"artifact {sha256[:12]}… cannot be opened: {exc}") from exc

    def verify(self, sha256: str) -> Path:
        """The pre-check 'artifact checksum': the stored bytes still hash to what was approved."""
        path = self.file(sha256)
        if not path.is_file():
            raise Refused(f"artifact {sha256[:12]}… is not in the artifact store")
        digest = hashlib.sha256()
        if attachments.is_sealed(path):
            digest.update(self._opened(sha256, path))
        else:
            with path.open("rb") as handle:
                while chunk := handle.read(CHUNK):
                    digest.update(chunk)
        if digest.hexdigest() != sha256:
            raise Refused(f"artifact {sha256[:12]}… is corrupted: its content hashes to {digest.hexdigest()[:12]}…")
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
    """PLAYBOOK_VALIDATOR for governance.submit_task: raises ParameterError (a ValueError)."""
    parameters = dict(parameters or {})
    artifact = parameters.get("artifact")
    if isinstance(artifact, dict) and artifact.get("sha256") and "artifact_sha256" in playbooks.get(sub_type).PARAMS:
        parameters.setdefault("artifact_sha256", artifact["sha256"])
    playbooks.build(sub_type, parameters)
    RolloutStrategy.from_parameters(parameters.get("rollout"))
    return parameters


def criteria_for(systems) -> dict:
    return {c.system_id: c for c in HealthCriteria.objects.filter(system__in=list(systems))}


def run_task(task_pk: int) -> str | None:
    """Run an APPROVED task to PENDING_PM_VALIDATION or a failure state. Quiet if it must not run."""
    task = governance.execution_started(task_pk)
    if task is None:
        log.info("task %s not started (gone, not approved or stopped)", task_pk)
        return None
    try:
        result = execute_task(task)
    except Exception as exc:  # a crash mid-run leaves servers in an unknown state: say so, loudly
        log.exception("execution of %s crashed", task.task_id)
        governance.execution_failed(task.pk, Outcome.STATE_UNCERTAIN, f"the execution engine crashed: {exc!r}")
        return Outcome.STATE_UNCERTAIN
    if result.outcome == Outcome.SUCCEEDED:
        governance.execution_finished(task.pk, result.package)
    else:
        governance.execution_failed(task.pk, result.outcome, result.reason)
    return result.outcome


def execute_task(task) -> EngineResult | _Refusal:
    try:
        parameters = validate_parameters(task.playbook or task.sub_type, task.parameters)
        playbook = playbooks.build(task.playbook or task.sub_type, parameters)
        strategy = RolloutStrategy.from_parameters(parameters.get("rollout"), tier=task.system.tier)
    except ParameterError as exc:
        return refuse_parameters(exc)
    if task.playbook_version and task.playbook_version != playbook.VERSION:
        return _Refusal(f"approved for {playbook.NAME} v{task.playbook_version}, installed v{playbook.VERSION}; "
                        f"nothing was changed")
    servers = list(task.targets.with_related().filter(active=True))
    if not servers:
        return _Refusal("no active target servers; nothing was changed")
    engine = Engine(playbook=playbook, servers=servers, strategy=strategy, artifacts=ArtifactStore(), task=task,
                    stop_check=lambda: governance.should_stop(task.pk), health_overrides=parameters.get("health"),
                    criteria_by_system=criteria_for({s.system_id for s in servers}))
    return engine.run()


class _Refusal:
    """Parameters or targets refused before an Execution row exists."""

    def __init__(self, reason: str):
        self.outcome = Outcome.FAILED_ROLLED_BACK
        self.reason = reason
        self.package = {}


def refuse_parameters(exc: ParameterError) -> _Refusal:
    return _Refusal(f"parameters refused, nothing was changed: {exc}")


def servers_for(ids) -> list[Server]:
    return list(Server.objects.with_related().filter(server_id__in=ids))
