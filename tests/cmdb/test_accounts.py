"""Separation of duties on accounts, tried through the console as the admin role would.

The admin manages ordinary accounts; the privileged roles (security officer, auditor,
admin) and the accounts holding them are the security officer's. Every account change
is an audit entry, whichever way it was made, and no token value is ever shown.
"""

from __future__ import annotations

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group, Permission
from rest_framework.authtoken.models import Token

from audit.models import AuditEntry
from audit.verify import verify_chain
from tests.factories import UserFactory

pytestmark = pytest.mark.django_db
User = get_user_model()
OLD_PASSWORD = "pw-Guardia-1"  # UserFactory's
NEW_PASSWORD = "Fresh-pass-2026-x"


@pytest.fixture(autouse=True)
def _audit_dirs(settings, tmp_path):
    settings.AUDIT_MIRROR_DIR = tmp_path / "mirror"
    settings.AUDIT_SIGNING_KEY_FILE = tmp_path / "keys" / "audit_ed25519.pem"


@pytest.fixture
def people(roles):
    return {
        "admin": UserFactory(username="adm", role="admin", is_staff=True),
        "secoff": UserFactory(username="so", role="security_officer", is_staff=True),
        "auditor": UserFactory(username="aud", role="auditor"),
        "lead": UserFactory(username="lead", role="team_lead", first_name="이팀장"),
    }


def as_user(client, user):
    client.force_login(user)
    return client


def roles_of(user) -> set[str]:
    return set(User.objects.get(pk=user.pk).groups.values_list("name", flat=True))


def change_form(user, **overrides) -> dict:
    data = {
        "username": user.username,
        "first_name": user.first_name,
        "last_name": user.last_name,
        "email": user.email,
        "is_active": "on" if user.is_active else "",
        "roles": sorted(roles_of(user)),
    }
    data.update(overrides)
    return {k: v for k, v in data.items() if v != ""}


def entries(action: str, target: str | None = None):
    query = AuditEntry.objects.filter(action=action)
    return query.filter(target=target) if target else query


# --- the three attacks ------------------------------------------------------------------------


def test_admin_cannot_make_itself_or_anyone_superuser(client, people):
    admin = people["admin"]
    as_user(client, admin)
    before = AuditEntry.objects.filter(action__startswith="auth.").exclude(action="auth.login").count()

    own = client.post(f"/admin/auth/user/{admin.pk}/change/", change_form(admin, is_superuser="on", is_staff="on"))
    assert own.status_code == 403  # nobody edits their own account here

    lead = people["lead"]
    crafted = client.post(f"/admin/auth/user/{lead.pk}/change/", change_form(lead, is_superuser="on"))
    assert crafted.status_code == 200 and "콘솔에서 바꿀 수 없는 항목입니다: is_superuser" in crafted.content.decode()

    created = client.post(
        "/admin/auth/user/add/",
        {"username": "mole", "password1": NEW_PASSWORD, "password2": NEW_PASSWORD, "is_superuser": "on"},
    )
    assert created.status_code == 200 and "is_superuser" in created.content.decode()

    assert not User.objects.filter(is_superuser=True).exists()
    assert not User.objects.filter(username="mole").exists()
    assert roles_of(admin) == {"admin"}
    assert AuditEntry.objects.filter(action__startswith="auth.").exclude(action="auth.login").count() == before


def test_admin_cannot_grant_security_officer_to_itself_or_anyone(client, people):
    admin, lead = people["admin"], people["lead"]
    so_group = Group.objects.get(name="security_officer")
    as_user(client, admin)

    own = client.post(f"/admin/auth/user/{admin.pk}/change/", change_form(admin, roles=["admin", "security_officer"]))
    assert own.status_code == 403

    for role in ("security_officer", "auditor", "admin"):
        response = client.post(f"/admin/auth/user/{lead.pk}/change/", change_form(lead, roles=["team_lead", role]))
        assert response.status_code == 200
        assert f"보안책임자만 부여하거나 회수할 수 있는 역할입니다: {role}" in response.content.decode()

    # The raw relation, bypassing the roles field, is refused too.
    raw = client.post(f"/admin/auth/user/{lead.pk}/change/", change_form(lead, groups=[str(so_group.pk)]))
    assert raw.status_code == 200 and "groups" in raw.content.decode()

    new = client.post(
        "/admin/auth/user/add/",
        {"username": "mole", "password1": NEW_PASSWORD, "password2": NEW_PASSWORD, "roles": ["security_officer"]},
    )
    assert new.status_code == 200 and "보안책임자만" in new.content.decode()

    assert roles_of(admin) == {"admin"} and roles_of(lead) == {"team_lead"}
    assert not User.objects.filter(username="mole").exists()
    assert not so_group.user_set.exclude(pk=people["secoff"].pk).exists()
    assert not entries("auth.role_grant").filter(actor="adm").exists()


def test_admin_cannot_reset_or_touch_privileged_accounts(client, people):
    as_user(client, people["admin"])
    for name in ("secoff", "auditor"):
        target = people[name]
        page = f"/admin/auth/user/{target.pk}/password/"
        assert client.get(page).status_code == 403
        refused = client.post(page, {"password1": NEW_PASSWORD, "password2": NEW_PASSWORD})
        assert refused.status_code == 403
        # Its account page is read-only: a deactivation posted anyway is refused.
        deactivate = client.post(f"/admin/auth/user/{target.pk}/change/", change_form(target, is_active=""))
        assert deactivate.status_code == 403
        # and the bulk action reports a refusal instead of acting.
        client.post("/admin/auth/user/", {"action": "deactivate_accounts", "_selected_action": [target.pk]})
        client.post("/admin/auth/user/", {"action": "revoke_tokens", "_selected_action": [target.pk]})
        stored = User.objects.get(pk=target.pk)
        assert stored.check_password(OLD_PASSWORD) and stored.is_active
    another_admin = UserFactory(username="adm2", role="admin", is_staff=True)
    assert client.get(f"/admin/auth/user/{another_admin.pk}/password/").status_code == 403
    assert not entries("auth.password_set").exists()
    assert not entries("auth.user_deactivate").exists()


def test_superuser_flag_and_single_permissions_are_not_on_the_form(client, people):
    as_user(client, people["admin"])
    page = client.get(f"/admin/auth/user/{people['lead'].pk}/change/").content.decode()
    assert 'name="is_superuser"' not in page and 'name="user_permissions"' not in page
    assert 'name="groups"' not in page and 'name="is_staff"' not in page


def test_roles_are_read_only_screens(client, people):
    admin = people["admin"]
    as_user(client, admin)
    group = Group.objects.get(name="admin")
    before = set(group.permissions.values_list("pk", flat=True))
    assert client.get(f"/admin/auth/group/{group.pk}/change/").status_code == 200
    extra = Permission.objects.get(codename="delete_auditentry")
    posted = client.post(f"/admin/auth/group/{group.pk}/change/", {"name": "admin", "permissions": [extra.pk]})
    assert posted.status_code == 403
    assert client.post("/admin/auth/group/add/", {"name": "root"}).status_code == 403
    assert set(group.permissions.values_list("pk", flat=True)) == before


# --- what the admin may do, and the security officer's grants -----------------------------------


def test_admin_manages_ordinary_accounts_and_each_change_is_audited(client, people):
    as_user(client, people["admin"])
    created = client.post(
        "/admin/auth/user/add/",
        {"username": "field1", "first_name": "김현장", "password1": NEW_PASSWORD, "password2": NEW_PASSWORD,
         "roles": ["site_manager"]},
    )  # fmt: skip
    assert created.status_code == 302
    user = User.objects.get(username="field1")
    assert roles_of(user) == {"site_manager"} and not user.is_staff and not user.is_superuser
    assert user.check_password(NEW_PASSWORD)

    moved = client.post(f"/admin/auth/user/{user.pk}/change/", change_form(user, roles=["supervisor"]))
    assert moved.status_code == 302
    user.refresh_from_db()
    assert roles_of(user) == {"supervisor"} and user.is_staff  # the staff flag follows the role

    other = "Other-pass-77x"
    reset = client.post(f"/admin/auth/user/{user.pk}/password/", {"password1": other, "password2": other})
    assert reset.status_code == 302
    client.post("/admin/auth/user/", {"action": "deactivate_accounts", "_selected_action": [user.pk]})
    user.refresh_from_db()
    assert user.check_password("Other-pass-77x") and not user.is_active

    for action, payload in [
        ("auth.user_create", {"active": True, "superuser": False}),
        ("auth.role_grant", {"role": "site_manager"}),
        ("auth.role_grant", {"role": "supervisor"}),
        ("auth.role_revoke", {"role": "site_manager"}),
        ("auth.password_set", {"by": "other"}),
        ("auth.user_deactivate", {}),
    ]:
        found = [e for e in entries(action, "field1").filter(actor="adm") if payload.items() <= e.payload.items()]
        assert found, (action, payload)
    assert "is_staff" in entries("auth.user_change", "field1").get().payload["changed"]
    for entry in AuditEntry.objects.filter(target="field1"):
        assert NEW_PASSWORD not in entry.canonical and "Other-pass-77x" not in entry.canonical
    assert verify_chain().ok


def test_security_officer_grants_privileged_roles_but_not_to_itself(client, people):
    secoff, lead = people["secoff"], people["lead"]
    as_user(client, secoff)
    granted = client.post(f"/admin/auth/user/{lead.pk}/change/", {"roles": ["team_lead", "security_officer"]})
    assert granted.status_code == 302
    lead.refresh_from_db()
    assert roles_of(lead) == {"team_lead", "security_officer"} and lead.is_staff
    entry = entries("auth.role_grant", "lead").get(actor="so")
    assert entry.payload["role"] == "security_officer" and entry.payload["source"] == "console"

    # The officer manages privileged accounts (now including lead's) ...
    reset = client.post(f"/admin/auth/user/{people['auditor'].pk}/password/",
                        {"password1": NEW_PASSWORD, "password2": NEW_PASSWORD})  # fmt: skip
    assert reset.status_code == 302 and User.objects.get(pk=people["auditor"].pk).check_password(NEW_PASSWORD)
    # ... but never its own roles, and not the ordinary roles of an ordinary account.
    own = client.post(f"/admin/auth/user/{secoff.pk}/change/", {"roles": ["security_officer", "admin"]})
    assert own.status_code == 403 and roles_of(secoff) == {"security_officer"}
    plain = UserFactory(username="plain", role="site_manager")
    refused = client.post(f"/admin/auth/user/{plain.pk}/change/", {"roles": ["site_manager", "pm"]})
    assert refused.status_code == 200 and roles_of(plain) == {"site_manager"}

    # Once privileged, lead is out of the admin's reach.
    as_user(client, people["admin"])
    assert client.get(f"/admin/auth/user/{lead.pk}/password/").status_code == 403
    assert verify_chain().ok


# --- tokens -------------------------------------------------------------------------------------


def test_tokens_are_issued_and_revoked_but_never_shown(client, people):
    lead = people["lead"]
    as_user(client, people["admin"])
    client.post("/admin/auth/user/", {"action": "issue_tokens", "_selected_action": [lead.pk]})
    token = Token.objects.get(user=lead)
    pages = [
        client.get("/admin/auth/user/").content.decode(),
        client.get(f"/admin/auth/user/{lead.pk}/change/").content.decode(),
        client.get("/admin/audit/auditentry/").content.decode(),
        client.get("/admin/").content.decode(),
    ]
    assert "발급됨" in pages[1]
    assert all(token.key not in page for page in pages)
    assert client.get("/admin/authtoken/tokenproxy/").status_code == 404  # no token screen at all
    client.post("/admin/auth/user/", {"action": "revoke_tokens", "_selected_action": [lead.pk]})
    assert not Token.objects.filter(user=lead).exists()
    assert entries("auth.token_create", "lead").get(actor="adm")
    assert entries("auth.token_delete", "lead").get(actor="adm")
    assert not AuditEntry.objects.filter(canonical__contains=token.key).exists()
    assert verify_chain().ok


# --- changes made outside the console -----------------------------------------------------------


def test_changes_made_outside_the_console_are_audited(people):
    from django.contrib.auth.management.commands import changepassword
    from django.core.management import call_command

    lead = people["lead"]
    auditor_group = Group.objects.get(name="auditor")
    lead.groups.add(auditor_group)  # a shell session
    auditor_group.user_set.remove(lead)
    lead.user_permissions.add(Permission.objects.get(codename="delete_auditentry"))
    auditor_group.permissions.add(Permission.objects.get(codename="change_credential"))
    token = Token.objects.create(user=lead)
    key = token.key
    token.delete()
    lead.is_superuser = True
    lead.save()

    original = changepassword.Command._get_pass
    changepassword.Command._get_pass = lambda self, prompt="": NEW_PASSWORD  # the operator typing it
    try:
        call_command("changepassword", "lead", stdout=__import__("io").StringIO())
    finally:
        changepassword.Command._get_pass = original
    call_command("createsuperuser", interactive=False, username="breakglass", email="bg@guardia.local", verbosity=0)

    expected = [
        ("auth.role_grant", "lead", {"role": "auditor"}),
        ("auth.role_revoke", "lead", {"role": "auditor"}),
        ("auth.user_permission_grant", "lead", {"permissions": ["audit.delete_auditentry"]}),
        ("auth.group_permission_grant", "auditor", {"permissions": ["cmdb.change_credential"]}),
        ("auth.token_create", "lead", {}),
        ("auth.token_delete", "lead", {}),
        ("auth.superuser_grant", "lead", {}),
        ("auth.password_set", "lead", {"by": "other"}),
        ("auth.user_create", "breakglass", {"superuser": True}),
    ]
    for action, target, payload in expected:
        found = entries(action, target).filter(actor="system")
        assert any(payload.items() <= e.payload.items() and e.payload.get("os_user") for e in found), action
    assert not AuditEntry.objects.filter(canonical__contains=key).exists()
    assert verify_chain().ok


def test_own_password_change_is_recorded_as_the_person(client, people):
    secoff = people["secoff"]
    as_user(client, secoff)
    response = client.post(
        "/admin/password_change/",
        {"old_password": OLD_PASSWORD, "new_password1": NEW_PASSWORD, "new_password2": NEW_PASSWORD},
    )
    assert response.status_code == 302
    entry = entries("auth.password_set", "so").get()
    assert entry.actor == "so" and entry.payload["by"] == "self"
    assert NEW_PASSWORD not in entry.canonical


def test_seed_demo_role_grants_are_audited(settings, tmp_path, roles):
    from django.core.management import call_command

    settings.TESTBED_DIR = tmp_path / "no-testbed"
    call_command("seed_demo", stdout=__import__("io").StringIO())
    grant = entries("auth.role_grant", "secoff").get()
    assert grant.actor == "system" and grant.payload["role"] == "security_officer"
    assert not User.objects.filter(is_superuser=True).exists()
    assert verify_chain().ok


def test_role_table_repairs_are_audited(roles):
    from cmdb.roles import ensure_roles

    Group.objects.get(name="pm").permissions.clear()  # drift, made in a shell
    ensure_roles()
    revoked = entries("auth.group_permission_revoke", "pm").get()
    granted = entries("auth.group_permission_grant", "pm").get()
    assert revoked.actor == granted.actor == "system" and granted.payload["source"] == "role table"
    assert granted.payload["permissions"] == revoked.payload["permissions"]
    assert "governance.validate_result" in granted.payload["permissions"]


def test_an_account_with_hand_granted_permissions_is_the_security_officers(client, people):
    lead = people["lead"]
    lead.user_permissions.add(Permission.objects.get(codename="view_credential"))  # from a shell
    as_user(client, people["admin"])
    assert client.get(f"/admin/auth/user/{lead.pk}/password/").status_code == 403
    as_user(client, people["secoff"])
    assert client.get(f"/admin/auth/user/{lead.pk}/password/").status_code == 200


@pytest.mark.parametrize(
    ("viewer", "editable"),
    [("admin", {"lead"}), ("secoff", {"adm", "aud", "lead"})],  # the officer: only roles on "lead"
)
def test_each_account_page_offers_only_what_the_viewer_may_change(client, people, viewer, editable):
    as_user(client, people[viewer])
    for user in people.values():
        page = client.get(f"/admin/auth/user/{user.pk}/change/")
        assert page.status_code == 200
        assert ('name="roles"' in page.content.decode()) == (user.username in editable), user.username
    own = client.get(f"/admin/auth/user/{people[viewer].pk}/change/").content.decode()
    assert 'name="roles"' not in own and 'name="is_active"' not in own
