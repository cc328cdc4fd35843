"""AI work agent rounds that must fail, each with a clear state and reason, the worktree kept
for inspection and nothing deployed; and one that succeeds, with the diff computed by git.

Real parts only: a real git repository of the demo application, the real reference agent
(its --fault switches make it misbehave on purpose), the real build and test commands."""

from __future__ import annotations

import io
import json
import os
import pwd
import shlex
import shutil
import sys
import tempfile
from pathlib import Path

import pytest
from django.core.management import CommandError, call_command
from django.test import Client

from audit.models import AuditEntry
from cmdb.models import SystemSource
from execution import tasks
from execution.agent import demo
from execution.agent.models import AgentRound, RoundStatus
from execution.agent.result import ResultProblem, check
from execution.services import run_task
from governance import control
from governance.models import Notification, OpsTask, Status
from governance.results import ResultPackage
from tests.execution.engine_helpers import approved_task
from tests.factories import ServerFactory, UserFactory

REFERENCE = Path(demo.__file__).with_name("reference_agent.py")
CHANGE = {
    "description": "안내 페이지의 운영 시간을 20시까지로 바꿔 주세요",
    "file": "src/index.html",
    "find": "평일 09:00-18:00",
    "replace": "평일 09:00-20:00",
}


def agent_command(*extra: str) -> list[str]:
    return [sys.executable, "-I", str(REFERENCE), "--context", "{context}", "--result", "{result}", *extra]


@pytest.fixture
def workspace(db, tmp_path, settings):
    """The demo application's repository registered as the system's source; worktrees under tmp."""
    settings.AGENT_WORK_ROOT = tmp_path / "agent"
    settings.AGENT_OS_USER = ""
    settings.AGENT_COMMAND = agent_command()
    repository = demo.create_demo_repository(tmp_path / "repo")
    server = ServerFactory()
    source = SystemSource.objects.create(system=server.system, repository=str(repository), **demo.DEMO_SOURCE)
    return server, source


def run_change(server, parameters=None) -> tuple[OpsTask, AgentRound]:
    task = approved_task([server], "CODE_FIX", dict(parameters or CHANGE))
    assert task.plan, "the CODE_FIX plan renders from the CMDB source"
    run_task(task.pk)
    task.refresh_from_db()
    return task, AgentRound.objects.get(task=task)


def run_second_round(task: OpsTask) -> AgentRound:
    """After the PM's rework verdict: the task is approved again for round 2, runs and waits for
    the PM's validation; its second round."""
    task.refresh_from_db()
    assert task.status == Status.APPROVED and task.rework_round == 1
    run_task(task.pk)
    task.refresh_from_db()
    assert task.status == Status.PENDING_PM_VALIDATION, task.failure_reason
    return AgentRound.objects.get(task=task, number=2)


def assert_failed(task: OpsTask, record: AgentRound, code: str) -> None:
    assert task.status == Status.MANUAL_INTERVENTION_REQUIRED
    assert f"[{code}]" in task.failure_reason
    assert record.status == RoundStatus.FAILED and record.error_code == code
    assert Path(record.worktree).is_dir(), "the worktree is kept for inspection"
    assert record.worktree in task.failure_reason
    package = ResultPackage.from_json(task.result_package)
    assert package.code_change is not None and package.code_change.error_code == code
    assert not package.code_change.artifact, "nothing built is offered for deployment"
    assert not OpsTask.objects.filter(sub_type="APP_DEPLOY").exists(), "nothing deployed"
    entry = AuditEntry.objects.filter(action="agent.round_failed", task=task.task_id).get()
    assert entry.payload["error_code"] == code


def test_a_round_shows_the_diff_git_computed_builds_and_tests(workspace):
    server, source = workspace
    task, record = run_change(server)
    assert task.status == Status.PENDING_PM_VALIDATION, task.failure_reason
    package = ResultPackage.from_json(task.result_package)
    change = package.code_change
    assert change is not None and change.status == RoundStatus.SUCCEEDED
    assert change.files == ["src/index.html"]
    assert "-<p>운영 시간: 평일 09:00-18:00</p>" in package.diff
    assert "+<p>운영 시간: 평일 09:00-20:00</p>" in package.diff
    assert ".guardia" not in package.diff, "context.md and result.json are GUARDiA's, never part of the change"
    assert change.build and change.build.ok and "dist/app.war" in change.build.output
    assert change.test and change.test.ok
    assert len(change.artifact["sha256"]) == 64 and change.artifact["version"].startswith("1.0.0+")
    assert package.expected_version == change.artifact["version"]
    assert record.branch == f"guardia/{task.task_id}/r1"
    context = (Path(record.worktree) / ".guardia" / "context.md").read_text()
    assert "src/" in context and "python3 build.py" in context and "첫 회차" in context
    # The change is committed on the round's branch; the repository's own checkout is untouched.
    assert "20:00" not in (Path(source.repository) / "src" / "index.html").read_text()


@pytest.mark.parametrize(
    ("fault", "code", "said"),
    [
        ("hang", "AGENT_TIMEOUT", "제한 시간 1초"),
        ("no-result", "RESULT_MISSING", "result.json"),
        ("bad-result", "RESULT_INVALID", "JSON"),
        ("write-outside", "OUTSIDE_WORKTREE", "outside.txt"),
        ("outside-scope", "OUTSIDE_SCOPE", "build.py"),
    ],
)
def test_a_misbehaving_agent_fails_the_round(workspace, settings, fault, code, said):
    server, _source = workspace
    settings.AGENT_COMMAND = agent_command("--fault", fault)
    settings.AGENT_TIMEOUT = 1 if fault == "hang" else 60
    task, record = run_change(server)
    assert_failed(task, record, code)
    assert said in task.failure_reason
    if fault == "outside-scope":
        assert "build.py" in record.diff, "the PM can still see what the agent did"


def test_result_json_schema_names_the_field():
    with pytest.raises(ResultProblem) as caught:
        check({"status": "done", "summary": "x", "changed_files": []})
    assert caught.value.code == "RESULT_INVALID" and "status" in str(caught.value)
    with pytest.raises(ResultProblem):
        check({"status": "failed", "summary": "x", "changed_files": []})  # failed needs an error_code
    assert check({"status": "success", "summary": "ok", "changed_files": ["a"], "error_code": None})


def test_failing_build(workspace):
    server, _source = workspace
    task, record = run_change(server, {**CHANGE, "find": "<title>", "replace": "<!-- -->"})
    assert_failed(task, record, "BUILD_FAILED")
    package = ResultPackage.from_json(task.result_package).code_change
    assert package and package.build and package.build.exit_code == 2 and "no <title>" in package.build.output


def test_a_build_that_changes_the_reviewed_sources(workspace):
    """The artifact must come from the commit the PM reviews: a build that edits a source file
    (or any other hand in the worktree meanwhile) fails the round."""
    server, source = workspace
    SystemSource.objects.filter(pk=source.pk).update(
        build_command="python3 build.py && echo '<p>x</p>' >> src/index.html"
    )
    server.refresh_from_db()
    server.system.refresh_from_db()  # not the cached source with the old build command
    task, record = run_change(server)
    assert_failed(task, record, "SOURCE_CHANGED")
    assert "src/index.html" in task.failure_reason


def test_failing_tests(workspace):
    server, _source = workspace
    task, record = run_change(server, {**CHANGE, "find": "<h1>민원 안내</h1>", "replace": "<h2>민원 안내</h2>"})
    assert_failed(task, record, "TEST_FAILED")
    assert "exactly one <h1>" in record.test_log
    # The task page shows the failed round: the reason, the kept worktree, the diff, the test output.
    console = Client()
    console.force_login(UserFactory(role="pm"))
    page = console.get(f"/console/tasks/{task.task_id}/").content.decode()
    assert 'id="code-change-error"' in page and "TEST_FAILED" in page and record.worktree in page
    assert 'data-path="src/index.html"' in page and "exactly one &lt;h1&gt;" in page


def test_agent_reports_failure(workspace):
    server, _source = workspace
    task, record = run_change(server, {**CHANGE, "find": "없는 문구"})
    assert_failed(task, record, "AGENT_FIND_NOT_FOUND")


def test_agent_environment_is_clean(workspace, settings, monkeypatch):
    """No GUARDiA setting or credential reaches the agent: it sees PATH, locale and its own HOME."""
    server, _source = workspace
    monkeypatch.setenv("GUARDIA_VAULT_KEY", "do-not-leak")
    monkeypatch.setenv("DJANGO_SETTINGS_MODULE", "guardia.settings")
    script = (
        "import json, os; json.dump(dict(os.environ), open('.guardia/env.json', 'w'))"
        "; open('src/index.html', 'a').write('\\n')"
        "; json.dump({'status': 'success', 'summary': 'env', 'changed_files': ['src/index.html']},"
        " open('{result}', 'w'))"
    )
    settings.AGENT_COMMAND = [sys.executable, "-I", "-c", script]
    task, record = run_change(server)
    # Its own extra file in .guardia/ fails the round, and the file tells what it saw.
    assert_failed(task, record, "OUTSIDE_SCOPE")
    seen = json.loads((Path(record.worktree) / ".guardia" / "env.json").read_text())
    assert set(seen) <= {"PATH", "LANG", "LC_ALL", "HOME", "TMPDIR", "LC_CTYPE"}, seen
    assert seen["HOME"].startswith(str(settings.AGENT_WORK_ROOT))


def test_agent_output_is_capped(workspace, settings):
    server, _source = workspace
    settings.AGENT_COMMAND = agent_command("--fault", "noisy")
    settings.AGENT_OUTPUT_LIMIT = 100_000  # 4 MiB written: kept up to the limit, the rest dropped
    task, record = run_change(server)
    assert task.status == Status.PENDING_PM_VALIDATION, task.failure_reason
    change = ResultPackage.from_json(task.result_package).code_change
    assert change and change.agent and change.agent.truncated
    assert len(change.agent.output.encode()) <= 100_000 and len(record.agent_log.encode()) <= 100_000
    # Far beyond the limit the agent is stopped as a runaway.
    settings.AGENT_OUTPUT_LIMIT = 10_000
    task, record = run_change(server)
    assert_failed(task, record, "AGENT_OUTPUT_LIMIT")


def test_no_source_in_the_cmdb(workspace):
    server, source = workspace
    task = approved_task([server], "CODE_FIX", CHANGE)
    source.delete()
    run_task(task.pk)
    task.refresh_from_db()
    assert task.status in (Status.FAILED_ROLLED_BACK, Status.MANUAL_INTERVENTION_REQUIRED)
    assert "소스 저장소" in task.failure_reason or "계획" in task.failure_reason


def test_plan_shows_the_agent_build_and_test_commands(workspace):
    server, source = workspace
    task = approved_task([server], "CODE_FIX", CHANGE)
    steps = task.plan["step_sets"][0]["steps"]
    checks = {step["name"]: step["check"] for step in steps}
    assert checks["build"]["command"] == "python3 build.py"
    assert checks["test"]["command"] == "python3 test.py"
    assert checks["agent"]["scope"] == "src/, VERSION"
    assert shlex.split(checks["agent"]["command"])[-1] == "{result}"
    # A build command changed after approval changes the plan: the round is refused, nothing runs.
    SystemSource.objects.filter(pk=source.pk).update(build_command="python3 build.py && curl evil")
    run_task(task.pk)
    task.refresh_from_db()
    assert task.status == Status.FAILED_ROLLED_BACK and "계획" in task.failure_reason
    assert not AgentRound.objects.filter(task=task).exists()


INSTRUCTION = '야간 민원 시간을 반영하세요.\n바꾸기: "평일 09:00-20:00" -> "평일 09:00-21:00"'


def test_rework_round_gets_the_instruction_and_feedback_is_exported(workspace):
    server, _source = workspace
    pm = UserFactory(role="pm")
    task, first = run_change(server)
    control.validate_result(pm, task.task_id, "rework", INSTRUCTION, plan_sha256=task.plan_sha256)
    second = run_second_round(task)
    assert INSTRUCTION.splitlines()[1] in second.context and "1회차 검증 후 지시" in second.context
    assert second.branch == f"guardia/{task.task_id}/r2" and second.start_commit == first.head_commit
    package = ResultPackage.from_json(task.result_package)
    assert "+<p>운영 시간: 평일 09:00-21:00</p>" in package.diff, "diffed against the round-1 base"
    assert package.code_change and package.code_change.round == 2
    control.validate_result(pm, task.task_id, "approve", "좋습니다", plan_sha256=task.plan_sha256)
    assert AuditEntry.objects.filter(action="agent.round_started", task=task.task_id).count() == 2

    out = io.StringIO()
    call_command("export_agent_feedback", "--task", task.task_id, stdout=out)
    lines = [json.loads(line) for line in out.getvalue().splitlines()]
    assert [(r["round"], r["pm_decision"]) for r in lines] == [(1, "rework"), (2, "approve")]
    assert lines[0]["instruction"] == INSTRUCTION and lines[1]["instruction"] == "좋습니다"
    assert lines[0]["request"]["parameters"]["find"] == CHANGE["find"]
    assert "20:00" in lines[0]["diff"] and all(line in lines[1]["context"] for line in INSTRUCTION.splitlines())


def test_after_the_last_round_the_task_needs_a_person(workspace, settings):
    server, _source = workspace
    settings.AGENT_MAX_ROUNDS = 1
    pm = UserFactory(role="pm")
    task, _first = run_change(server)
    control.validate_result(pm, task.task_id, "rework", INSTRUCTION, plan_sha256=task.plan_sha256)
    task.refresh_from_db()
    assert task.status == Status.MANUAL_INTERVENTION_REQUIRED and "최대 회차(1)" in task.failure_reason
    assert AuditEntry.objects.filter(action="agent.max_rounds", task=task.task_id).exists()
    assert AgentRound.objects.filter(task=task).count() == 1


def _account_exists(name: str) -> bool:
    try:
        pwd.getpwnam(name)
    except KeyError:
        return False
    return True


@pytest.mark.skipif(
    os.geteuid() != 0 or not _account_exists("guardia-agent"),
    reason="needs root and the guardia-agent account that scripts/setup.sh creates",
)
def test_agent_build_and_tests_run_as_their_own_account(workspace, settings):
    """The agent, the build and the tests run as the unprivileged account: a write outside the
    worktree is refused by the operating system itself, and the round fails."""
    server, _source = workspace
    root = Path(tempfile.mkdtemp(prefix="guardia-agent-test-"))
    root.chmod(0o711)  # the account walks down to its worktree, nothing more
    settings.AGENT_WORK_ROOT = root / "agent"
    settings.AGENT_OS_USER = "guardia-agent"
    settings.AGENT_COMMAND = ["python3", "-I", str(REFERENCE), "--context", "{context}", "--result", "{result}"]
    try:
        task, record = run_change(server)
        assert task.status == Status.PENDING_PM_VALIDATION, task.failure_reason
        change = ResultPackage.from_json(task.result_package).code_change
        assert record.os_user == "guardia-agent"
        assert change and {change.agent.user, change.build.user, change.test.user} == {"guardia-agent"}
        assert Path(record.worktree, "dist", "app.war").stat().st_uid == pwd.getpwnam("guardia-agent").pw_uid

        settings.AGENT_COMMAND = [*settings.AGENT_COMMAND, "--fault", "write-outside"]
        task, record = run_change(server)
        assert_failed(task, record, "AGENT_FAILED")
        assert "Permission denied" in record.agent_log
        assert not (Path(record.worktree).parent / "outside.txt").exists()
    finally:
        shutil.rmtree(root, ignore_errors=True)


def test_unreachable_workspace_is_refused_with_the_reason(workspace, settings, tmp_path):
    server, _source = workspace
    if os.geteuid() != 0 or not _account_exists("guardia-agent"):
        pytest.skip("needs root and the guardia-agent account")
    settings.AGENT_OS_USER = "guardia-agent"  # tmp_path's parents are 0700: the account cannot get in
    task, record = run_change(server)
    assert_failed(task, record, "WORKSPACE_ERROR")
    assert "o+x" in task.failure_reason


def test_git_hooks_of_the_repository_never_run(workspace, tmp_path):
    """GUARDiA's own git calls (worktree, add, diff, commit) run no hook of the repository."""
    server, source = workspace
    marker = tmp_path / "hook-ran"
    for hook in ("post-checkout", "pre-commit", "post-commit"):
        path = Path(source.repository, ".git", "hooks", hook)
        path.write_text(f"#!/bin/sh\necho {hook} >> {marker}\n")
        path.chmod(0o755)
    task, _record = run_change(server)
    assert task.status == Status.PENDING_PM_VALIDATION, task.failure_reason
    assert not marker.exists()


def test_diff_view_escapes_what_the_agent_wrote():
    from governance.diffview import split_files

    diff = (
        "diff --git a/src/index.html b/src/index.html\n--- a/src/index.html\n+++ b/src/index.html\n"
        "@@ -1 +1 @@\n-<p>old</p>\n+<script>alert(1)</script>\n"
    )
    [changed] = split_files(diff)
    html = "".join(line.html for line in changed.lines)
    assert "<script>" not in html and "&lt;" in html
    assert (changed.path, changed.added, changed.removed) == ("src/index.html", 1, 1)
    assert [line.kind for line in changed.lines] == ["hunk", "del", "add"]


def test_demo_source_command_registers_the_demo_repository(db, tmp_path):
    server = ServerFactory()
    call_command("agent_demo_source", server.system.code, "--path", str(tmp_path / "demo"), stdout=io.StringIO())
    source = SystemSource.objects.get(system=server.system)
    assert source.repository == str(tmp_path / "demo") and source.build_command == "python3 build.py"
    assert (tmp_path / "demo" / ".git").is_dir() and (tmp_path / "demo" / "src" / "index.html").is_file()
    assert AuditEntry.objects.filter(action="cmdb.systemsource_create", target=str(source)).exists()
    with pytest.raises(CommandError, match="system"):
        call_command("agent_demo_source", "NO-SUCH-SYSTEM", stdout=io.StringIO())


def test_a_deploy_that_cannot_be_filed_is_audited_and_told_to_the_pm(workspace):
    """The accepted change's deploy is filed in the requester's name; a requester who may no
    longer file requests gets no deploy: the refusal is audited and the PM is told why."""
    server, _source = workspace
    pm = UserFactory(role="pm")
    task, _record = run_change(server)  # its requester has no role: may not file requests
    control.validate_result(pm, task.task_id, "approve", "배포하세요", plan_sha256=task.plan_sha256)
    assert tasks.deploy_code_change(task.pk, pm.pk) == ""
    assert not OpsTask.objects.filter(sub_type="APP_DEPLOY").exists()
    refused = AuditEntry.objects.get(action="agent.deploy_refused", task=task.task_id)
    assert "권한" in refused.payload["reason"]
    assert Notification.objects.filter(user=pm, kind="alert", message__contains=task.task_id).exists()
