"""The SSH account's sudoers file is generated from the command catalogue: only rules with a
run-as user appear, each pinned to the program's path and its argument list pattern."""

from __future__ import annotations

import io
import json
import shutil
import subprocess

import pytest
from django.core.exceptions import ValidationError
from django.core.management import CommandError, call_command

from cmdb.models import CommandRule
from cmdb.sudoers import SudoersError, posix_regex, sudoers_for
from execution import commands, errors
from execution.parameters import server_roots
from tests.factories import ServerFactory, SystemFactory

pytestmark = pytest.mark.django_db
UNIT = r"(?:--no-pager )?(status|restart) tomcat\.service"


@pytest.fixture
def system(db):
    system = SystemFactory(code="SUDO-SYS")
    CommandRule.objects.create(
        system=system,
        program="/usr/bin/systemctl",
        run_as="root",
        argv_pattern=UNIT,
        option_pattern="--no-pager",
        operand_pattern=r"status|restart|tomcat\.service",
        description="톰캣 유닛",
    )
    CommandRule.objects.create(
        system=system, program="/opt/was/bin/startup.sh", run_as="was", argv_pattern="(quiet)?", operand_pattern="quiet"
    )
    return system


@pytest.mark.parametrize(
    ("python", "posix"),
    [
        (UNIT, r"(--no-pager )?(status|restart) tomcat\.service"),
        (r"-n \d{1,6} /var/log/was/gc\.log", r"-n [0-9]{1,6} /var/log/was/gc\.log"),
        (r"[\w.-]{1,100}", r"[A-Za-z0-9_.-]{1,100}"),
        (r"[^\d]+ #1", r"[^0-9]+ \#1"),
    ],
)
def test_python_patterns_become_posix_extended_ones(python, posix):
    assert posix_regex(python) == posix


@pytest.mark.parametrize("python", [r"(?=x)y", r"\bword", r"a*?", r"\s+", r"(?P<n>x)", r"[\s]", r"(x)\1"])
def test_patterns_sudo_would_read_differently_are_refused(python):
    with pytest.raises(SudoersError):
        posix_regex(python)


@pytest.mark.skipif(shutil.which("grep") is None, reason="needs grep -E (a POSIX ERE engine)")
def test_the_translation_accepts_and_refuses_the_same_argument_lists_as_the_catalogue():
    import re

    posix = posix_regex(UNIT)
    samples = [
        "status tomcat.service",
        "--no-pager restart tomcat.service",
        "stop tomcat.service",
        "status tomcatXservice",
        "status tomcat.service; reboot",
        "restart sshd.service",
    ]
    found = subprocess.run(
        ["grep", "-E", "-x", posix], input="\n".join(samples) + "\n", capture_output=True, text=True
    ).stdout.splitlines()
    assert found == [s for s in samples if re.fullmatch(UNIT, s)] == samples[:2]


def test_generated_file_has_one_line_per_sudo_rule_and_nothing_else(system):
    # Rules that do not run through sudo, and other systems' rules, never appear.
    CommandRule.objects.create(
        system=SystemFactory(code="OTHER"), program="/usr/bin/id", run_as="root", argv_pattern=""
    )
    out = io.StringIO()
    call_command("catalogue_sudoers", "SUDO-SYS", "--user", "guardia", stdout=out)
    text = out.getvalue()
    grants = [line for line in text.splitlines() if line.startswith("guardia ALL=")]
    assert grants == [
        r"guardia ALL=(root) NOPASSWD: /usr/bin/systemctl ^(--no-pager )?(status|restart) tomcat\.service$",
        r"guardia ALL=(was) NOPASSWD: /opt/was/bin/startup.sh ^(quiet)?$",
    ]
    assert "Defaults:guardia !requiretty, env_reset, !setenv, noexec" in text
    assert "/usr/bin/id" not in text and "ALL=(ALL)" not in text and " ALL\n" not in text


def test_the_default_set_needs_no_sudo_at_all():
    out = io.StringIO()
    call_command("catalogue_sudoers", stdout=out)
    assert "needs no sudo rights at all" in out.getvalue()
    assert "NOPASSWD" not in out.getvalue()


def test_unknown_system_and_untranslatable_rules_are_errors(system):
    with pytest.raises(CommandError):
        call_command("catalogue_sudoers", "NOPE", stdout=io.StringIO())
    CommandRule.objects.filter(program="/usr/bin/systemctl").update(argv_pattern=r"status \S+")
    with pytest.raises(CommandError) as info:
        call_command("catalogue_sudoers", "SUDO-SYS", stdout=io.StringIO())
    assert "systemctl" in str(info.value)
    with pytest.raises(SudoersError):
        sudoers_for([], "root; ALL")


def test_rows_written_around_validation_cannot_inject_sudoers_lines(system):
    rule = CommandRule.objects.get(program="/usr/bin/systemctl")
    rule.description = "x\nguardia ALL=(ALL) NOPASSWD: ALL"
    text = sudoers_for([rule], "guardia")
    assert "\nguardia ALL=(ALL)" not in text and text.count("\nguardia ALL=") == 1
    for field, value in [
        ("run_as", "root,ALL"),
        ("program", "/usr/bin/systemctl, /bin/sh"),
        ("argv_pattern", "status\nguardia ALL=(ALL) ALL"),
    ]:
        bad = CommandRule.objects.get(program="/usr/bin/systemctl")
        setattr(bad, field, value)
        with pytest.raises(SudoersError):
            sudoers_for([bad], "guardia")


@pytest.mark.skipif(
    shutil.which("visudo") is None or shutil.which("cvtsudoers") is None, reason="needs sudo's visudo and cvtsudoers"
)
def test_sudo_itself_parses_the_file_and_reads_the_command_as_generated(system, tmp_path):
    CommandRule.objects.filter(program="/opt/was/bin/startup.sh").delete()
    path = tmp_path / "guardia"
    out = io.StringIO()
    call_command("catalogue_sudoers", "SUDO-SYS", stdout=out)
    path.write_text(out.getvalue())
    check = subprocess.run(["visudo", "-cf", str(path)], capture_output=True, text=True)
    assert check.returncode == 0, check.stdout + check.stderr
    parsed = json.loads(
        subprocess.run(["cvtsudoers", "-f", "json", str(path)], capture_output=True, text=True, check=True).stdout
    )
    spec = parsed["User_Specs"][0]["Cmnd_Specs"][0]
    assert spec["runasusers"] == [{"username": "root"}]
    assert spec["Commands"] == [{"command": r"/usr/bin/systemctl ^(--no-pager )?(status|restart) tomcat\.service$"}]


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"program": "systemctl", "run_as": "root", "argv_pattern": "status x"}, "program"),
        ({"program": "/usr/bin/systemctl", "run_as": "root"}, "argv_pattern"),
        ({"program": "/usr/bin/python3", "run_as": "root", "runs_programs": True, "argv_pattern": "x"}, "run_as"),
        ({"program": "/usr/bin/systemctl", "run_as": "Root Admin", "argv_pattern": "x"}, "run_as"),
    ],
)
def test_rules_run_through_sudo_are_pinned_or_refused(fields, field):
    with pytest.raises(ValidationError) as info:
        CommandRule(**fields).full_clean()
    assert field in info.value.message_dict


def test_a_sudo_rule_runs_through_sudo_n_with_exactly_its_program(system):
    server = ServerFactory(system=system)
    rules = commands.rules_for(system)
    _, line = commands.check("systemctl restart tomcat.service", rules, [server], roots_of=server_roots)
    assert line == "sudo -n -u root -- /usr/bin/systemctl restart tomcat.service"
    with pytest.raises(errors.CommandRefused):
        commands.check("systemctl stop tomcat.service", commands.rules_for(system), [server], roots_of=server_roots)
