"""Logs, memory and data (cron and raw commands: playbooks/commands.py).

Read-only playbooks (LOG_MINING, MEMORY_CHECK and the inspection checks) are not rolled
out in groups: they run everywhere at once and change nothing, so there is nothing to undo.
"""

from __future__ import annotations

import collections
import posixpath
import re

from ..errors import ParameterError, StepFailed
from ..parameters import Param, q
from .base import Playbook
from .deploy import backup_dir

TIME_RES = [
    re.compile(r"(\d{4}-\d{2}-\d{2})[ T](\d{2}):\d{2}:\d{2}(?:[.,]\d+)?"),  # 2026-05-23 14:02:11,000
    re.compile(r"(\d{2}-[A-Za-z]{3}-\d{4}) (\d{2}):\d{2}:\d{2}(?:[.,]\d+)?"),  # 23-May-2026 14:02:11.123
]
NOISE_RE = re.compile(r"\d+")


def regular_file(ctx, path: str) -> None:
    """Refuse a path that is not a regular file or is a symbolic link: a link planted in the
    log directory must not lead a read or a truncation to a file outside it."""
    try:
        ctx.run("guard-file", f"test -f {q(path)} && test ! -h {q(path)}", timeout=15)
    except StepFailed as exc:
        raise StepFailed(
            "guard-file", f"{path}은(는) 일반 파일이 아니거나 심볼릭 링크입니다 ({ctx.server.server_id}): 거부했습니다"
        ) from exc


class ReadOnly(Playbook):
    READ_ONLY = True
    ROLLING = False

    def verify(self, ctx) -> None:
        """Read-only work needs no safety gate."""


class LogMining(ReadOnly):
    """Exception/Error timeline per hour and the top messages of a log."""

    NAME = "LOG_MINING"
    VERSION = "1.1.0"
    PARAMS = {
        # A log file in the server's log directory (CMDB log_path's directory); default: the main log.
        "log_path": Param("path", default="", roots=("log",), strictly_below=True),
        "pattern": Param("str", default="ERROR|Exception", max_length=200),
        "max_lines": Param("int", default=20000, min=1, max=200000),
        "top": Param("int", default=10, min=1, max=100),
    }

    def validate(self) -> None:
        try:
            re.compile(self.params["pattern"])
        except re.error as exc:
            raise ParameterError({"pattern": f"정규식이 올바르지 않습니다 ({exc})"}) from exc

    def forward(self, ctx) -> None:
        if self.params["log_path"]:
            log_path = self.path(ctx, "log_path")
        else:
            log_path = self.require(ctx.health.log_path, "log_path", ctx.server)
        regular_file(ctx, log_path)
        command = (
            f"tail -n {self.params['max_lines']} {q(log_path)} | grep -E -- {q(self.params['pattern'])} | tail -n 5000"
        )
        result = ctx.run("grep-log", command, timeout=120, ok_codes=(0, 1), max_output=2 * 1024 * 1024)
        if ctx.planning:
            ctx.check("timeline", None, plan={"kind": "report", "top": self.params["top"]})
            return
        ctx.data.update(mine(result.stdout, self.params["top"]))


def mine(text: str, top: int = 10) -> dict:
    per_hour: collections.Counter[str] = collections.Counter()
    messages: collections.Counter[str] = collections.Counter()
    for line in text.splitlines():
        for time_re in TIME_RES:
            match = time_re.search(line)
            if match:
                per_hour[f"{match.group(1)} {match.group(2)}:00"] += 1
                line = line[match.end() :]
                break
        messages[NOISE_RE.sub("#", line.strip())[:160]] += 1
    return {
        "matches": sum(messages.values()),
        "timeline": dict(sorted(per_hour.items())),
        "top_messages": messages.most_common(top),
    }


class MemoryCheck(ReadOnly):
    NAME = "MEMORY_CHECK"
    VERSION = "1.0.0"
    PARAMS = {"top": Param("int", default=5, min=1, max=50)}

    def forward(self, ctx) -> None:
        result = ctx.run("free", "free -m | awk 'NR==2 {print $2, $3, $7}'", timeout=15)
        if ctx.planning:
            ctx.run("top-rss", f"ps -eo pid,rss,comm --sort=-rss | head -n {self.params['top'] + 1}", timeout=15)
            return
        try:
            total, used, available = (int(x) for x in result.stdout.split()[:3])
        except ValueError:
            raise StepFailed("free", f"{ctx.server.server_id}의 메모리 수치를 읽을 수 없습니다") from None
        procs = ctx.run("top-rss", f"ps -eo pid,rss,comm --sort=-rss | head -n {self.params['top'] + 1}", timeout=15)
        ctx.data.update(
            {
                "total_mb": total,
                "used_mb": used,
                "available_mb": available,
                "used_percent": round(100 * (total - available) / total, 1) if total else 0.0,
                "top_processes": procs.stdout.strip().splitlines()[1:],
            }
        )


class DiskCheck(ReadOnly):
    NAME = "DISK_CHECK"
    VERSION = "1.1.0"
    PARAMS = {"path": Param("path", default="", roots=("app", "deploy", "backup", "log", "scripts"))}

    def forward(self, ctx) -> None:
        if self.params["path"]:
            path = self.path(ctx, "path")
        else:
            root = self.server_paths(ctx.server)["root"]
            path = root if root and root != "/" else "/tmp"
        result = ctx.run("df", f"df -Pk {q(path)} | awk 'NR==2 {{print $2, $4}}'", timeout=15)
        if ctx.planning:
            return
        try:
            total_kb, free_kb = (int(x) for x in result.stdout.split()[:2])
        except ValueError:
            raise StepFailed("df", f"{ctx.server.server_id}의 디스크 수치를 읽을 수 없습니다") from None
        ctx.data.update({"path": path, "total_mb": total_kb // 1024, "free_mb": free_kb // 1024})


class ErrorCount(ReadOnly):
    NAME = "ERROR_COUNT"
    VERSION = "1.0.0"
    PARAMS = {"lines": Param("int", default=5000, min=1, max=200000)}

    def forward(self, ctx) -> None:
        log_path = self.require(ctx.health.log_path, "log_path", ctx.server)
        command = (
            f"tail -n {self.params['lines']} {q(log_path)} | grep -E -c -- {q(ctx.health.error_pattern or 'ERROR')}"
        )
        result = ctx.run("count-errors", command, timeout=60, ok_codes=(0, 1))
        ctx.data["errors"] = int(result.stdout.strip() or 0)


class LogCleanup(Playbook):
    """Delete old files matching a name pattern in one directory under the server's log (or
    deploy staging) directory; dry run (list only) by default. ``find -type f`` never follows
    or deletes a symbolic link."""

    NAME = "LOG_CLEANUP"
    VERSION = "1.1.0"
    ROLLING = False
    PARAMS = {
        # Relative to the log directory (default: the log directory itself) or absolute below it
        # or below deploy_path (staging leftovers).
        "directory": Param("path", default="", roots=("log", "deploy")),
        "name_pattern": Param("str", default="*.log.*", pattern=r"[A-Za-z0-9*?._\-\[\]]{1,100}"),
        "older_than_days": Param("int", default=30, min=1, max=3650),
        "dry_run": Param("bool", default=True),
    }

    def verify(self, ctx) -> None:
        """Nothing to gate: the change is a deletion of expired files."""

    def find_command(self, ctx) -> str:
        return (
            f"find {q(self.path(ctx, 'directory'))} -maxdepth 1 -type f -name {q(self.params['name_pattern'])} "
            f"-mtime +{self.params['older_than_days']}"
        )

    def forward(self, ctx) -> None:
        find = self.find_command(ctx)
        listed = ctx.run("list", f"{find} -print", timeout=120)
        ctx.data["files"] = listed.stdout.split()
        if not self.params["dry_run"]:
            ctx.run("delete", f"{find} -print -delete", timeout=300)
            ctx.data["deleted"] = True


class Logrotate(Playbook):
    """Copy-and-truncate rotation of one log in the server's log directory, compressed, keeping
    the newest N rotations. The rotated copy is named after the task, so the plan shows it."""

    NAME = "LOGROTATE"
    VERSION = "1.1.0"
    ROLLING = False
    PARAMS = {
        "log_path": Param("path", default="", roots=("log",), strictly_below=True),
        "keep": Param("int", default=7, min=1, max=365),
    }

    def verify(self, ctx) -> None:
        """Rotation keeps the service running; nothing to gate."""

    def forward(self, ctx) -> None:
        if self.params["log_path"]:
            path = self.path(ctx, "log_path")
        else:
            path = self.require(ctx.health.log_path, "log_path", ctx.server)
        log, rotated = q(path), q(f"{path}.{ctx.task_ref or 'manual'}")
        regular_file(ctx, path)
        ctx.run("rotate", f"cp -p {log} {rotated} && truncate -s 0 {log} && gzip -f {rotated}", timeout=300)
        ctx.run(
            "prune",
            f"ls -1t {log}.*.gz 2>/dev/null | tail -n +{self.params['keep'] + 1} | "
            f'while read -r old; do rm -f -- "$old"; done',
            timeout=120,
        )


class DataCleanup(Playbook):
    """A pre-registered script on the server (<scripts>/data/<name>.sh) with bound arguments:
    ``backup <dir>`` first, then ``run <args...>``; rollback calls ``restore <dir>``."""

    NAME = "DATA_CLEANUP"
    VERSION = "1.0.0"
    PARAMS = {
        "script": Param("str", required=True, pattern=r"[a-z0-9][a-z0-9_-]{0,63}"),
        "args": Param("list", default=[]),
        "timeout": Param("int", default=600, min=1, max=7200),
    }

    def validate(self) -> None:
        for value in self.params["args"]:
            if not isinstance(value, str | int) or "\x00" in str(value) or len(str(value)) > 200:
                raise ParameterError({"args": "인자는 각각 200자 이내의 문자열이나 숫자여야 합니다"})

    def verify(self, ctx) -> None:
        """Data scripts are checked by their own exit codes."""

    def _script(self, ctx) -> str:
        scripts = self.require(ctx.server.script_path, "script_path", ctx.server)
        return posixpath.join(scripts, "data", f"{self.params['script']}.sh")

    def _backup(self, ctx) -> str:
        base = self.require(ctx.server.backup_path, "backup_path", ctx.server)
        return posixpath.join(backup_dir({"backup": base}, ctx.task_ref), "data")

    def forward(self, ctx) -> None:
        script = q(self._script(ctx))
        ctx.run(
            "backup",
            f"mkdir -p {q(self._backup(ctx))} && sh {script} backup {q(self._backup(ctx))}",
            timeout=self.params["timeout"],
        )
        ctx.state["backed_up"] = True
        # The server cannot show whether the script's run happened: the backup is in the journal
        # before the run is sent, so a worker lost meanwhile is restored from it, never guessed.
        ctx.journaled()
        args = " ".join(q(a) for a in self.params["args"])
        ctx.run("run", f"sh {script} run {args}".rstrip(), timeout=self.params["timeout"])

    def rollback(self, ctx) -> None:
        if ctx.state.get("backed_up"):
            ctx.run(
                "rb-restore",
                f"sh {q(self._script(ctx))} restore {q(self._backup(ctx))}",
                timeout=self.params["timeout"],
            )
