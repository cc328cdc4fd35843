"""The result package: what the PM validates after an execution, one typed contract.

The execution engine writes it (``ResultPackage.to_json()`` into ``OpsTask.result_package``)
and the console reads it (``ResultPackage.from_json()``), so both sides share these
dataclasses instead of each guessing the other's keys. ``from_json`` is tolerant: packages
stored before this contract existed (the engine's first shape with ``servers`` /
``log_excerpt`` / ``findings`` dicts, hand-made ones with ``diff`` / ``log`` / ``health``,
an inspection ticket's bare ``findings``) still render, mapped onto the same fields.

A served version is compared with the version the request expected. "unknown" (the WAS
found no version in what it loaded) and a mismatch are failures of the deploy's purpose
even when every health check answered 200, so the console lists them first and says so
in words.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field
from typing import Any

from django.utils.translation import gettext_lazy as _

PACKAGE_VERSION = 2

# Server states written by the engine (execution.models.RunState values).
SUCCEEDED = "SUCCEEDED"
UNKNOWN_VERSION = "unknown"
LOG_EXCERPT_CHARS = 2000
FAILURE_FINDING = "failure"  # the engine's per-server note of its own failure, in older packages
_VERSION_IN_TEXT = re.compile(r"version=(\S+)")


def version_in(text: str) -> str:
    """The version a health answer reports ("OK version=1.1.0" -> "1.1.0"), or ""."""
    match = _VERSION_IN_TEXT.search(text or "")
    return match.group(1) if match else ""


# The PM's words for the package's machine terms (states, findings, check kinds).
STATE_LABELS = {
    "PENDING": _("대기"),
    "RUNNING": _("실행 중"),
    "SUCCEEDED": _("성공"),
    "FAILED": _("실패"),
    "ROLLED_BACK": _("롤백 완료"),
    "ROLLBACK_FAILED": _("롤백 실패"),
    "UNCERTAIN": _("상태 불확실"),
    "ABORTED": _("중단"),
    "REFUSED": _("거부"),
}
# Findings the playbooks record, in the PM's words; unknown keys are shown as they are.
FINDING_LABELS = {
    "free_disk_mb": _("배포 경로 여유 공간(MB)"),
    "port_before": _("변경 전 서비스 포트 응답"),
    "served_fingerprint": _("서비스 중인 인증서 지문"),
    "total_mb": _("전체 메모리(MB)"),
    "used_mb": _("사용 메모리(MB)"),
    "available_mb": _("가용 메모리(MB)"),
    "used_percent": _("메모리 사용률(%)"),
    "path": _("경로"),
    "free_mb": _("여유 공간(MB)"),
    "errors": _("오류 줄 수"),
    "files": _("대상 파일"),
    "deleted": _("삭제 여부"),
    "exit_code": _("종료 코드"),
}
CHECK_LABELS = {"port": _("포트"), "http": _("HTTP 응답"), "process": _("프로세스·로그"), "check": _("점검")}


@dataclass
class HealthCheck:
    """One check of one server: a port, the HTTP health URL, the process/log check."""

    name: str  # the step name ("port", "http", "post-check", "rb-http", ...)
    kind: str  # "port" / "http" / "process" / "check"
    ok: bool
    phase: str = "forward"  # "forward" or "rollback"
    status: int | None = None  # HTTP status, when the check is HTTP
    latency_ms: int | None = None
    detail: str = ""

    @property
    def kind_label(self) -> str:
        return str(CHECK_LABELS.get(self.kind, self.kind))

    @classmethod
    def from_json(cls, data: Any) -> HealthCheck:
        if not isinstance(data, dict):
            return cls(name="", kind="check", ok=False, detail=str(data))
        return cls(
            name=str(data.get("name") or data.get("server") or ""),
            kind=str(data.get("kind") or "check"),
            ok=bool(data.get("ok")),
            phase=str(data.get("phase") or "forward"),
            status=_int_or_none(data.get("status")),
            latency_ms=_int_or_none(data.get("latency_ms")),
            detail=str(data.get("detail") or data.get("message") or data.get("error") or ""),
        )


@dataclass
class ServerResult:
    server: str
    state: str
    group: int = 0
    message: str = ""
    version_before: str = ""  # served before the change ("" = not read)
    version_after: str = ""  # served when the execution ended ("" = not checked)
    health: list[HealthCheck] = field(default_factory=list)
    findings: dict[str, Any] = field(default_factory=dict)
    log_excerpt: str = ""
    # Why this server itself failed ("" when it only stopped or rolled back with its batch).
    own_failure: str = ""

    @property
    def failed(self) -> bool:
        return self.state != SUCCEEDED

    @property
    def findings_display(self) -> list[tuple[str, str]]:
        return [(str(FINDING_LABELS.get(key, key)), _display(value)) for key, value in self.findings.items()]

    @property
    def state_label(self) -> str:
        return str(STATE_LABELS.get(self.state, self.state or "-"))

    def version_problem(self, expected: str) -> str:
        """ "" when the served version is fine, else why not: "unknown" or "mismatch"."""
        if self.version_after == UNKNOWN_VERSION:
            return "unknown"
        if expected and self.version_after and self.version_after != expected:
            return "mismatch"
        if expected and not self.version_after and not self.failed:
            return "unchecked"
        return ""

    @classmethod
    def from_json(cls, data: Any) -> ServerResult:
        if not isinstance(data, dict):
            return cls(server=str(data), state="")
        health = data.get("health")
        if isinstance(health, dict):  # the engine's first shape: {step name: {status, latency_ms, body}}
            checks = [_legacy_http_check(name, value) for name, value in health.items()]
        else:
            checks = [HealthCheck.from_json(item) for item in health or []]
        after = str(data.get("version_after") or "")
        if not after and isinstance(health, dict):
            after = next(
                (
                    version_in(str(v.get("body", "")))
                    for k, v in reversed(list(health.items()))
                    if isinstance(v, dict) and version_in(str(v.get("body", "")))
                ),
                "",
            )
        findings = dict(data.get("findings") or {})
        # Packages written before own_failure existed kept the server's own reason among its findings.
        own = str(data.get("own_failure") or findings.pop(FAILURE_FINDING, "") or "")
        return cls(
            server=str(data.get("server") or ""),
            state=str(data.get("state") or ""),
            group=_int_or_none(data.get("group")) or 0,
            message=str(data.get("message") or ""),
            version_before=str(data.get("version_before") or ""),
            version_after=after,
            health=checks,
            findings=findings,
            log_excerpt=str(data.get("log_excerpt") or "")[-LOG_EXCERPT_CHARS:],
            own_failure=own,
        )


@dataclass
class Summary:
    total: int = 0
    succeeded: int = 0
    failed: int = 0
    version_problems: int = 0
    states: dict[str, int] = field(default_factory=dict)


@dataclass
class CommandRun:
    """One command of an agent round (the agent, the build, the tests), as it ran."""

    name: str
    command: str = ""
    exit_code: int | None = None
    timed_out: bool = False
    truncated: bool = False  # output beyond the kept limit was dropped
    duration: float = 0.0
    output: str = ""
    user: str = ""  # the OS account it ran as
    timeout: float | None = None

    @property
    def ok(self) -> bool:
        return self.exit_code == 0 and not self.timed_out

    @property
    def verdict(self) -> str:
        if self.timed_out:
            return f"제한 시간 {self.timeout or ''}초 초과"
        return f"종료 코드 {self.exit_code}"

    @classmethod
    def from_json(cls, data: Any) -> CommandRun | None:
        if not isinstance(data, dict):
            return None
        known = {key: data[key] for key in cls.__dataclass_fields__ if key in data}
        return cls(**known)


@dataclass
class CodeChange:
    """A CODE_FIX round: what the work agent changed (the diff is computed by git, never taken
    from the agent), how the build and the tests went, and the artifact they produced."""

    round: int = 1
    max_rounds: int = 1
    status: str = ""  # the round's state: SUCCEEDED / FAILED
    error_code: str = ""  # AGENT_TIMEOUT, RESULT_MISSING, RESULT_INVALID, OUTSIDE_WORKTREE, OUTSIDE_SCOPE, ...
    summary: str = ""  # the agent's own words (result.json)
    agent_status: str = ""
    claimed_files: list[str] = field(default_factory=list)  # what the agent says it changed
    files: list[str] = field(default_factory=list)  # what git says changed (the diff is the package's)
    diff_truncated: bool = False
    branch: str = ""
    worktree: str = ""
    base_commit: str = ""
    head_commit: str = ""
    agent: CommandRun | None = None
    build: CommandRun | None = None
    test: CommandRun | None = None
    artifact: dict[str, Any] = field(default_factory=dict)  # name, sha256, size, version, path
    warnings: list[str] = field(default_factory=list)

    @classmethod
    def from_json(cls, data: Any) -> CodeChange | None:
        if not isinstance(data, dict):
            return None
        known = {key: data[key] for key in cls.__dataclass_fields__ if key in data}
        for name in ("agent", "build", "test"):
            known[name] = CommandRun.from_json(known.get(name))
        return cls(**known)


@dataclass
class ResultPackage:
    playbook: str = ""
    playbook_version: str = ""
    outcome: str = ""
    reason: str = ""
    expected_version: str = ""  # what the request said the servers must serve afterwards
    execution: int | None = None
    first_failure: str = ""  # the server whose failure stopped the run ("" when none did)
    servers: list[ServerResult] = field(default_factory=list)
    diff: str = ""  # unified diff of a code change
    findings: dict[str, Any] = field(default_factory=dict)  # task-level findings (inspections)
    log: str = ""  # a task-level execution log, when there is one
    summary: Summary = field(default_factory=Summary)
    version: int = PACKAGE_VERSION
    code_change: CodeChange | None = None  # a CODE_FIX round (the work agent)

    def __post_init__(self) -> None:
        self.summary = self.count()

    # --- reading ------------------------------------------------------------------------
    def count(self) -> Summary:
        states: dict[str, int] = {}
        for row in self.servers:
            states[row.state] = states.get(row.state, 0) + 1
        return Summary(
            total=len(self.servers),
            succeeded=states.get(SUCCEEDED, 0),
            failed=sum(1 for row in self.servers if row.failed),
            version_problems=sum(1 for row in self.servers if row.version_problem(self.expected_version)),
            states=states,
        )

    def problem(self, row: ServerResult) -> str:
        return row.version_problem(self.expected_version)

    def ordered(self) -> list[ServerResult]:
        """The server whose failure stopped the run first, then the other servers that failed
        themselves, then those stopped or rolled back with their batch, then version problems,
        then the rest; by group and name within each."""

        def rank(row: ServerResult) -> tuple:
            if row.server == self.first_failure and row.failed:
                order = 0
            elif row.own_failure and row.failed:
                order = 1
            elif row.failed:
                order = 2
            else:
                order = 3 if self.problem(row) else 4
            return (order, row.group, row.server)

        return sorted(self.servers, key=rank)

    @property
    def empty(self) -> bool:
        return not (self.servers or self.diff or self.findings or self.log or self.code_change)

    # --- JSON ---------------------------------------------------------------------------
    def to_json(self) -> dict[str, Any]:
        self.summary = self.count()
        return asdict(self)

    @classmethod
    def from_json(cls, data: Any) -> ResultPackage:
        data = dict(data or {}) if isinstance(data, dict) else {}
        if data.get("version") == PACKAGE_VERSION:
            return cls(
                **_header(data),
                first_failure=str(data.get("first_failure") or ""),
                servers=[ServerResult.from_json(row) for row in data.get("servers") or []],
                findings=dict(data.get("findings") or {}),
                log=str(data.get("log") or ""),
                code_change=CodeChange.from_json(data.get("code_change")),
            )
        return cls._from_legacy(data)

    @classmethod
    def _from_legacy(cls, data: dict) -> ResultPackage:
        rows: dict[str, ServerResult] = {}
        for item in data.get("servers") or []:
            row = ServerResult.from_json(item)
            rows[row.server] = row
        findings = data.get("findings") if isinstance(data.get("findings"), dict) else {}
        task_findings: dict[str, Any] = {}
        for key, value in (findings or {}).items():
            if key in rows and isinstance(value, dict):  # the engine's per-server findings
                rows[key].findings = {k: v for k, v in value.items() if k != "health"}
            else:
                task_findings[key] = value
        for item in data.get("log_excerpt") or []:
            if isinstance(item, dict) and item.get("server") in rows:
                rows[item["server"]].log_excerpt = str(item.get("tail") or "")[-LOG_EXCERPT_CHARS:]
        health = data.get("health")
        if isinstance(health, dict):
            health = [
                {"server": key, **(value if isinstance(value, dict) else {"detail": value})}
                for key, value in health.items()
            ]
        for item in health or []:  # hand-made packages: [{"server", "ok", "detail"}]
            item = item if isinstance(item, dict) else {"detail": item}
            server = str(item.get("server") or "")
            row = rows.setdefault(
                server, ServerResult(server=server or "-", state=SUCCEEDED if item.get("ok") else "FAILED")
            )
            row.health.append(
                HealthCheck(
                    name="health",
                    kind="check",
                    ok=bool(item.get("ok")),
                    detail=str(item.get("detail") or item.get("message") or ""),
                )
            )
        log = data.get("log") or ""
        if isinstance(log, list):
            log = "\n".join(line if isinstance(line, str) else repr(line) for line in log)
        known = {"servers", "findings", "log_excerpt", "health", "log", "summary", "execution", *_HEADER_TEXT}
        task_findings.update({k: v for k, v in data.items() if k not in known})
        return cls(**_header(data), servers=list(rows.values()), findings=task_findings, log=str(log))


def _legacy_http_check(name: str, value: Any) -> HealthCheck:
    value = value if isinstance(value, dict) else {"body": str(value)}
    return HealthCheck(
        name=str(name),
        kind="http" if "http" in str(name) else "check",
        ok=value.get("status") == 200,
        phase="rollback" if str(name).startswith("rb-") else "forward",
        status=_int_or_none(value.get("status")),
        latency_ms=_int_or_none(value.get("latency_ms")),
        detail=str(value.get("body") or "")[:200],
    )


def _display(value: Any) -> str:
    if value is True:
        return str(_("예"))
    if value is False:
        return str(_("아니오"))
    if isinstance(value, list | tuple):
        return ", ".join(str(item) for item in value)
    return str(value)


# The package's own text fields, read the same from the current and the older layouts.
_HEADER_TEXT = ("playbook", "playbook_version", "outcome", "reason", "expected_version", "diff")


def _header(data: dict) -> dict[str, Any]:
    """The package's text fields and its execution number, as both layouts store them."""
    return {name: str(data.get(name) or "") for name in _HEADER_TEXT} | {
        "execution": _int_or_none(data.get("execution"))
    }


def _int_or_none(value: Any) -> int | None:
    try:
        return int(value) if value is not None and value != "" else None
    except (TypeError, ValueError):
        return None
