"""Operator commands: RAW_COMMAND and CRON_MANAGE run only what the system's command
catalogue allows (execution.commands).

The command text is checked three times: when the request is filed (no shell syntax, the
deny-list sanitizer), when its plan is rendered for the system (``check_catalogue``: the
catalogue and the servers' CMDB roots), and again on every server just before it runs,
against the catalogue as it is then: a rule removed after approval stops the command.
"""

from __future__ import annotations

import posixpath
import re

from execution import commands

from ..errors import CommandRefused, ParameterError, Refused, SecurityViolation, StepFailed
from ..parameters import Param, q, server_roots
from .base import Playbook
from .deploy import backup_dir

CRON_FIELD = r"(\*|[0-9,*/-]{1,40})"
CRON_RE = re.compile(rf"^{CRON_FIELD}( {CRON_FIELD}){{4}}$")


def _syntax(field: str, text: str, prefix: str = "") -> commands.Pipeline:
    """Refuse shell syntax and anything the deny-list knows, before any system is known."""
    from execution import sanitizer

    try:
        sanitizer.check(text)
        return commands.parse(text)
    except SecurityViolation as exc:
        raise ParameterError({field: f"{prefix}{exc}"}) from exc
    except CommandRefused as exc:
        raise ParameterError({field: f"{prefix}{exc}"}) from exc


class CatalogueCommands(Playbook):
    """Shared by both playbooks: the commands to check and how a refusal names its field."""

    FIELD = "command"
    _catalogue: dict | None = None

    def texts(self) -> list[str]:
        raise NotImplementedError

    def _label(self, index: int) -> str:
        return ""

    def _resolve(self, rules, servers, system_label: str) -> list[str]:
        lines = []
        for index, text in enumerate(self.texts()):
            try:
                lines.append(commands.check(text, rules, servers, system_label, roots_of=server_roots)[1])
            except CommandRefused as exc:
                raise ParameterError({self.FIELD: f"{self._label(index)}{exc}"}) from exc
        return lines

    def check_catalogue(self, system, servers=None) -> list[str]:
        """The quoted command lines these parameters stand for on the system's servers
        (``servers``: the targets; all its active servers when not given). Raises
        ParameterError naming the field when the catalogue does not allow a command."""
        if servers is None:
            servers = list(system.servers.filter(active=True))
        return self._resolve(commands.rules_for(system), list(servers), getattr(system, "code", ""))

    def prepare(self, artifacts) -> None:
        # Read the catalogue once, in the engine's own thread: the per-server check in
        # forward() runs in worker threads and must not query the database.
        self._catalogue = commands.all_rules()

    def lines_for(self, ctx) -> list[str]:
        """The command lines for this server. While the plan is rendered (the caller's thread)
        the catalogue is read from the database and a refusal names the field; during a run it
        is the catalogue read by prepare(), and a refusal stops this server before anything runs."""
        server = ctx.server
        if getattr(ctx, "planning", False):
            # One query per system, not per server: a plan may cover a thousand servers.
            cache = self.__dict__.setdefault("_plan_rules", {})
            if server.system_id not in cache:
                cache[server.system_id] = commands.rules_for(server.system_id)
            return self._resolve(cache[server.system_id], [server], "")
        if self._catalogue is None:
            raise Refused("명령 카탈로그를 읽지 못해 실행하지 않았습니다")
        rules = self._catalogue.get(None, []) + self._catalogue.get(server.system_id, [])
        try:
            return self._resolve(rules, [server], "")
        except ParameterError as exc:
            reason = "; ".join(exc.errors.values())
            raise Refused(f"명령 카탈로그가 허용하지 않아 실행하지 않았습니다 ({server.server_id}): {reason}") from exc


class RawCommand(CatalogueCommands):
    """An operator's command from the catalogue (critical risk, three approvals)."""

    NAME = "RAW_COMMAND"
    VERSION = "2.0.0"
    ROLLING = False
    PARAMS = {
        "command": Param("str", required=True, max_length=commands.MAX_LENGTH),
        "timeout": Param("int", default=120, min=1, max=3600),
    }

    def validate(self) -> None:
        _syntax("command", self.params["command"])

    def texts(self) -> list[str]:
        return [self.params["command"]]

    def verify(self, ctx) -> None:
        """A raw command has no known health contract."""

    def forward(self, ctx) -> None:
        line = self.lines_for(ctx)[0]
        result = ctx.run("command", line, timeout=self.params["timeout"])
        if not getattr(ctx, "planning", False):
            ctx.data["exit_code"] = result.exit_code


class CronManage(CatalogueCommands):
    """Replace the GUARDiA-managed block of the login user's crontab (other lines untouched);
    every entry schedules a catalogue command, rebuilt and quoted like RAW_COMMAND's."""

    NAME = "CRON_MANAGE"
    VERSION = "2.0.0"
    FIELD = "entries"
    PARAMS = {"entries": Param("list", default=[])}
    BEGIN, END = "# BEGIN GUARDIA MANAGED", "# END GUARDIA MANAGED"

    def validate(self) -> None:
        if len(self.params["entries"]) > 50:
            raise ParameterError({"entries": "크론 항목은 50개까지입니다"})
        for i, entry in enumerate(self.params["entries"]):
            label = self._label(i)
            if not isinstance(entry, dict) or set(entry) - {"schedule", "command"}:
                raise ParameterError({"entries": f"{label}schedule과 command만 있는 객체여야 합니다"})
            if not CRON_RE.match(str(entry.get("schedule", ""))):
                raise ParameterError({"entries": f"{label}schedule은 크론 필드 다섯 개여야 합니다"})
            command = entry.get("command")
            if not isinstance(command, str) or not command.strip() or len(command) > 500:
                raise ParameterError({"entries": f"{label}command는 500자 이내의 명령 한 줄이어야 합니다"})
            if "%" in command:  # cron turns an unescaped % into a newline and feeds the rest to stdin
                raise ParameterError({"entries": f"{label}크론 명령에는 '%'를 쓸 수 없습니다"})
            _syntax("entries", command, label)

    def _label(self, index: int) -> str:
        return f"{index + 1}번 항목: "

    def texts(self) -> list[str]:
        return [entry["command"] for entry in self.params["entries"]]

    def cron_lines(self, lines: list[str]) -> list[str]:
        return [f"{entry['schedule']} {line}" for entry, line in zip(self.params["entries"], lines, strict=True)]

    def _saved(self, ctx_or_server, task_ref: str) -> str:
        server = getattr(ctx_or_server, "server", ctx_or_server)
        base = self.require(server.backup_path, "backup_path", server)
        return posixpath.join(backup_dir({"backup": base}, task_ref), "crontab")

    def _commands(self, server, task_ref: str, lines: list[str]) -> list[tuple[str, str]]:
        saved = self._saved(server, task_ref)
        block = " ".join(q(line) for line in [self.BEGIN, *self.cron_lines(lines), self.END])
        strip = q("/^" + self.BEGIN + "$/,/^" + self.END + "$/d")
        return [
            ("backup", f"mkdir -p {q(posixpath.dirname(saved))} && (crontab -l 2>/dev/null || true) > {q(saved)}"),
            # Written to a file first and installed from it: the sanitizer refuses a crontab fed by a pipe.
            (
                "install",
                f"(sed {strip} {q(saved)}; printf '%s\\n' {block}) > {q(saved + '.new')} && "
                f"crontab {q(saved + '.new')}",
            ),
        ]

    def verify(self, ctx) -> None:
        result = ctx.run("gate-crontab", "crontab -l", timeout=15, ok_codes=(0, 1))
        if self.params["entries"] and self.BEGIN not in result.stdout:
            raise StepFailed("gate-crontab", f"{ctx.server.server_id}에 관리 대상 cron 블록이 없습니다")

    def forward(self, ctx) -> None:
        lines = self.lines_for(ctx)
        (backup_name, backup), (install_name, install) = self._commands(ctx.server, ctx.task_ref, lines)
        ctx.run(backup_name, backup, timeout=15)
        ctx.state["backed_up"] = True
        ctx.run(install_name, install, timeout=15)

    def rollback(self, ctx) -> None:
        if ctx.state.get("backed_up"):
            ctx.run("rb-restore", f"crontab {q(self._saved(ctx, ctx.task_ref))}", timeout=15)
