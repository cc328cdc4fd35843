from __future__ import annotations

from django.contrib.auth.models import Group

from audit.models import AuditEntry
from cmdb.roles import ROLE_PERMISSIONS, ROLES, SECOND_FACTOR_PERMISSION, ensure_roles
from tests.factories import UserFactory


def perms_of(group: Group) -> set[str]:
    return {f"{p.content_type.app_label}.{p.codename}" for p in group.permissions.select_related("content_type")}


def test_every_role_exists_with_exactly_its_permissions(roles):
    assert set(ROLES) <= set(roles)
    for role, wanted in ROLE_PERMISSIONS.items():
        assert perms_of(roles[role]) == set(wanted), role


def test_governance_and_audit_permissions_are_granted_by_name(roles):
    assert "governance.decide_step" in perms_of(roles["team_lead"])
    assert {"governance.validate_result", "governance.use_kill_switch"} <= perms_of(roles["pm"])
    assert perms_of(roles["auditor"]) >= {"audit.view_auditentry"}
    assert not any(p.split(".")[1].startswith(("add_", "change_", "delete_")) for p in perms_of(roles["auditor"]))
    assert "cmdb.change_systemowner" in perms_of(roles["supervisor"])
    assert "cmdb.view_credential" not in perms_of(roles["supervisor"])
    assert {"cmdb.change_credential", "cmdb.view_credential"} <= perms_of(roles["admin"])


def test_ensure_roles_is_idempotent_and_repairs_drift(roles):
    team_lead = roles["team_lead"]
    team_lead.permissions.clear()
    assert ensure_roles() == {}
    assert ensure_roles() == {}
    assert Group.objects.filter(name__in=ROLES).count() == len(ROLES)
    assert perms_of(Group.objects.get(name="team_lead")) == set(ROLE_PERMISSIONS["team_lead"])


def test_user_in_group_has_the_permission(roles):
    user = UserFactory(role="team_lead")
    assert user.has_perm("governance.decide_step")
    assert not user.has_perm("cmdb.change_server")


def test_the_second_factor_is_a_permission_of_the_roles_that_can_change_production(roles):
    holders = {role for role in ROLES if SECOND_FACTOR_PERMISSION in perms_of(roles[role])}
    assert holders == {"admin", "security_officer", "supervisor"}
    assert UserFactory(role="supervisor").has_perm(SECOND_FACTOR_PERMISSION)
    assert not UserFactory(role="team_lead").has_perm(SECOND_FACTOR_PERMISSION)


def test_the_operator_setting_names_the_roles_that_hold_the_second_factor_permission(roles, settings):
    settings.OTP_REQUIRED_ROLES = ["admin", "pm"]
    assert ensure_roles() == {}
    holders = {g.name for g in Group.objects.filter(permissions__codename="require_second_factor")}
    assert holders == {"admin", "pm"}
    # Nothing else moved, and the change is in the audit chain like any role-table repair.
    for role in ("team_lead", "auditor", "admin"):
        assert perms_of(Group.objects.get(name=role)) == set(ROLE_PERMISSIONS[role]) | (
            {SECOND_FACTOR_PERMISSION} if role == "admin" else set()
        )
    granted = AuditEntry.objects.filter(action="auth.group_permission_grant", target="pm").latest("seq")
    revoked = AuditEntry.objects.filter(action="auth.group_permission_revoke", target="supervisor").latest("seq")
    assert granted.payload["permissions"] == [SECOND_FACTOR_PERMISSION]
    assert revoked.payload["permissions"] == [SECOND_FACTOR_PERMISSION]
