"""Directory login against a real OpenLDAP slapd on loopback (tests/slapd.py): the password
is the directory's, roles come from directory groups at every login, a disabled account is
refused and its open approval steps move on, local accounts are never taken over, and TLS
(ldaps:// and StartTLS) is verified against the site's generated CA."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from pathlib import Path

import ldap
import pytest
from django.contrib.auth import get_user_model
from django.core.management import CommandError, call_command
from django_auth_ldap.config import GroupOfNamesType, LDAPSearch

from audit.models import AuditEntry
from cmdb.ldap import sync_directory_accounts
from cmdb.models import DirectoryAccount
from governance.models import StepStatus
from tests.factories import UserFactory, file_task, governance_world
from tests.slapd import GROUPS, PEOPLE, ROOT_DN, ROOT_PASSWORD, start_directory

User = get_user_model()
LOGIN = "/accounts/login/"
PEOPLE_PASSWORDS = {"kim": "kim-directory-pw-1", "lee": "lee-directory-pw-1", "breakglass": "directory-side-pw"}


@pytest.fixture(scope="module")
def directory(tmp_path_factory):
    d = start_directory(
        tmp_path_factory.mktemp("slapd"),
        PEOPLE_PASSWORDS,
        {"guardia-leads": ["kim", "lee"], "guardia-security": ["lee"]},
    )
    yield d
    d.stop()


def configure(settings, directory, *, uri=None, start_tls=False, ca=True, service_bind=False):
    settings.AUTHENTICATION_BACKENDS = [
        "axes.backends.AxesStandaloneBackend",
        "cmdb.ldap.DirectoryBackend",
        "django.contrib.auth.backends.ModelBackend",
    ]
    settings.AUTH_LDAP_SERVER_URI = uri or directory.ldap_uri
    settings.AUTH_LDAP_START_TLS = start_tls
    options = {
        ldap.OPT_NETWORK_TIMEOUT: 5,
        ldap.OPT_TIMEOUT: 5,
        ldap.OPT_REFERRALS: 0,
        ldap.OPT_X_TLS_REQUIRE_CERT: ldap.OPT_X_TLS_DEMAND,
    }
    if ca:
        options[ldap.OPT_X_TLS_CACERTFILE] = str(directory.ca_file)
    options[ldap.OPT_X_TLS_NEWCTX] = 0
    settings.AUTH_LDAP_CONNECTION_OPTIONS = options
    settings.AUTH_LDAP_BIND_DN = ROOT_DN if service_bind else ""
    settings.AUTH_LDAP_BIND_PASSWORD = ROOT_PASSWORD if service_bind else ""
    settings.AUTH_LDAP_BIND_AS_AUTHENTICATING_USER = not service_bind
    if service_bind:
        settings.AUTH_LDAP_USER_SEARCH = LDAPSearch(PEOPLE, ldap.SCOPE_SUBTREE, "(uid=%(user)s)")
    else:
        settings.AUTH_LDAP_USER_DN_TEMPLATE = f"uid=%(user)s,{PEOPLE}"
    settings.AUTH_LDAP_GROUP_SEARCH = LDAPSearch(GROUPS, ldap.SCOPE_SUBTREE, "(objectClass=groupOfNames)")
    settings.AUTH_LDAP_GROUP_TYPE = GroupOfNamesType()
    settings.AUTH_LDAP_USER_ATTR_MAP = {"first_name": "givenName", "last_name": "sn", "email": "mail"}
    settings.AUTH_LDAP_ALWAYS_UPDATE_USER = True
    settings.GUARDIA_LDAP_ROLE_GROUPS = {
        "team_lead": [directory.group_dn("guardia-leads")],
        "security_officer": [directory.group_dn("guardia-security")],
    }
    settings.GUARDIA_LDAP_DISABLED_FILTER = "(employeeType=disabled)"


def login(client, username, password):
    response = client.post(LOGIN, {"username": username, "password": password})
    return response.status_code == 302, response


def roles(username):
    return set(User.objects.get(username=username).groups.values_list("name", flat=True))


@pytest.fixture
def ldap_settings(settings, directory, db):
    configure(settings, directory)
    yield settings
    for uid in ("kim", "lee"):  # the module's directory is shared: undo a test's edits
        directory.set_attribute(uid, "employeeType", "staff")
        for group in ("guardia-leads",):
            try:
                directory.add_member(group, uid)
            except ldap.TYPE_OR_VALUE_EXISTS:
                pass


def test_directory_password_logs_in_with_role_from_group(client, ldap_settings):
    ok, response = login(client, "kim", "wrong-password")
    assert not ok and not User.objects.filter(username="kim").exists()

    ok, response = login(client, "kim", PEOPLE_PASSWORDS["kim"])
    assert ok, response.content.decode()[:500]
    kim = User.objects.get(username="kim")
    assert roles("kim") == {"team_lead"}
    assert kim.email == "kim@guardia.test" and not kim.has_usable_password() and not kim.is_superuser
    assert DirectoryAccount.objects.get(user=kim).dn == f"uid=kim,{PEOPLE}"
    assert client.get("/console/").status_code == 200
    created = AuditEntry.objects.get(action="auth.user_create", target="kim")
    assert created.payload["source"] == "directory"
    assert AuditEntry.objects.get(action="auth.role_grant", target="kim").payload["role"] == "team_lead"
    # A privileged role comes from its own group, and is audited the same way.
    assert login(client, "lee", PEOPLE_PASSWORDS["lee"])[0]
    assert roles("lee") == {"team_lead", "security_officer"}
    assert User.objects.get(username="lee").is_staff


def test_removed_from_group_loses_role_at_next_login(client, ldap_settings, directory):
    assert login(client, "kim", PEOPLE_PASSWORDS["kim"])[0]
    assert roles("kim") == {"team_lead"}
    directory.remove_member("guardia-leads", "kim")
    assert roles("kim") == {"team_lead"}  # nothing changes until the directory is asked again
    client.logout()
    assert login(client, "kim", PEOPLE_PASSWORDS["kim"])[0]
    assert roles("kim") == set()
    assert not User.objects.get(username="kim").has_perm("governance.decide_step")
    revoked = AuditEntry.objects.get(action="auth.role_revoke", target="kim")
    assert revoked.payload == {"role": "team_lead", "source": "directory"}


def test_disabled_account_refused_and_its_steps_move_on(
    client, ldap_settings, directory, django_capture_on_commit_callbacks
):
    assert login(client, "kim", PEOPLE_PASSWORDS["kim"])[0]
    client.logout()
    kim = User.objects.get(username="kim")
    world = governance_world()
    world.ownership.owner = kim
    world.ownership.save()
    with django_capture_on_commit_callbacks(execute=False):
        task = file_task(world, "SERVICE_RESTART", title="재시작")
    step = task.steps.get(status=StepStatus.PENDING, activated_at__isnull=False)
    assert step.assigned_to == kim

    directory.set_attribute("kim", "employeeType", "disabled")
    with django_capture_on_commit_callbacks(execute=False):
        ok, response = login(client, "kim", PEOPLE_PASSWORDS["kim"])
    assert not ok and "_auth_user_id" not in client.session
    kim.refresh_from_db()
    assert not kim.is_active and not kim.has_perm("governance.decide_step")
    step.refresh_from_db()
    assert step.assigned_to == world.deputy  # as for an away owner
    assert AuditEntry.objects.filter(action="auth.user_deactivate", target="kim", payload__source="directory").exists()
    assert AuditEntry.objects.filter(action="approval.escalated", payload__escalated_from="kim").exists()
    # Enabled again in the directory: the next login brings the account back.
    directory.set_attribute("kim", "employeeType", "staff")
    assert login(client, "kim", PEOPLE_PASSWORDS["kim"])[0]
    assert User.objects.get(username="kim").is_active


def test_sync_deactivates_disabled_account_without_a_login(client, settings, directory, db):
    configure(settings, directory, service_bind=True)
    assert login(client, "lee", PEOPLE_PASSWORDS["lee"])[0]
    directory.set_attribute("lee", "employeeType", "disabled")
    settings.LDAP_ENABLED = True
    out = io.StringIO()
    try:
        call_command("sync_directory", stdout=out)
    finally:
        directory.set_attribute("lee", "employeeType", "staff")
    assert out.getvalue().strip() == "checked 1, deactivated 1"
    assert not User.objects.get(username="lee").is_active
    assert AuditEntry.objects.get(action="auth.user_deactivate", target="lee").payload == {
        "source": "directory",
        "reason": "disabled in the directory",
    }
    assert sync_directory_accounts() == {"checked": 0, "deactivated": 0}  # inactive accounts are left alone


def test_sync_changes_nothing_when_the_directory_is_unreachable(settings, directory, db):
    configure(settings, directory, service_bind=True, uri="ldap://127.0.0.1:1")
    settings.LDAP_ENABLED = True
    user = UserFactory(username="park", role="team_lead")
    DirectoryAccount.objects.create(user=user, dn=directory.person_dn("park"))
    with pytest.raises(CommandError, match="nothing changed"):
        call_command("sync_directory")
    assert User.objects.get(username="park").is_active


def test_local_break_glass_account_is_never_taken_over(client, ldap_settings):
    UserFactory(username="breakglass", password="local-break-glass-pw-1", role="admin")
    ok, _ = login(client, "breakglass", PEOPLE_PASSWORDS["breakglass"])  # the directory's password
    assert not ok
    assert not DirectoryAccount.objects.exists() and roles("breakglass") == {"admin"}
    assert login(client, "breakglass", "local-break-glass-pw-1")[0]


@pytest.mark.parametrize("mode", ["ldaps", "starttls"])
def test_tls_verified_against_the_sites_ca(client, settings, directory, db, mode):
    uri = directory.ldaps_uri if mode == "ldaps" else directory.ldap_uri
    configure(settings, directory, uri=uri, start_tls=mode == "starttls", ca=False)
    assert not login(client, "kim", PEOPLE_PASSWORDS["kim"])[0]  # an unknown CA is refused
    configure(settings, directory, uri=uri, start_tls=mode == "starttls", ca=True)
    assert login(client, "kim", PEOPLE_PASSWORDS["kim"])[0]
    assert roles("kim") == {"team_lead"}


def _settings_with(env: dict[str, str]) -> subprocess.CompletedProcess:
    code = (
        "import json, guardia.settings as s; print(json.dumps([s.AUTHENTICATION_BACKENDS, "
        "s.AUTH_LDAP_BIND_AS_AUTHENTICATING_USER, s.GUARDIA_LDAP_ROLE_GROUPS, "
        "type(s.AUTH_LDAP_GROUP_TYPE).__name__, s.AUTH_LDAP_USER_SEARCH.filterstr]))"
    )
    return subprocess.run(
        [sys.executable, "-c", code],
        cwd=settings_module_dir(),
        capture_output=True,
        text=True,
        env={**os.environ, **env},
        timeout=60,
    )


def settings_module_dir() -> str:
    return str(Path(__file__).resolve().parents[2])


@pytest.mark.slow  # five settings loads in subprocesses
def test_directory_settings_from_the_environment():
    ad = {
        "GUARDIA_LDAP_ENABLED": "true",
        "GUARDIA_LDAP_SERVER_URI": "ldaps://dc.corp.example",
        "GUARDIA_LDAP_BIND_DN": "%(user)s@corp.example",
        "GUARDIA_LDAP_USER_SEARCH_BASE": "dc=corp,dc=example",
        "GUARDIA_LDAP_USER_FILTER": "(sAMAccountName=%(user)s)",
        "GUARDIA_LDAP_GROUP_TYPE": "nested_activedirectory",
        "GUARDIA_LDAP_ROLE_GROUPS": "team_lead=CN=Leads,DC=corp,DC=example;pm=CN=PM,DC=corp,DC=example",
    }
    done = _settings_with(ad)
    assert done.returncode == 0, done.stderr[-2000:]
    backends, bind_as_user, mapping, group_type, user_filter = json.loads(done.stdout.strip().splitlines()[-1])
    assert backends.index("cmdb.ldap.DirectoryBackend") < backends.index("django.contrib.auth.backends.ModelBackend")
    assert bind_as_user and group_type == "NestedActiveDirectoryGroupType"
    assert user_filter == "(sAMAccountName=%(user)s)"
    assert mapping == {"team_lead": ["CN=Leads,DC=corp,DC=example"], "pm": ["CN=PM,DC=corp,DC=example"]}
    for env, named in [
        ({"GUARDIA_LDAP_ROLE_GROUPS": "teamlead=cn=x,dc=y"}, "GUARDIA_LDAP_ROLE_GROUPS: unknown roles"),
        ({"GUARDIA_LDAP_ROLE_GROUPS": "team_lead"}, "GUARDIA_LDAP_ROLE_GROUPS: expected role=group DN"),
        ({"GUARDIA_LDAP_GROUP_TYPE": "novell"}, "GUARDIA_LDAP_GROUP_TYPE: one of"),
        ({"GUARDIA_OTP_REQUIRED_ROLES": "admin,boss"}, "GUARDIA_OTP_REQUIRED_ROLES: unknown roles"),
    ]:
        refused = _settings_with({**ad, **env})
        assert refused.returncode != 0 and named in refused.stderr, named


def test_console_deactivation_hands_open_steps_on_too(client, db, django_capture_on_commit_callbacks):
    from cmdb import accounts

    world = governance_world()
    with django_capture_on_commit_callbacks(execute=False):
        task = file_task(world, "SERVICE_RESTART", title="재시작")
    step = task.steps.get(status=StepStatus.PENDING, activated_at__isnull=False)
    assert step.assigned_to == world.owner
    with django_capture_on_commit_callbacks(execute=False):
        assert accounts.set_active(world.admin, world.owner, False)
    step.refresh_from_db()
    assert step.assigned_to == world.deputy
    assert AuditEntry.objects.filter(action="approval.escalated", payload__escalated_from="owner").exists()
