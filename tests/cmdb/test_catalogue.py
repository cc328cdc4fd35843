"""The command catalogue in the CMDB: a default read-only set, rules only security officers
edit (through the admin, audited field by field), and rule shapes the model refuses."""

from __future__ import annotations

import pytest
from django.core.exceptions import PermissionDenied, ValidationError
from django.urls import reverse

from audit.models import AuditEntry
from cmdb import services
from cmdb.models import CommandRule
from tests.factories import SystemFactory, UserFactory

pytestmark = pytest.mark.django_db


def rule_form(**overrides) -> dict:
    form = {
        "system": "",
        "program": "lsof",
        "description": "열린 파일",
        "enabled": "on",
        "option_pattern": r"-[nPi]+",
        "operand_pattern": r":\d{1,5}",
        "argv_pattern": "",
        "path_roots": "",
        "max_args": "6",
    }
    form.update(overrides)
    return {k: v for k, v in form.items() if v is not None}


@pytest.fixture
def officer(db):
    return UserFactory(username="sec-officer", role="security_officer", is_staff=True)


def test_default_set_is_read_only_diagnostics_with_filters_marked():
    defaults = {r.program: r for r in CommandRule.objects.filter(system__isnull=True)}
    assert {"ps", "df", "free", "ss", "uptime", "uname", "id", "date", "tail", "head", "grep", "wc"} <= set(defaults)
    assert {p for p, r in defaults.items() if r.is_filter} >= {"grep", "head", "tail", "wc", "sort", "uniq"}
    assert not defaults["ps"].is_filter
    # Nothing in the default set runs other programs, and nothing may write files or change state.
    assert not any(r.runs_programs for r in defaults.values())
    assert not {"awk", "sed", "find", "sh", "bash", "env", "sudo", "busybox", "rm", "tee", "dd"} & set(defaults)
    assert defaults["tail"].roots == ["log"] and defaults["grep"].roots == ["log"]
    for rule in defaults.values():
        rule.full_clean()


def test_security_officer_adds_changes_and_deletes_a_rule_through_the_admin_audited(client, officer):
    client.force_login(officer)
    system = SystemFactory()
    response = client.post(reverse("admin:cmdb_commandrule_add"), rule_form(system=system.pk))
    assert response.status_code == 302, response.content.decode()[:2000]
    rule = CommandRule.objects.get(program="lsof", system=system)
    created = AuditEntry.objects.get(action="cmdb.command_rule_create")
    assert created.actor == officer.username and system.code in created.target
    assert created.payload["changed"]["program"] == [None, "lsof"]

    url = reverse("admin:cmdb_commandrule_change", args=[rule.pk])
    assert client.post(url, rule_form(system=system.pk, option_pattern=r"-[nP]+")).status_code == 302
    changed = AuditEntry.objects.get(action="cmdb.command_rule_change")
    assert changed.payload["changed"] == {"option_pattern": [r"-[nPi]+", r"-[nP]+"]}

    assert client.post(reverse("admin:cmdb_commandrule_delete", args=[rule.pk]), {"post": "yes"}).status_code == 302
    assert not CommandRule.objects.filter(pk=rule.pk).exists()
    deleted = AuditEntry.objects.get(action="cmdb.command_rule_delete")
    assert deleted.payload["removed"]["option_pattern"] == r"-[nP]+"


@pytest.mark.parametrize("role", ["admin", "team_lead", "supervisor", "pm", "site_manager"])
def test_other_roles_cannot_edit_the_catalogue_through_the_admin(client, role):
    user = UserFactory(username=f"not-officer-{role}", role=role, is_staff=True)
    client.force_login(user)
    ps = CommandRule.objects.get(system__isnull=True, program="ps")
    before = {f: getattr(ps, f) for f in ("option_pattern", "operand_pattern", "enabled")}
    entries = AuditEntry.objects.count()

    assert client.get(reverse("admin:cmdb_commandrule_add")).status_code == 403
    assert (
        client.post(reverse("admin:cmdb_commandrule_add"), rule_form(program="bash", runs_programs="on")).status_code
        == 403
    )
    change = client.post(
        reverse("admin:cmdb_commandrule_change", args=[ps.pk]),
        rule_form(program="ps", option_pattern=".*", operand_pattern=".*"),
    )
    assert change.status_code == 403
    delete = client.post(reverse("admin:cmdb_commandrule_delete", args=[ps.pk]), {"post": "yes"})
    assert delete.status_code == 403

    ps.refresh_from_db()
    assert {f: getattr(ps, f) for f in before} == before
    assert not CommandRule.objects.filter(program="bash").exists()
    assert not AuditEntry.objects.filter(action__startswith="cmdb.command_rule").exists()
    assert AuditEntry.objects.count() == entries


def test_service_refuses_a_non_officer_even_when_called_directly():
    admin = UserFactory(username="plain-admin", role="admin", is_staff=True)
    with pytest.raises(PermissionDenied):
        services.save_command_rule(admin, CommandRule(program="lsof"))
    ps = CommandRule.objects.get(system__isnull=True, program="ps")
    with pytest.raises(PermissionDenied):
        services.delete_command_rule(admin, ps)
    assert CommandRule.objects.filter(pk=ps.pk).exists()
    assert not CommandRule.objects.filter(program="lsof").exists()


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"program": "bash"}, "runs_programs"),
        ({"program": "/usr/bin/busybox"}, "runs_programs"),
        ({"program": "python3.11"}, "runs_programs"),
        ({"program": "awk", "runs_programs": True, "is_filter": True}, "is_filter"),
        ({"program": "sed", "runs_programs": True, "is_filter": True}, "is_filter"),
        ({"program": "../bin/ps"}, "program"),
        ({"program": "/usr//bin/ps"}, "program"),
        ({"program": "/usr/bin/../../tmp/ps"}, "program"),
        ({"program": "ps; id"}, "program"),
        ({"program": "ps", "option_pattern": "(-e"}, "option_pattern"),
        ({"program": "ps", "path_roots": "log,etc"}, "path_roots"),
    ],
)
def test_model_refuses_unsafe_rule_shapes_naming_the_field(fields, field):
    with pytest.raises(ValidationError) as info:
        CommandRule(**fields).full_clean()
    assert field in info.value.message_dict


def test_a_wrapper_is_accepted_only_when_ticked_on_purpose():
    CommandRule(program="/usr/bin/timeout", runs_programs=True).full_clean()
    CommandRule(program="/app/bin/report.sh", path_roots="log,scripts").full_clean()


def test_catalogue_of_a_system_is_the_default_set_plus_its_own_additions():
    mine, other = SystemFactory(), SystemFactory()
    CommandRule.objects.create(system=mine, program="/app/bin/report.sh")
    CommandRule.objects.create(system=other, program="/app/bin/purge.sh")
    CommandRule.objects.create(system=mine, program="lsof", enabled=False)
    programs = set(CommandRule.objects.for_system(mine).values_list("program", flat=True))
    assert "/app/bin/report.sh" in programs and "ps" in programs
    assert "/app/bin/purge.sh" not in programs and "lsof" not in programs
