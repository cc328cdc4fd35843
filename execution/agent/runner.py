"""One agent round of a CODE_FIX task, run by the qcluster worker (execution.services.execute_task
calls ``run_round`` once the approved plan checked out).

1. a git worktree of the system's repository on a branch named after the task and round,
   under ``AGENT_WORK_ROOT/<task>/r<N>/src`` (round 1 from the CMDB's ref, later rounds from the
   previous round's result, so the agent sees its own earlier work);
2. ``.guardia/context.md`` written by GUARDiA (CMDB facts, request, scope, PM instructions);
3. the agent command from ``AGENT_COMMAND`` with a clean environment, the agent's OS user
   when configured, a timeout and an output cap;
4. ``.guardia/result.json`` read and checked against the schema;
5. the diff computed by git against the round-1 base, every changed path checked against the
   CMDB scope (no symbolic links, no submodules, nothing else in ``.guardia/``);
6. the build and the tests, under the same limits; the artifact hashed and stored;
7. nothing outside the worktree changed (the repository's own tree, index and refs, the task's
   other directories), checked after everything the change's code could run;
8. the change committed on the round's branch; the result package handed to governance.

Any failure ends the round with an error code and a reason; the worktree stays where it is
for inspection and nothing is deployed (the task needs a person).
"""

from __future__ import annotations

import hashlib
import logging
import os
import shlex
import zipfile
from dataclasses import dataclass
from fnmatch import fnmatchcase
from pathlib import Path

from django.conf import settings
from django.utils import timezone

import audit
from cmdb.sources import SystemSource
from governance.attachments import store_attachment
from governance.results import CodeChange, CommandRun, ResultPackage

from ..models import Outcome
from . import context as context_md
from . import proc
from .git import GUARDIA_DIR, GitError, Worktree, add_worktree, commit, repository_state, resolve, stage_and_diff
from .models import AgentRound, RoundStatus
from .result import ResultProblem, read_result

log = logging.getLogger(__name__)
DIFF_LIMIT = 512 * 1024
LOG_KEPT = 64 * 1024
ARTIFACT_LIMIT = 512 * 1024 * 1024
ALLOWED_IN_GUARDIA_DIR = {"context.md", "result.json"}


class RoundFailed(Exception):
    def __init__(self, code: str, reason: str):
        super().__init__(reason)
        self.code = code
        self.reason = reason


@dataclass
class RoundOutcome:
    """What execute_task returns for a CODE_FIX task (the shape of the engine's result)."""

    outcome: str
    reason: str
    package: dict


def max_rounds() -> int:
    return int(getattr(settings, "AGENT_MAX_ROUNDS", 3))


def branch_prefix(task) -> str:
    return f"guardia/{task.task_id}/"


def command_for(tree: Path, task, number: int) -> list[str]:
    """AGENT_COMMAND with its placeholders filled in (each placeholder is one argument)."""
    values = {
        "context": str(tree / context_md.CONTEXT_FILE),
        "result": str(tree / context_md.RESULT_FILE),
        "worktree": str(tree),
        "task_id": task.task_id,
        "round": str(number),
    }
    filled = []
    for part in settings.AGENT_COMMAND:
        for name, value in values.items():
            part = part.replace("{" + name + "}", value)
        filled.append(part)
    return filled


def run_round(task, playbook) -> RoundOutcome:
    number = task.rework_round + 1
    record, _created = AgentRound.objects.update_or_create(
        task=task,
        number=number,
        defaults={"status": RoundStatus.RUNNING, "instruction": task.pm_instructions if number > 1 else ""},
    )
    audit.record(
        "system",
        "agent.round_started",
        task=task.task_id,
        target=task.system.code,
        payload={"round": number, "institution": task.system.institution.code, "instruction": record.instruction},
    )
    package = CodeChange(round=number, max_rounds=max_rounds())
    try:
        _run(task, record, package)
    except RoundFailed as failure:
        return _finish(task, record, package, playbook, failure)
    except (GitError, OSError) as exc:
        log.exception("agent round of %s", task.task_id)
        return _finish(task, record, package, playbook, RoundFailed("WORKSPACE_ERROR", f"작업 공간 오류: {exc}"))
    return _finish(task, record, package, playbook, None)


def _run(task, record: AgentRound, package: CodeChange) -> None:
    source = SystemSource.objects.filter(system=task.system).first()
    if source is None:
        raise RoundFailed("NO_SOURCE", f"CMDB에 시스템 {task.system.code}의 소스 저장소가 등록되어 있지 않습니다")
    repository = Path(source.repository)
    number = record.number
    base, start = _start_points(task, source, repository, number)
    round_dir = Path(settings.AGENT_WORK_ROOT) / task.task_id / f"r{number}"
    attempt = 1
    while round_dir.exists():  # a retried round never reuses what an earlier attempt left
        attempt += 1
        round_dir = round_dir.with_name(f"r{number}-{attempt}")
    round_dir.mkdir(parents=True, mode=0o711)
    for parent in (round_dir.parent, round_dir.parent.parent):
        parent.chmod(0o711)
    home = round_dir / "home"
    home.mkdir(mode=0o700)
    branch = f"{branch_prefix(task)}r{number}" + (f"-{attempt}" if attempt > 1 else "")
    tree = add_worktree(repository, round_dir / "src", branch, start)
    record.branch, record.worktree, record.base_commit, record.start_commit = branch, str(tree.path), base, start
    package.branch, package.worktree, package.base_commit = branch, str(tree.path), base
    instructions = _instructions(task, number)
    text = context_md.render(task, source, number, package.max_rounds, instructions)
    (tree.path / GUARDIA_DIR).mkdir()
    (tree.path / context_md.CONTEXT_FILE).write_text(text, encoding="utf-8")
    record.context = text
    record.save()
    account = proc.agent_account()
    if account is not None:
        _check_reachable(round_dir, account.pw_name)
    proc.give_to(account, tree.path, home)
    record.os_user = proc.account_name(account)
    before = _outside_state(task, repository, tree, home)

    limit = int(settings.AGENT_OUTPUT_LIMIT)
    ran = proc.run_limited(
        command_for(tree.path, task, number),
        cwd=tree.path,
        home=home,
        timeout=float(settings.AGENT_TIMEOUT),
        limit=limit,
        account=account,
    )
    package.agent = _command_run("agent", shlex.join(settings.AGENT_COMMAND), ran)
    record.agent_log = ran.output[-LOG_KEPT:]
    if ran.exit_code is None and not ran.timed_out:
        raise RoundFailed("AGENT_NOT_STARTED", ran.output)
    if ran.timed_out:
        raise RoundFailed("AGENT_TIMEOUT", f"에이전트가 제한 시간 {settings.AGENT_TIMEOUT}초 안에 끝나지 않았습니다")
    if ran.runaway:
        raise RoundFailed("AGENT_OUTPUT_LIMIT", f"에이전트 출력이 한도({limit} 바이트)를 크게 넘어 중단했습니다")
    _check_guardia_dir(tree)
    try:
        result = read_result(tree.path / context_md.RESULT_FILE)
    except ResultProblem as problem:
        if ran.exit_code != 0:  # it crashed: say so first, then what it left
            raise RoundFailed(
                "AGENT_FAILED", f"에이전트가 종료 코드 {ran.exit_code}(으)로 끝났습니다; {problem}"
            ) from None
        raise RoundFailed(problem.code, str(problem)) from None
    record.result = result
    package.summary = str(result.get("summary") or "")
    package.agent_status = str(result.get("status") or "")
    package.claimed_files = [str(name) for name in result.get("changed_files") or []]
    if result["status"] == "failed":
        code = str(result.get("error_code") or "AGENT_FAILED")
        raise RoundFailed(f"AGENT_{code}"[:64], f"에이전트가 실패를 보고했습니다 ({code}): {package.summary}")
    if not ran.ok:
        raise RoundFailed("AGENT_FAILED", f"에이전트가 종료 코드 {ran.exit_code}(으)로 끝났습니다")

    changes, diff = stage_and_diff(tree, base)
    package.files = sorted({change.path for change in changes})
    package.diff_truncated = len(diff) > DIFF_LIMIT
    record.diff = diff[:DIFF_LIMIT]
    record.changed_files = package.files
    _check_scope(changes, source.scope_entries)
    _check_outside(before, _outside_state(task, repository, tree, home))
    if not changes:
        raise RoundFailed("NO_CHANGE", "에이전트가 아무것도 바꾸지 않았습니다")
    if set(package.claimed_files) != set(package.files):
        package.warnings.append(
            "에이전트가 보고한 변경 파일이 git이 계산한 것과 다릅니다: "
            f"보고 {sorted(package.claimed_files)}, 실제 {package.files}"
        )
    record.head_commit = package.head_commit = commit(tree, f"{task.task_id} round {number}: {package.summary[:200]}")

    steps = [("build", source.build_command, source.build_timeout, "BUILD_FAILED", "빌드")]
    if source.test_command:
        steps.append(("test", source.test_command, source.test_timeout, "TEST_FAILED", "테스트"))
    for name, command, timeout, code, label in steps:
        done = _step(name, command, timeout, tree, home, account, limit)
        setattr(package, name, done)
        setattr(record, f"{name}_log", done.output)
        _check_outside(before, _outside_state(task, repository, tree, home))
        if not done.ok:
            raise RoundFailed(code, f"{label}가 실패했습니다 ({done.verdict})")
        _check_reviewed_tree(tree, label)
    package.artifact = _store_artifact(tree, source)
    record.artifact = package.artifact


def _check_reviewed_tree(tree: Worktree, step: str) -> None:
    """The artifact is built from the commit the PM reviews: after the build and the tests no
    tracked file differs from it and nothing new lies outside .gitignore (what a build writes
    belongs in ignored paths, like dist/)."""
    left = tree.run("status", "--porcelain=v1", "--untracked-files=all", "--", ".", f":(exclude){GUARDIA_DIR}")
    if left.strip():
        names = ", ".join(line[3:] for line in left.splitlines()[:10])
        raise RoundFailed("SOURCE_CHANGED", f"{step} 중에 검토 대상 소스가 바뀌었습니다 (.gitignore 밖): {names}")


def _check_reachable(round_dir: Path, user: str) -> None:
    """The agent's account must be able to walk down to its worktree (o+x on every parent)."""
    for parent in round_dir.parents:
        if not parent.stat().st_mode & 0o001:
            raise RoundFailed(
                "WORKSPACE_ERROR",
                f"에이전트 계정 {user}이(가) 작업 공간에 들어갈 수 없습니다: {parent}에 "
                "다른 사용자 실행 권한(o+x)이 없습니다 (AGENT_WORK_ROOT를 옮기거나 권한을 주세요)",
            )


def _start_points(task, source: SystemSource, repository: Path, number: int) -> tuple[str, str]:
    """(base, start): the commit the whole change is diffed against, and where this round's
    branch starts (the previous round's result from round 2 on)."""
    if number > 1:
        previous = (
            AgentRound.objects.filter(task=task, number__lt=number, status=RoundStatus.SUCCEEDED)
            .order_by("-number")
            .first()
        )
        if previous is not None and previous.head_commit:
            return previous.base_commit, previous.head_commit
    if not (repository / ".git").exists():
        raise RoundFailed("NO_SOURCE", f"{repository}은(는) git 저장소가 아닙니다")
    try:
        base = resolve(repository, source.ref)
    except GitError as exc:
        raise RoundFailed("NO_SOURCE", f"저장소의 기준 {source.ref!r}을(를) 찾을 수 없습니다: {exc}") from None
    return base, base


def _instructions(task, number: int) -> list[dict]:
    """Every PM instruction so far, oldest first: the one that opened each later round."""
    rounds = AgentRound.objects.filter(task=task, number__gt=1, number__lte=number).order_by("number")
    return [{"round": r.number - 1, "text": r.instruction} for r in rounds if r.instruction]


def _check_guardia_dir(tree: Worktree) -> None:
    own = tree.path / GUARDIA_DIR
    if own.is_symlink() or not own.is_dir():
        raise RoundFailed("OUTSIDE_SCOPE", f"{GUARDIA_DIR}/ 디렉터리가 바뀌었습니다 (링크이거나 없음)")
    extra = sorted(set(os.listdir(own)) - ALLOWED_IN_GUARDIA_DIR)
    if extra:
        raise RoundFailed("OUTSIDE_SCOPE", f"{GUARDIA_DIR}/에는 context.md와 result.json만 둘 수 있습니다: {extra}")


def in_scope(path: str, scope: list[str]) -> bool:
    for entry in scope:
        if any(ch in entry for ch in "*?["):
            if fnmatchcase(path, entry):
                return True
        elif entry.endswith("/"):
            if path.startswith(entry):
                return True
        elif path == entry or path.startswith(entry + "/"):
            return True
    return False


def _check_scope(changes, scope: list[str]) -> None:
    outside: list[str] = []
    for change in changes:
        if change.mode in ("120000", "160000"):
            kind = "심볼릭 링크" if change.mode == "120000" else "서브모듈"
            raise RoundFailed("OUTSIDE_SCOPE", f"{change.path}: {kind}는 만들 수 없습니다")
        for path in filter(None, (change.path, change.old_path)):
            if not in_scope(path, scope):
                outside.append(path)
    if outside:
        raise RoundFailed(
            "OUTSIDE_SCOPE", f"허용 범위({', '.join(scope)}) 밖의 변경: {', '.join(sorted(set(outside)))}"
        )


def _outside_state(task, repository: Path, tree: Worktree, home: Path) -> dict:
    """The repository's own state and every file under the task's directory except this
    round's worktree and home: none of it may change while the round's code runs."""
    state: dict = {"repository": repository_state(repository, branch_prefix(task))}
    task_dir = tree.path.parent.parent
    skip = {tree.path, home}
    files: dict[str, tuple] = {}
    for root, dirs, names in os.walk(task_dir):
        dirs[:] = [d for d in dirs if Path(root, d) not in skip]
        for name in [*names, *dirs]:
            path = Path(root, name)
            info = path.lstat()
            files[str(path.relative_to(task_dir))] = (info.st_mode, info.st_size, info.st_mtime_ns)
    state["task_dir"] = files
    return state


def _check_outside(before: dict, after: dict) -> None:
    if before["repository"] != after["repository"]:
        changed = [key for key in before["repository"] if before["repository"][key] != after["repository"][key]]
        raise RoundFailed("OUTSIDE_WORKTREE", f"작업 트리 밖의 소스 저장소가 바뀌었습니다 ({', '.join(changed)})")
    if before["task_dir"] != after["task_dir"]:
        names = sorted(set(before["task_dir"]) ^ set(after["task_dir"])) or sorted(
            name for name in before["task_dir"] if before["task_dir"][name] != after["task_dir"].get(name)
        )
        raise RoundFailed("OUTSIDE_WORKTREE", f"작업 트리 밖에 쓴 파일이 있습니다: {', '.join(names[:10])}")


def _step(name: str, command: str, timeout: int, tree: Worktree, home: Path, account, limit: int) -> CommandRun:
    ran = proc.run_limited(
        ["/bin/sh", "-c", command], cwd=tree.path, home=home, timeout=timeout, limit=limit, account=account
    )
    return _command_run(name, command, ran, timeout)


def _command_run(name: str, command: str, ran: proc.Ran, timeout: float | None = None) -> CommandRun:
    return CommandRun(
        name=name,
        command=command,
        exit_code=ran.exit_code,
        timed_out=ran.timed_out,
        truncated=ran.truncated,
        duration=ran.duration,
        output=ran.output[-LOG_KEPT:],
        user=ran.user,
        timeout=timeout,
    )


def _store_artifact(tree: Worktree, source: SystemSource) -> dict:
    path = tree.path / source.artifact_path
    real = Path(os.path.realpath(path))
    if not str(real).startswith(str(tree.path) + os.sep) or path.is_symlink() or not real.is_file():
        raise RoundFailed(
            "BUILD_FAILED", f"빌드 산출물 {source.artifact_path}이(가) 작업 트리 안의 일반 파일이 아닙니다"
        )
    if real.stat().st_size > ARTIFACT_LIMIT:
        raise RoundFailed("BUILD_FAILED", f"빌드 산출물이 너무 큽니다 ({real.stat().st_size} 바이트)")
    with real.open("rb") as handle:
        stored = store_attachment(handle, source.deploy_name)
    digest = hashlib.sha256(real.read_bytes()).hexdigest()
    if digest != stored["sha256"]:
        raise RoundFailed("BUILD_FAILED", "빌드 산출물이 저장 중에 바뀌었습니다")
    return {
        "name": source.deploy_name,
        "sha256": stored["sha256"],
        "size": stored["size"],
        "version": war_version(real),
        "path": source.artifact_path,
    }


def war_version(path: Path) -> str:
    """Implementation-Version from a WAR/JAR manifest, or ""."""
    try:
        with zipfile.ZipFile(path) as archive:
            manifest = archive.read("META-INF/MANIFEST.MF")[:65536].decode("utf-8", "replace")
    except (OSError, KeyError, zipfile.BadZipFile):
        return ""
    for line in manifest.splitlines():
        if line.startswith("Implementation-Version:"):
            return line.split(":", 1)[1].strip()[:64]
    return ""


def _finish(task, record: AgentRound, package: CodeChange, playbook, failure: RoundFailed | None) -> RoundOutcome:
    record.finished_at = timezone.now()
    if failure is None:
        record.status = RoundStatus.SUCCEEDED
        outcome, reason = Outcome.SUCCEEDED, ""
    else:
        record.status, record.error_code, record.reason = RoundStatus.FAILED, failure.code, failure.reason
        package.error_code = failure.code
        outcome = Outcome.MANUAL_INTERVENTION_REQUIRED
        reason = f"AI 에이전트 {record.number}회차 실패 [{failure.code}]: {failure.reason}"
        if record.worktree:
            reason += f" (작업 트리 보존: {record.worktree})"
    package.status = record.status
    record.save()
    audit.record(
        "system",
        "agent.round_finished" if failure is None else "agent.round_failed",
        task=task.task_id,
        target=task.system.code,
        result_code=package.error_code or "OK",
        payload={
            "round": record.number,
            "institution": task.system.institution.code,
            "branch": record.branch,
            "head_commit": record.head_commit,
            "files": package.files,
            "error_code": package.error_code,
            "reason": record.reason,
            "artifact_sha256": package.artifact.get("sha256", ""),
            "os_user": record.os_user,
        },
    )
    result = ResultPackage(
        playbook=playbook.NAME,
        playbook_version=playbook.VERSION,
        outcome=str(outcome),
        reason=reason,
        expected_version=str(package.artifact.get("version") or ""),
        diff=record.diff,
        log=package.agent.output if package.agent else "",
        code_change=package,
    )
    return RoundOutcome(str(outcome), reason, result.to_json())
