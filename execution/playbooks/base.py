"""The playbook contract: typed parameters, a name and a version, forward steps and a rollback.

A playbook never touches SSH itself: it builds commands from validated, shell-quoted
parameters and hands them to the server context the engine gives it (execution.rolling
.ServerContext), which checks the kill switch before each command, runs it over the one
connection of this server, records and audits it. User text reaches a shell only through
``q()`` (shlex.quote).
"""

from __future__ import annotations

import posixpath
import re
import shlex
from dataclasses import dataclass, field
from typing import Any, ClassVar, Protocol

SHA256_RE = re.compile(r"^[0-9a-f]{64}$")


class ParameterError(ValueError):
    """Bad playbook parameters: names the field, raised before any server is touched."""

    def __init__(self, errors: dict[str, str]):
        self.errors = errors
        super().__init__("; ".join(f"{k}: {v}" for k, v in errors.items()))


class StepFailed(Exception):
    """A step ran and its result decides failure (exit code, timeout, failed check)."""

    def __init__(self, step: str, reason: str):
        self.step = step
        self.reason = reason
        super().__init__(reason)


class Refused(Exception):
    """The playbook refuses to run at all (bad certificate, missing artifact): nothing touched."""


def q(value: Any) -> str:
    return shlex.quote(str(value))


@dataclass(frozen=True)
class Param:
    kind: str  # str, int, bool, path, sha256, choice, list, dict, version
    required: bool = False
    default: Any = None
    choices: tuple[str, ...] = ()
    pattern: str = ""
    min: int | None = None
    max: int | None = None
    max_length: int = 1000
    help: str = ""

    def clean(self, name: str, value: Any) -> Any:  # noqa: C901 - one branch per kind reads best
        if value is None or value == "":
            if self.required:
                raise ParameterError({name: "required"})
            return self.default
        kind = self.kind
        if kind == "bool":
            if isinstance(value, bool):
                return value
            if str(value).lower() in {"true", "1", "yes"}:
                return True
            if str(value).lower() in {"false", "0", "no"}:
                return False
            raise ParameterError({name: "expected true or false"})
        if kind == "int":
            if isinstance(value, bool):
                raise ParameterError({name: "expected an integer"})
            try:
                number = int(value)
            except (TypeError, ValueError):
                raise ParameterError({name: "expected an integer"}) from None
            if self.min is not None and number < self.min:
                raise ParameterError({name: f"must be at least {self.min}"})
            if self.max is not None and number > self.max:
                raise ParameterError({name: f"must be at most {self.max}"})
            return number
        if kind in {"list", "dict"}:
            expected = list if kind == "list" else dict
            if not isinstance(value, expected):
                raise ParameterError({name: f"expected a {kind}"})
            return value
        if not isinstance(value, str):
            raise ParameterError({name: "expected text"})
        if "\x00" in value or len(value) > self.max_length:
            raise ParameterError({name: f"at most {self.max_length} characters, no NUL bytes"})
        if kind == "path":
            normal = posixpath.normpath(value)
            if not value.startswith("/") or ".." in value.split("/") or "\n" in value or normal == "/":
                raise ParameterError({name: "must be an absolute path without '..' (and not /)"})
            return normal
        if kind == "sha256":
            if not SHA256_RE.match(value.lower()):
                raise ParameterError({name: "expected 64 hexadecimal characters (SHA-256)"})
            return value.lower()
        if kind == "choice" and value not in self.choices:
            raise ParameterError({name: f"one of {', '.join(self.choices)}"})
        if kind == "version" and not re.match(r"^[0-9A-Za-z][0-9A-Za-z._+-]{0,63}$", value):
            raise ParameterError({name: "letters, digits, '.', '_', '+' or '-'"})
        if self.pattern and not re.fullmatch(self.pattern, value):
            raise ParameterError({name: f"does not match {self.pattern}"})
        return value


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
    """What the engine gives a playbook for one server (see execution.rolling.ServerContext)."""

    server: Any
    health: HealthSpec
    task_ref: str
    state: dict
    data: dict

    def run(self, name: str, command: str, *, timeout: float = 60, ok_codes: tuple[int, ...] = (0,),
            max_output: int = 65536): ...

    def put(self, name: str, local: Any, remote: str) -> None: ...

    def check(self, name: str, fn) -> Any: ...

    def artifact_path(self, sha256: str): ...


@dataclass
class Playbook:
    """Subclasses set NAME, VERSION, PARAMS and implement forward(); rollback() undoes it."""

    NAME: ClassVar[str] = ""
    VERSION: ClassVar[str] = "1.0.0"
    PARAMS: ClassVar[dict[str, Param]] = {}
    READ_ONLY: ClassVar[bool] = False
    # Rolling playbooks go group by group with rollback; others run everywhere at once.
    ROLLING: ClassVar[bool] = True

    raw: dict = field(default_factory=dict)
    params: dict = field(init=False)

    def __post_init__(self) -> None:
        unknown = set(self.raw) - set(self.PARAMS) - {"rollout", "artifact", "health", "_meta"}
        errors: dict[str, str] = {k: "unknown parameter" for k in sorted(unknown)}
        cleaned: dict[str, Any] = {}
        for name, spec in self.PARAMS.items():
            try:
                cleaned[name] = spec.clean(name, self.raw.get(name))
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
        from execution import healthcheck

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
            "pid": posixpath.join(root, "run", "was.pid") if root else "",
        }

    @staticmethod
    def require(value: str, what: str, server) -> str:
        if not value:
            raise Refused(f"{what} is not set for {server.server_id} in the CMDB")
        return value
