"""The reaper's choice between resuming and rolling back, one situation at a time.

Rows as a dead worker leaves them (its claim, its execution, the journal of steps it recorded)
and the real sshd testbed; the reaper runs one sweep. Real workers killed at every step kind:
test_worker_kill_resume.py.
"""

from __future__ import annotations

import re
import threading
from pathlib import Path

import pytest

from audit.models import AuditEntry
from cmdb.models import System
from execution import reaper
from execution.models import RunState, ServerRun, StepResult
from execution.playbooks import build
from execution.rolling import SKIPPED
from execution.transport import SSHTransport
from governance.models import Notification, OpsTask, Status
from tests.execution.dead_worker import left_running, swept_in_flight
from tests.execution.engine_helpers import (
    approved_task,
    commands_received,
    deploy_parameters,
    fast_port_wait,
    version_of,
)

pytestmark = pytest.mark.django_db


def journal(execution, srv, steps: list[tuple[str, str]]) -> None:
    """Steps the dead worker recorded on ``srv`` (name, output), in order."""
    run = ServerRun.objects.get(execution=execution, server=srv)
    for seq, (name, output) in enumerate(steps, 1):
        StepResult.objects.create(server_run=run, seq=seq, name=name, command=name, output_excerpt=output)


def restart_left_midway(testbed, srv, *, shut_down: bool):
    """A one-server restart its worker died in: the pid it read journaled and, with
    ``shut_down``, the shutdown run on the server and journaled too. Returns (task, execution)."""
    task = approved_task([srv], "SERVICE_RESTART", {"rollout": {"canary_share": 0}})
    steps = [("pid-before", Path(testbed.server(srv.server_id)["pid_file"]).read_text().strip())]
    execution = left_running(task, [srv], in_flight=[srv])
    if shut_down:
        testbed.run_script(testbed.server(srv.server_id), "shutdown.sh")
        steps.append(("shutdown", ""))
    journal(execution, srv, steps)
    return task, execution


def recovered(task) -> dict:
    return AuditEntry.objects.get(action="execution.recovered", task=task.task_id).payload


def test_policy_is_the_systems_then_the_sites_and_a_stop_always_rolls_back(testbed_cmdb, settings):
    task = approved_task(testbed_cmdb[:1], "SERVICE_RESTART")
    playbook = build("SERVICE_RESTART", {})
    assert reaper.recovery_policy(task, playbook) == "rollback"  # the default
    settings.EXECUTION_RECOVERY_POLICY = "resume"
    assert reaper.recovery_policy(task, playbook) == "resume"
    task.system.recovery_policy = System.Recovery.ROLLBACK
    assert reaper.recovery_policy(task, playbook) == "rollback"  # the system's own choice wins
    settings.EXECUTION_RECOVERY_POLICY = "rollback"
    task.system.recovery_policy = System.Recovery.RESUME
    assert reaper.recovery_policy(task, playbook) == "resume"
    task.stop_requested = True
    assert reaper.recovery_policy(task, playbook) == "rollback"
    # A change with nothing to undo (rotation, cleanup) is finished whatever the policy says.
    settings.EXECUTION_RECOVERY_POLICY = "rollback"
    task.stop_requested = False
    assert reaper.recovery_policy(task, build("LOGROTATE", {})) == "resume"


def test_resume_skips_the_journaled_shutdown_and_starts_the_server_once(
    testbed_cmdb, clean_testbed, owner_and_pm, settings
):
    """Died after the shutdown was journaled: the resumed restart does not stop the server again,
    reads nothing twice that it parsed, starts it once, and the task succeeds."""
    settings.EXECUTION_RECOVERY_POLICY = "resume"
    srv = testbed_cmdb[0]
    task, execution = restart_left_midway(clean_testbed, srv, shut_down=True)
    before = len(commands_received(clean_testbed, srv.server_id))
    results = reaper.sweep()
    task.refresh_from_db()
    assert [r["task"] for r in results] == [task.task_id]
    assert task.status == Status.PENDING_PM_VALIDATION, results
    received = commands_received(clean_testbed, srv.server_id)[before:]
    assert len(re.findall(r"shutdown\.sh", received)) == 0 and len(re.findall(r"startup\.sh", received)) == 1
    skipped = StepResult.objects.filter(server_run__execution=execution, command=SKIPPED)
    assert set(skipped.values_list("name", flat=True)) == {"pid-before", "shutdown"}
    assert version_of(srv) == "1.0.0"
    payload = recovered(task)
    assert payload["policy"] == "resume" and "shutdown" in payload["servers"][srv.server_id]["skipped"]
    # Owner and PM heard of the lost worker when the reaper took over, and again at the end.
    for person in owner_and_pm:
        texts = list(Notification.objects.filter(user=person, task=task).values_list("message", flat=True))
        assert any(t.startswith("[작업자 유실] ") for t in texts), texts
    assert Notification.objects.filter(user=owner_and_pm[0], message__startswith="[작업자 유실 복구]").exists()


def test_a_raw_command_in_flight_is_never_repeated_and_ends_state_uncertain(testbed_cmdb, clean_testbed, owner_and_pm):
    """Whether an operator's command ran cannot be read from the server: a person decides."""
    task, run, received = swept_in_flight(clean_testbed, testbed_cmdb[1], "RAW_COMMAND", {"command": "uptime"})
    assert task.status == Status.STATE_UNCERTAIN
    assert run.state == RunState.UNCERTAIN and "'command'" in run.message
    assert "uptime" not in received


def test_a_stop_on_a_lost_worker_rolls_back_even_when_the_policy_is_resume(
    testbed_cmdb, clean_testbed, owner_and_pm, settings
):
    settings.EXECUTION_RECOVERY_POLICY = "resume"
    targets = testbed_cmdb[2:4]
    task = approved_task(targets, "APP_DEPLOY", deploy_parameters("2.9.0", max_parallel=1))
    execution = left_running(task, targets, in_flight=targets[:1])
    OpsTask.objects.filter(pk=task.pk).update(stop_requested=True, stop_reason="정지")
    reaper.sweep()
    task.refresh_from_db()
    assert task.status == Status.ABORTED
    assert recovered(task)["policy"] == "rollback"
    states = dict(ServerRun.objects.filter(execution=execution).values_list("server_ref", "state"))
    assert states == {targets[0].server_id: RunState.ROLLED_BACK, targets[1].server_id: RunState.ABORTED}
    assert [version_of(s) for s in targets] == ["1.0.0", "1.0.0"]


def test_the_dead_workers_last_command_is_waited_for_not_run_again(testbed_cmdb, clean_testbed, owner_and_pm, settings):
    """The worker died while shutdown.sh ran on the server; the remote command goes on without
    it. The reaper waits for it to end before it reads the server, so it sees the WAS down and
    starts it, instead of shutting it down a second time."""
    settings.EXECUTION_RECOVERY_POLICY = "resume"
    srv = testbed_cmdb[4]
    task, execution = restart_left_midway(clean_testbed, srv, shut_down=False)
    before = len(commands_received(clean_testbed, srv.server_id))
    leftover = SSHTransport(srv)
    leftover.connect()
    slow = threading.Thread(
        target=leftover.run, args=(f"sleep 1.5 && {srv.script_path}/shutdown.sh",), kwargs={"timeout": 30}
    )
    slow.start()
    try:
        reaper.sweep()
    finally:
        slow.join()
        leftover.close()
    task.refresh_from_db()
    assert task.status == Status.PENDING_PM_VALIDATION
    received = commands_received(clean_testbed, srv.server_id)[before:]
    assert len(re.findall(r"shutdown\.sh", received)) == 1 and len(re.findall(r"startup\.sh", received)) == 1
    assert "recover-wait" in set(
        StepResult.objects.filter(server_run__execution=execution).values_list("name", flat=True)
    )


def test_a_plan_that_changed_since_approval_is_rolled_back_not_resumed(
    testbed_cmdb, clean_testbed, owner_and_pm, settings
):
    settings.EXECUTION_RECOVERY_POLICY = "resume"
    srv = testbed_cmdb[5]
    task, execution = restart_left_midway(clean_testbed, srv, shut_down=True)
    fast_port_wait([srv], 7)  # the CMDB changed after approval: the plan's port wait differs
    reaper.sweep()
    task.refresh_from_db()
    assert task.status == Status.FAILED_ROLLED_BACK
    payload = recovered(task)
    assert payload["policy"] == "rollback" and "실행 계획이 승인된 것과 다릅니다" in payload["reason"]
    assert ServerRun.objects.get(execution=execution).state == RunState.ROLLED_BACK
    assert version_of(srv) == "1.0.0"  # started again by the rollback, healthy


class CrontabStandIn:
    """Stand-in for a server's context in the one case that cannot run here: this machine has no
    ``crontab``. It answers the observer's commands as a server would print them."""

    planning = False
    phase = "forward"
    task_ref = "OPS-CRON-9"

    def __init__(self, server, crontab: str, saved: bool):
        self.server, self.crontab, self.saved = server, crontab, saved
        self.engine = type("EngineStandIn", (), {"strategy": type("S", (), {"drain_flag": ""})()})()
        self.health = type("HealthStandIn", (), {"log_path": ""})()
        self.sent: list[str] = []

    def run(self, name: str, command: str, **_options):
        self.sent.append(name)
        out = {
            "recover-wait": "0",
            "recover-probe": f"saved={'yes' if self.saved else 'no'}\nlogsize=0",
            "recover-crontab": self.crontab,
        }[name]
        return type("Result", (), {"stdout": out})()


@pytest.mark.parametrize(
    ("block", "saved", "done", "problem"),
    [
        ("this task's", True, {"backup", "install"}, False),
        ("this task's", False, {"backup", "install"}, True),  # installed without its backup
        ("an older", True, {"backup"}, False),
        ("none", True, {"backup"}, False),
        ("none", False, set(), False),
    ],
)
def test_a_cron_block_counts_as_installed_only_when_it_is_exactly_this_tasks(db, block, saved, done, problem):
    from execution.journal import observe
    from tests.factories import ServerFactory

    book = build("CRON_MANAGE", {"entries": [{"schedule": "*/5 * * * *", "command": "df -h"}]})
    book.prepare(None)
    server = ServerFactory()
    ctx = CrontabStandIn(server, "", saved)
    mine = [book.BEGIN, *book.cron_lines(book.lines_for(ctx)), book.END]
    other = [book.BEGIN, "0 1 * * * /usr/bin/df -h", book.END]
    lines = ["MAILTO=ops", *{"this task's": mine, "an older": other, "none": []}[block], "0 2 * * * /bin/true"]
    ctx.crontab = "\n".join(lines)
    obs = observe(book, ctx, {})
    assert set(obs.done) == done
    assert bool(obs.problem) == problem
    assert obs.state == {"backed_up": saved}
    assert "recover-wait" in ctx.sent  # the dead worker's last command is waited for first
