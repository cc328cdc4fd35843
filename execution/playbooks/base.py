"""The playbook contract: typed parameters, a name and a version, forward steps and a rollback.

A playbook never touches SSH itself: it builds commands from validated, shell-quoted
parameters and hands them to the server context the engine gives it (execution.rolling
.ServerContext), which checks the kill switch before each command, runs it over the one
connection of this server, records and audits it. User text reaches a shell only through
``q()`` (shlex.quote).
"""

from __future__ import annotations

import posixpath
from dataclasses import dataclass, field
from typing import Any, ClassVar, Protocol

from .. import healthcheck, profiles
from ..errors import ParameterError, Refused
from ..parameters import Param, clean_health_limits, server_roots


class HealthSpec(Protocol):
    host: str
    port: int | None
    url: str
    expected_status: int
    error_pattern: str
    min_free_disk_mb: int
    port_wait_seconds: float
    max_latency_ms: int
    log_path: str


class Context(Protocol):
    """What the engine gives a playbook for one server (see execution.rolling.ServerContext).

    ``planning`` is True when the plan is rendered (execution.plan.PlanContext): commands are
    recorded, not run, and their output is empty, so code that reads remote output returns
    early instead of judging it. ``check(name, fn, plan=...)`` describes a worker-side check
    for the plan; only the real context calls ``fn``.
    """

    server: Any
    health: HealthSpec
    task_ref: str
    state: dict
    data: dict
    planning: bool
    phase: str

    def run(
        self, name: str, command: str, *, timeout: float = 60, ok_codes: tuple[int, ...] = (0,), max_output: int = 65536
    ): ...

    def run_chain(self, steps: list) -> list: ...

    def run_one(self, step) -> Any: ...

    def put(self, name: str, local: Any, remote: str) -> None: ...

    def check(self, name: str, fn, plan: dict | None = None) -> Any: ...

    def artifact_path(self, sha256: str): ...


@dataclass
class Playbook:
    """Subclasses set NAME, VERSION, PARAMS and implement forward(); rollback() undoes it."""

    NAME: ClassVar[str] = ""
    VERSION: ClassVar[str] = "1.0.0"
    PARAMS: ClassVar[dict[str, Param]] = {}
    READ_ONLY: ClassVar[bool] = False
    # Stops and starts the server's service: its commands follow the environment's variant.
    SERVICE: ClassVar[bool] = False
    # Rolling playbooks go group by group with rollback; others run everywhere at once.
    ROLLING: ClassVar[bool] = True

    raw: dict = field(default_factory=dict)
    params: dict = field(init=False)
    health_limits: dict = field(init=False)  # thresholds the request tightens (clean_health_limits)

    def __post_init__(self) -> None:
        unknown = set(self.raw) - set(self.PARAMS) - {"rollout", "artifact", "health", "_meta"}
        errors: dict[str, str] = {k: "알 수 없는 파라미터입니다 (unknown parameter)" for k in sorted(unknown)}
        cleaned: dict[str, Any] = {}
        for name, spec in self.PARAMS.items():
            try:
                cleaned[name] = spec.clean(name, self.raw.get(name))
            except ParameterError as exc:
                errors.update(exc.errors)
        try:
            self.health_limits = clean_health_limits(self.raw.get("health"))
        except ParameterError as exc:
            errors.update(exc.errors)
        if errors:
            raise ParameterError(errors)
        self.params = cleaned
        self.validate()

    def validate(self) -> None:
        """Cross-field checks; raise ParameterError."""

    def prepare(self, artifacts) -> None:
        """Local checks before any server is touched (artifact on disk, certificate pair)."""

    def forward(self, ctx: Context) -> None:
        raise NotImplementedError

    def rollback(self, ctx: Context) -> None:
        """Undo forward() as far as ctx.state says it went. Default: nothing to undo."""

    def verify(self, ctx: Context) -> None:
        """The safety gate's health check for a server already done (default: HTTP health)."""
        healthcheck.check_http(ctx, "gate-health", expect_version=self.expected_version())

    def expected_version(self) -> str:
        return ""

    # --- helpers for subclasses ----------------------------------------------------
    @staticmethod
    def server_paths(server) -> dict[str, str]:
        root = posixpath.dirname(server.app_path.rstrip("/")) if server.app_path else ""
        return {
            "root": root,
            "app": server.app_path,
            "deploy": server.deploy_path,
            "backup": server.backup_path,
            "scripts": server.script_path,
            "log": server.log_path,
            "pid": posixpath.join(root, "run", "was.pid") if root and root != "/" else "",
        }

    def path(self, ctx: Context, name: str, default: str = ".") -> str:
        """Parameter ``name`` as an absolute path on this server, confined under its CMDB roots
        (raises ParameterError naming the field otherwise). Empty means ``default``, relative
        to the parameter's first root."""
        spec = self.PARAMS[name]
        roots = server_roots(ctx.server, getattr(ctx.health, "log_path", ""))
        try:
            return spec.confine(name, self.params.get(name) or default, roots, ctx.server.server_id)
        except ParameterError as exc:
            if getattr(ctx, "planning", False):
                raise
            # At run time (the plan check in front was bypassed): refuse this server, run nothing.
            raise Refused(f"매개변수 거부: {exc}") from exc

    def service_paths(self, ctx: Context, paths: dict) -> dict:
        """``paths`` with the stop/start commands of the variant this server's scanned
        environment calls for (execution.profiles.select_variant); called first thing in
        forward(), so a server no variant fits is refused before any change. Rollback uses
        the variant forward() chose. A server without an environment schema keeps the CMDB's
        script_path/shutdown.sh and startup.sh."""
        if ctx.phase == "forward" and "env_variant" not in ctx.state:
            variant = profiles.service_variant(ctx)
            ctx.state["env_variant"] = variant.as_state() if variant is not None else None
        chosen = ctx.state.get("env_variant")
        if not chosen:
            return paths
        return {**paths, "stop_command": chosen["stop"], "start_command": chosen["start"]}

    def restart(self, ctx: Context, paths: dict, **options) -> None:
        """Stop → (before_start) → start → checks, with this server's variant's commands."""
        healthcheck.restart_was(
            ctx, self.service_paths(ctx, paths), script_timeout=self.params["script_timeout"], **options
        )

    def restart_back(self, ctx: Context, paths: dict, **options) -> None:
        """The rollback's restart: a failing stop is tolerated (the service may be down)."""
        self.restart(ctx, paths, phase_prefix="rb-", tolerate_shutdown_failure=True, **options)

    @staticmethod
    def require(value: str, what: str, server) -> str:
        if not value:
            raise Refused(f"{server.server_id}: CMDB에 {what}이(가) 설정되어 있지 않습니다")
        return value
