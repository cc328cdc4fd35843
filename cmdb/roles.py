"""Roles are Django groups; this table is the single place that says what each may do.

Permissions are named as "app_label.codename" strings and looked up by codename, so cmdb
never imports governance or audit to grant their permissions (the app layering, pyproject.toml).
The groups are brought in line with this table after every migrate (apps.py), so a
permission removed here is removed from the group too.
"""

from __future__ import annotations

import logging

from django.db.models import Q

log = logging.getLogger(__name__)

CMDB_READ = [
    "cmdb.view_institution",
    "cmdb.view_system",
    "cmdb.view_server",
    "cmdb.view_systemowner",
    "cmdb.view_healthcriteria",
    "cmdb.view_commandrule",
    "cmdb.view_systemsource",
    "cmdb.view_envschema",
    "cmdb.view_securitypolicy",
]
# The command catalogue is a security control: only security officers change it (the
# admin role's CMDB_ALL leaves it out on purpose).
CATALOGUE_EDIT = ["cmdb.add_commandrule", "cmdb.change_commandrule", "cmdb.delete_commandrule"]
CMDB_MODELS = [
    "institution",
    "system",
    "server",
    "credential",
    "systemowner",
    "healthcriteria",
    "gateway",
    "systemsource",
    "envschema",
    "securitypolicy",
]
# The site gateways' console (heartbeat, queue depth, running tasks): the people who run and
# review the operation; admins also edit gateways (CMDB_ALL).
GATEWAY_READ = ["cmdb.view_gateway"]
CMDB_ALL = [f"cmdb.{action}_{model}" for model in CMDB_MODELS for action in ("add", "change", "delete", "view")] + [
    "cmdb.view_all_systems",
    "cmdb.change_any_systemowner",
]

# The messenger: who is who on the chat (identities), where notifications are posted
# (webhooks), and the outbox's backlog, read-only.
MESSENGER_ADMIN = [
    f"intake.{action}_{model}"
    for model in ("messengeridentity", "chatwebhook")
    for action in ("add", "change", "delete", "view")
] + ["intake.view_outboxmessage"]

# Permissions no model declares, created by ensure_roles on the user model.
PRIVILEGED_PERMISSION = "auth.manage_privileged_accounts"
# Who must give the second factor (TOTP) at login (cmdb.otp.required_for): the roles that can
# change production or silence the kill switch. Superusers always must.
SECOND_FACTOR_PERMISSION = "auth.require_second_factor"
EXTRA_PERMISSIONS = {
    PRIVILEGED_PERMISSION: "Can grant privileged roles and manage privileged accounts",
    SECOND_FACTOR_PERMISSION: "Must give a second factor (TOTP) at login",
}

ROLE_PERMISSIONS: dict[str, list[str]] = {
    # Field staff: file requests and follow them for their own sites.
    "site_manager": ["governance.submit_task", *CMDB_READ],
    # System owner (and deputy): decide approval steps on the systems they own.
    "team_lead": ["governance.submit_task", "governance.decide_step", *CMDB_READ],
    # Second approver for high-risk work, validates result packages, may pull the kill switch.
    "pm": [
        "governance.submit_task",
        "governance.decide_step",
        "governance.validate_result",
        "governance.use_kill_switch",
        "governance.view_opstask",
        *CMDB_READ,
        *GATEWAY_READ,
    ],
    # Third approver for infrastructure/security changes across every system.
    # Reads every task and the audit trail (security review), like the auditor.
    "security_officer": [
        "governance.decide_step",
        "governance.view_opstask",
        "cmdb.view_all_systems",
        *CMDB_READ,
        *GATEWAY_READ,
        "audit.view_auditentry",
        *CATALOGUE_EDIT,
        # Grants and revokes the privileged roles and looks after privileged accounts.
        "auth.view_user",
        PRIVILEGED_PERMISSION,
        "authtoken.add_token",
        "authtoken.delete_token",
        SECOND_FACTOR_PERMISSION,
    ],
    # Escalation target; edits TB_SYSTEM_OWNER rows of the systems they supervise (admin).
    "supervisor": [
        "governance.decide_step",
        "governance.use_kill_switch",
        *CMDB_READ,
        "cmdb.change_systemowner",
        SECOND_FACTOR_PERMISSION,
    ],
    # Read-only everywhere: the audit trail and the whole CMDB, but never a credential.
    "auditor": [
        "audit.view_auditentry",
        "governance.view_opstask",
        "cmdb.view_all_systems",
        *CMDB_READ,
        *GATEWAY_READ,
    ],
    # CMDB, credentials and ordinary accounts (cmdb.accounts says which).
    "admin": [
        *CMDB_ALL,
        "governance.use_kill_switch",
        # Releasing a global stop raised by an audit-chain break is an admin's acknowledgement.
        "governance.change_globalstop",
        "governance.view_opstask",
        "audit.view_auditentry",
        "auth.add_user",
        "auth.change_user",
        "auth.view_user",
        "auth.view_group",
        "authtoken.add_token",
        "authtoken.delete_token",
        *MESSENGER_ADMIN,
        SECOND_FACTOR_PERMISSION,
    ],
}
ROLES = list(ROLE_PERMISSIONS)

# Roles only a holder of PRIVILEGED_PERMISSION grants, revokes or manages the accounts of
# (cmdb.accounts): the people who approve security changes, who review everyone, and who
# run the console. An admin who could grant these could approve their own changes or
# silence their reviewers.
PRIVILEGED_ROLES = {"security_officer", "auditor", "admin"}

# Roles whose people work in the Django admin (the CMDB console) and so need is_staff.
STAFF_ROLES = {"supervisor", "admin", "security_officer"}  # the officer keeps the command catalogue


def role_permissions() -> dict[str, list[str]]:
    """The table as this site applies it. GUARDIA_OTP_REQUIRED_ROLES, when the operator sets
    it, names exactly the roles that hold SECOND_FACTOR_PERMISSION (in place of the table's)."""
    from django.conf import settings

    override = getattr(settings, "OTP_REQUIRED_ROLES", None)
    if not override:
        return ROLE_PERMISSIONS
    return {
        role: [p for p in perms if p != SECOND_FACTOR_PERMISSION]
        + ([SECOND_FACTOR_PERMISSION] if role in override else [])
        for role, perms in ROLE_PERMISSIONS.items()
    }


def ensure_roles(verbose: bool = False) -> dict[str, list[str]]:
    """Create the groups and set their permissions exactly to the table (role_permissions).
    Idempotent.

    Returns {role: [missing permission strings]} for permissions not (yet) in the database.
    """
    from django.contrib.auth import get_user_model
    from django.contrib.auth.models import Group, Permission
    from django.contrib.contenttypes.models import ContentType

    from .account_audit import perm_names, quiet, record_group_permissions

    user_type = ContentType.objects.get_for_model(get_user_model())
    for perm, name in EXTRA_PERMISSIONS.items():
        codename = perm.split(".", 1)[1]
        Permission.objects.get_or_create(content_type=user_type, codename=codename, defaults={"name": name})
    table = role_permissions()
    wanted = {perm for perms in table.values() for perm in perms}
    query = Q(pk__in=[])
    for perm in wanted:
        app_label, codename = perm.split(".", 1)
        query |= Q(content_type__app_label=app_label, codename=codename)
    found = {
        f"{p.content_type.app_label}.{p.codename}": p
        for p in Permission.objects.filter(query).select_related("content_type")
    }
    missing: dict[str, list[str]] = {}
    for role, perms in table.items():
        with quiet():
            group, created = Group.objects.get_or_create(name=role)
            before = set() if created else set(group.permissions.select_related("content_type"))
            group.permissions.set([found[p] for p in perms if p in found])
        if not created:
            # A group made just now gets the table as it is; what the audit must show is an
            # existing role's permissions moving (a new release, or drift repaired).
            after = set(group.permissions.select_related("content_type"))
            source = {"source": "role table"}
            record_group_permissions(None, role, perm_names(after - before), True, source)
            record_group_permissions(None, role, perm_names(before - after), False, source)
        absent = [p for p in perms if p not in found]
        if absent:
            missing[role] = absent
    if missing and verbose:
        log.warning("role permissions not in the database (app not migrated?): %s", missing)
    return missing
