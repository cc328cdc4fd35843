"""The execution plan: every playbook rendered without running it.

``render_plan`` (settings.PLAN_RENDERER, reached by governance.plans) runs a playbook's
forward(), the engine's safety gate and drain hooks, and its rollback() against a PlanContext
instead of a server: each ``run`` is recorded as the exact command line (secrets masked as
****), each ``put`` as an upload with its size and SHA-256, each worker-side check with what
it probes. Command output is empty while planning, so a playbook returns early where it
would judge remote output (``ctx.planning``); what runs is listed, never guessed.

Servers whose step lists come out identical share one step set. Paths in the request are
confined under each server's CMDB roots here (Param.confine), so a path outside them is a
ParameterError naming the field when the request is filed, and again when the engine
renders the plan before running and compares its SHA-256 with the approved one.

The plan is deterministic: names that differ per run (backup directories, rotated logs)
derive from the task reference, servers are sorted, and nothing reads the clock.
"""

from __future__ import annotations

import json
import posixpath
import re
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from audit.scrub import fold
from cmdb.models import HealthCriteria
from governance.attachments import attachment_root, is_sealed

from . import playbooks
from .errors import ParameterError, Refused, StepFailed
from .gateways import check_single_gateway
from .healthcheck import Health, url_problem
from .parameters import HEALTH_LIMITS, q, tighter
from .playbooks.base import HealthSpec, Playbook
from .profiles import VARIANT_STEP, NoVariant, policy_problems
from .rolling import RolloutStrategy, drain_flag_path, plan_groups

MASK = "****"
_PEM = re.compile(r"-----BEGIN [A-Z ]*PRIVATE KEY-----.*?-----END [A-Z ]*PRIVATE KEY-----", re.S)
_SECRETISH = re.compile(r"(?i)(password|passwd|secret|token|private[_ ]key|passphrase)(\s*[=:]\s*)(\S+)")
# Must match the engine's own hooks (execution.engine): the plan lists what the engine runs.
LOG_TAIL_LINES = 60
RESTARTS = {"APP_DEPLOY", "SERVICE_RESTART", "SSL_REPLACE"}  # playbooks whose health is an HTTP check


# A command without any of these (case-folded, as _SECRETISH matches) has nothing it masks.
_SECRET_WORDS = ("passw", "secret", "token", "private", "passphrase")


def mask(command: str) -> str:
    """Secrets masked the same way in every process (never the process's list of known secrets,
    which would make the plan's hash depend on what the process happened to decrypt)."""
    if "-----BEGIN" in command:
        command = _PEM.sub(MASK, command)
    folded = fold(command)
    if not any(word in folded for word in _SECRET_WORDS):
        return command
    return _SECRETISH.sub(rf"\1\2{MASK}", command)


def normalise_parameters(sub_type: str, parameters: dict | None) -> dict:
    """An uploaded artifact's record fills in the playbook's artifact_sha256."""
    parameters = dict(parameters or {})
    artifact = parameters.get("artifact")
    if isinstance(artifact, dict) and artifact.get("sha256") and "artifact_sha256" in playbooks.get(sub_type).PARAMS:
        parameters.setdefault("artifact_sha256", artifact["sha256"])
    return parameters


class PlannedResult:
    """What ``run`` returns while planning: no output, exit 0."""

    stdout = ""
    stderr = ""
    exit_code = 0
    timed_out = False
    killed = False
    output_sha256 = ""
    duration = 0.0


class ArtifactRef(str):
    """ctx.artifact_path() while planning: the SHA-256 of a stored file, not a local path."""


class Uploads:
    """Name and size of each file a plan uploads, read once per SHA-256."""

    def __init__(self, parameters: dict):
        self.names: dict[str, str] = {}
        self.declared_sizes: dict[str, int] = {}
        records = (
            list((parameters.get("_meta") or {}).get("attachments") or [])
            if isinstance(parameters.get("_meta"), dict)
            else []
        )
        if isinstance(parameters.get("artifact"), dict):
            records.append(parameters["artifact"])
        for record in records:
            if not isinstance(record, dict):
                continue
            sha = str(record.get("sha256") or "").lower()
            name = str(record.get("name") or "")
            if sha and re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._+-]{0,127}", name):
                self.names.setdefault(sha, name)
            if sha and isinstance(record.get("size"), int) and not isinstance(record.get("size"), bool):
                self.declared_sizes.setdefault(sha, record["size"])
        self.sizes: dict[str, int | None] = {}

    def size(self, sha256: str) -> int | None:
        if sha256 not in self.sizes:
            self.sizes[sha256] = self._size(sha256)
        return self.sizes[sha256]

    def _size(self, sha256: str) -> int | None:
        path = attachment_root() / sha256  # the name is a validated SHA-256 (Param "sha256")
        try:
            size = path.stat().st_size
            sealed = is_sealed(path)
        except OSError:
            return None  # filing refuses a missing attachment; the engine refuses it before any server
        if sealed:
            return self.declared_sizes.get(sha256)  # a vault-sealed key: its stored form is longer
        return size

    def describe(self, local: Any, remote: str) -> dict:
        sha = str(local)
        return {
            "name": self.names.get(sha) or posixpath.basename(remote),
            "size": self.size(sha),
            "sha256": sha,
            "remote": remote,
        }


# What the approver reads beside steps that run at the same time (execution.staging): fixed
# text, part of the hashed plan.
CONCURRENT_WITH_UPLOAD = "업로드와 동시에 실행"
UPLOAD_ALONGSIDE = (
    "다음 단계와 동시에 전송 (별도 SFTP 채널): {names}. SHA-256 확인과 이동은 업로드와 이 단계들이 "
    "모두 성공한 뒤 {verify} 단계에서"
)
CONCURRENT_WITH_CHECK = "{check} 점검과 동시에 실행"
# Steps sent to the server as one chain (ServerContext.run_chain): fixed text, part of the hashed plan.
CHAIN_FIRST = (
    "다음 단계와 함께 한 번에 서버로 보냄: {names}. 서버는 앞 단계가 성공해야 다음 단계를 시작하며, "
    "실패·시간 초과·중지 시 남은 단계는 시작하지 않음"
)
CHAIN_NEXT = "{previous} 단계가 성공하면 서버에서 바로 이어서 실행"
CHECK_ALONGSIDE = "다음 단계와 동시에 점검 (작업 서버에서): {names}"


class PlannedBeside:
    """``put_behind`` / ``check_beside`` while planning: the commands run before ``finish`` are
    marked as running at the same time as it; an upload's ``finish`` then lists the SHA-256 check
    and move it runs afterwards (``verify``: the artifact's SHA-256 and the target path)."""

    def __init__(self, ctx: PlanContext, step: dict, verify: tuple[str, str] | None = None):
        self.ctx, self.step, self.verify = ctx, step, verify
        self.alongside: list[str] = []
        self.marker = CONCURRENT_WITH_UPLOAD if verify else CONCURRENT_WITH_CHECK.format(check=step["name"])

    def finish(self, *, raise_failure: bool = True) -> None:
        from .staging import VERIFY_SUFFIX
        from .transport import PARTIAL_SUFFIX, hash_and_move

        if self.ctx.beside is not self:
            return
        self.ctx.beside = None
        names = ", ".join(self.alongside) or "-"
        if self.verify is None:
            self.step["concurrent"] = CHECK_ALONGSIDE.format(names=names)
            return
        sha256, remote = self.verify
        verify = self.step["name"] + VERIFY_SUFFIX
        self.step["concurrent"] = UPLOAD_ALONGSIDE.format(names=names, verify=verify)
        self.ctx.run(verify, hash_and_move(remote + PARTIAL_SUFFIX, sha256, remote), timeout=120)

    def cancel(self) -> None:
        if self.ctx.beside is self:
            self.ctx.beside = None


class PlanContext:
    """The Context a playbook sees while its plan is rendered: it records, it never connects."""

    planning = True

    def __init__(self, server, health: Health, task_ref: str, uploads: Uploads):
        self.server = server
        self.health: HealthSpec = health  # what Context promises the playbooks
        self.task_ref = task_ref
        self.uploads = uploads
        self.state: dict = {}
        self.data: dict = {}
        self.phase = "forward"
        self.steps: list[dict] = []
        self.checks: list[dict] = []
        self.env_variant = None  # the server's playbook variant (execution.profiles), set per plan
        self.beside: PlannedBeside | None = None  # what the next steps run beside (execution.staging)

    def run(
        self,
        name: str,
        command: str,
        *,
        timeout: float = 60,
        ok_codes: tuple[int, ...] = (0,),
        max_output: int = 65536,
        shell: str | None = None,
    ) -> PlannedResult:
        step: dict[str, Any] = {"name": name, "command": mask(command), "timeout": timeout}
        if tuple(ok_codes) != (0,):
            step["ok_codes"] = "any" if len(ok_codes) >= 256 else list(ok_codes)
        if self.beside is not None:
            step["concurrent"] = self.beside.marker
            self.beside.alongside.append(name)
        self.steps.append(step)
        return PlannedResult()

    def run_chain(self, steps: list) -> list[PlannedResult]:
        """Steps sent as one chain: each recorded as run() records it, marked as chained."""
        results = []
        for index, step in enumerate(steps):
            step.started()
            results.append(self.run(step.name, step.command, timeout=step.timeout, ok_codes=step.ok_codes))
            step.ended("OK")
            names = ", ".join(s.name for s in steps[1:])
            previous = steps[index - 1].name
            self.steps[-1]["chain"] = CHAIN_NEXT.format(previous=previous) if index else CHAIN_FIRST.format(names=names)
        return results

    def run_one(self, step) -> PlannedResult:
        """A step run by itself: recorded as run() records it."""
        step.started()
        result = self.run(step.name, step.command, timeout=step.timeout, ok_codes=step.ok_codes)
        step.ended("OK")
        return result

    def put(self, name: str, local: Any, remote: str) -> None:
        self.steps.append({"name": name, "upload": self.uploads.describe(local, remote)})

    def put_behind(self, name: str, local: Any, remote: str) -> PlannedBeside:
        step = {"name": name, "upload": self.uploads.describe(local, remote)}
        self.steps.append(step)
        self.beside = PlannedBeside(self, step, (str(local), remote))
        return self.beside

    def check_beside(self, name: str, fn, plan: dict) -> PlannedBeside:
        self.check(name, fn, plan)
        self.beside = PlannedBeside(self, self.steps[-1])
        return self.beside

    def check(self, name: str, fn, plan: dict | None = None) -> None:
        check = self.addressed(plan or {"kind": "worker"})
        self.steps.append({"name": name, "check": check})
        self.checks.append({"step": name, **check})

    def note(self, name: str, check: dict) -> None:
        """A step the run records without probing anything (the chosen environment variant):
        listed with the steps, not among the health checks."""
        self.steps.append({"name": name, "check": check})

    def expect(self, check: dict) -> None:
        """What a command's output is judged by (post-check: a new PID, no ERROR in the log)."""
        step = self.steps[-1]
        check = self.addressed(check)
        step.setdefault("expect", []).append(check)
        self.checks.append({"step": step["name"], **check})

    def addressed(self, check: dict) -> dict:
        """The server's own address as {ip} / {hostname}, so servers that differ only in their
        address share a step set; each set lists every server's address under "hosts"."""
        check = dict(check)
        own = {str(self.server.ip): "{ip}", str(self.server.hostname or "").lower(): "{hostname}"}
        if check.get("host") and str(check["host"]).lower() in own:
            check["host"] = own[str(check["host"]).lower()]
        if check.get("url"):
            parts = urlsplit(check["url"])
            placeholder = own.get((parts.hostname or "").lower())
            if placeholder:
                netloc = placeholder + (f":{parts.port}" if parts.port else "")
                check["url"] = urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))
        return check

    def sleep(self, seconds: float) -> None:
        """Nothing waits while planning."""

    def journaled(self) -> None:
        """Nothing is recorded while planning."""

    def artifact_path(self, sha256: str) -> ArtifactRef:
        return ArtifactRef(sha256)

    def root_path(self, path: str) -> str:
        return drain_flag_path(self.server, path)


def render_plan(sub_type: str, parameters: dict, system, targets: list, task_ref: str = "") -> dict[str, Any]:
    """The plan of ``sub_type`` with these parameters on these CMDB servers (see governance.plans
    for the shape). Raises ParameterError naming each field that cannot work on some server."""
    parameters = normalise_parameters(sub_type, parameters)
    playbook = playbooks.build(sub_type, parameters)
    strategy = RolloutStrategy.from_parameters(parameters.get("rollout"), tier=system.tier)
    everyone = sorted(targets, key=lambda s: s.server_id)
    servers = [s for s in everyone if s.active]
    check_single_gateway(servers)  # one task, one worker cluster that reaches every server
    criteria = {c.system_id: c for c in HealthCriteria.objects.filter(system_id__in={s.system_id for s in servers})}
    uploads = Uploads(parameters)
    errors: dict[str, str] = {}
    rendered: dict[str, dict] = {}
    variants = env_variants(servers)
    forbidden = policy_problems(servers)
    for server_id, problem in forbidden.items():
        if server_id not in variants:  # no schema, so no gate before its first command: the plan refuses
            errors.setdefault("targets", problem)
    for server in servers:
        try:
            rendered[server.server_id] = render_server(
                playbook, strategy, server, criteria.get(server.system_id), task_ref, uploads, variants
            )
        except ParameterError as exc:
            for name, message in exc.errors.items():
                errors.setdefault(name, message)
        except Refused as exc:
            errors.setdefault("targets", str(exc))
    if errors:
        raise ParameterError(errors)
    profile_notes = (
        add_env_scans(rendered, servers)
        + [f"환경 변형 없음 (실행 시 중지): {reason}" for reason in rendered_refusals(rendered)]
        + [f"보안 정책 (실행 시 중지): {problem}" for problem in forbidden.values()]
    )
    return {
        "playbook": playbook.NAME,
        "playbook_version": playbook.VERSION,
        "read_only": playbook.READ_ONLY,
        "rollout": rollout_section(playbook, strategy, servers),
        "uploads": sorted(
            {
                json.dumps(step["upload"], sort_keys=True): step["upload"]
                for server in rendered.values()
                for step in server["steps"]
                if "upload" in step
            }.values(),
            key=lambda u: (u["remote"], u["sha256"]),
        ),
        "step_sets": step_sets(rendered),
        "warnings": warnings(playbook, strategy, everyone, servers, rendered) + profile_notes,
    }


def add_env_scans(rendered: dict[str, dict], servers: list) -> list[str]:
    """The runtime scan as the first step of each server with an environment schema, and the
    differences its stored scan shows (execution.profiles)."""
    from django.conf import settings

    from cmdb.models import EnvSchema

    from .profiles import SCAN_STEP, SCAN_TIMEOUT, plan_notes, scan_command

    if not getattr(settings, "PROFILE_SCAN_BEFORE_RUN", True):
        return []
    by_pk = {s.pk: s for s in servers}
    for schema in EnvSchema.objects.filter(server_id__in=list(by_pk)):
        server = by_pk[schema.server_id]
        step = {"name": SCAN_STEP, "command": mask(scan_command(server, schema)), "timeout": SCAN_TIMEOUT}
        rendered[server.server_id]["steps"].insert(0, step)
    return plan_notes(servers)


def env_variants(servers: list) -> dict:
    """The playbook variant of each server with an environment schema (execution.profiles)."""
    from django.conf import settings

    from .profiles import planned_variants

    if not getattr(settings, "PROFILE_SCAN_BEFORE_RUN", True):
        return {}
    return planned_variants(servers)


def rendered_refusals(rendered: dict[str, dict]) -> list[str]:
    return [
        step["check"]["refused"]
        for server_id in sorted(rendered)
        for step in rendered[server_id]["steps"]
        if "refused" in step.get("check", {})
    ]


def render_server(
    playbook: Playbook,
    strategy: RolloutStrategy,
    server,
    criteria,
    task_ref: str,
    uploads: Uploads,
    variants: dict | None = None,
) -> dict:
    base = Health.for_server(server, criteria)
    for key, value in playbook.health_limits.items():
        configured = getattr(base, key)
        if not tighter(key, value, configured):
            rule = "이하" if HEALTH_LIMITS[key][1] == "lower" else "이상"
            raise ParameterError(
                {
                    f"health.{key}": f"{server.server_id}: CMDB 기준({configured:g})보다 느슨하게 할 수 "
                    f"없습니다 (기준 {rule}만 허용)"
                }
            )
    health = Health.for_server(server, criteria, playbook.health_limits)
    if health.url:
        problem = url_problem(health.url, server)
        if problem:
            raise ParameterError({"targets": f"CMDB의 헬스 체크 URL을 쓸 수 없습니다: {problem}"})
    ctx = PlanContext(server, health, task_ref, uploads)
    ctx.env_variant = (variants or {}).get(server.server_id)
    drain = ""
    if strategy.drain_flag:
        drain = q(drain_flag_path(server, strategy.drain_flag))
        ctx.steps.append({"name": "drain", "command": f"touch {drain}", "timeout": 15})
    if isinstance(ctx.env_variant, NoVariant) and playbook.SERVICE:
        # No command set fits this server's environment: the run stops it before any change.
        ctx.note(VARIANT_STEP, {"kind": "env-variant", "refused": str(ctx.env_variant)})
        return {"steps": ctx.steps, "health": ctx.checks, "rollback": [], "hosts": hosts_of(server)}
    playbook.forward(ctx)
    if playbook.ROLLING and strategy.safety_gate:
        ctx.phase = "check"
        try:
            playbook.verify(ctx)
        except StepFailed:
            pass  # a gate that judges output it does not have while planning: its commands are listed
    if drain:
        ctx.steps.append({"name": "undrain", "command": f"rm -f -- {drain}", "timeout": 15})
    steps, checks = ctx.steps, ctx.checks
    rollback: list[dict] = []
    if playbook.ROLLING:
        ctx.phase, ctx.steps, ctx.checks = "rollback", [], []
        if health.log_path:
            # On the server that failed, the engine first keeps the log's tail for the result package.
            ctx.run(
                "log-tail", f"tail -n {LOG_TAIL_LINES} {q(health.log_path)}", timeout=15, ok_codes=tuple(range(256))
            )
            ctx.steps[-1]["only"] = "failed_server"
        playbook.rollback(ctx)
        if drain:
            ctx.steps.append({"name": "undrain", "command": f"rm -f -- {drain}", "timeout": 15})
        rollback = ctx.steps
    return {
        "steps": steps,
        "health": checks,
        "rollback": rollback,
        "hosts": hosts_of(server),
    }


def hosts_of(server) -> dict:
    return {server.server_id: {"ip": str(server.ip), "hostname": str(server.hostname or "")}}


def step_sets(rendered: dict[str, dict]) -> list[dict]:
    """Servers with identical steps, health checks and rollback share one set."""
    sets: dict[str, dict] = {}
    for server_id in sorted(rendered):
        server = dict(rendered[server_id])
        hosts = server.pop("hosts")
        key = json.dumps(server, sort_keys=True, separators=(",", ":"))
        if key not in sets:
            sets[key] = {"servers": [], "hosts": {}, **server}
        sets[key]["servers"].append(server_id)
        sets[key]["hosts"].update(hosts)
    return sorted(sets.values(), key=lambda s: s["servers"][0])


def rollout_section(playbook: Playbook, strategy: RolloutStrategy, servers: list) -> dict:
    groups = plan_groups(servers, strategy, rolling=playbook.ROLLING)
    return {
        "rolling": playbook.ROLLING,
        "canary_share": strategy.canary_share,
        "batch_size": strategy.batch_size,
        "batch_percent": strategy.batch_percent,
        "max_parallel": strategy.max_parallel,
        "failures_allowed": strategy.failures_allowed,
        "safety_gate": strategy.safety_gate and playbook.ROLLING,
        "gate_sample": strategy.gate_sample,
        "rollback_all": strategy.rollback_all,
        "drain_flag": strategy.drain_flag,
        "groups": [
            {
                "index": g.index,
                "label": g.label,
                "tier": g.tier,
                "rolling_group": g.rolling_group,
                "servers": [s.server_id for s in g.servers],
            }
            for g in groups
        ],
    }


def warnings(
    playbook: Playbook, strategy: RolloutStrategy, everyone: list, servers: list, rendered: dict[str, dict]
) -> list[str]:
    notes: list[str] = []
    inactive = [s.server_id for s in everyone if not s.active]
    if inactive:
        notes.append(f"비활성 서버는 실행하지 않습니다: {', '.join(inactive)}")
    if not servers:
        notes.append("실행할 활성 대상 서버가 없습니다")
    if playbook.ROLLING and not playbook.READ_ONLY:
        if not strategy.safety_gate:
            notes.append("그룹 사이의 안전 게이트가 꺼져 있습니다")
        if strategy.failures_allowed:
            notes.append(f"서버 {strategy.failures_allowed}대까지의 실패는 롤아웃을 멈추지 않습니다")
        unchecked = [sid for sid, r in rendered.items() if not any(c.get("kind") == "http" for c in r["health"])]
        if unchecked and playbook.NAME in RESTARTS:
            notes.append(
                f"CMDB에 헬스 체크 URL이 없어 HTTP 확인을 하지 않는 서버: {', '.join(unchecked[:20])}"
                + (f" 외 {len(unchecked) - 20}대" if len(unchecked) > 20 else "")
            )
    return notes
