"""Accounts with separation of duties: who may change which account, and the audited
operations that change them. The console (cmdb.admin_accounts) calls these and holds no
rule of its own.

The rules, as a public-sector deployment expects them:

* Two kinds of account. A *privileged* account is a superuser, holds a privileged role
  (cmdb.roles.PRIVILEGED_ROLES: security officer, auditor, admin), or has permissions
  granted to it directly (only possible from the shell, so outside the role model). Every
  other account is ordinary. The acting user is always judged by permissions; the role
  table only classifies the account being changed.
* The admin role (`auth.change_user`) manages ordinary accounts: creates them, edits
  names and e-mail, activates and deactivates them, sets passwords, issues and revokes
  API tokens, and grants or revokes the ordinary roles.
* Privileged roles are granted and revoked only with `auth.manage_privileged_accounts`
  (the security officer). The same permission, and only it, manages privileged accounts,
  so an admin can neither mint another admin nor take over the security officer's or an
  auditor's account by resetting its password, and the people who review the admins
  are out of the admins' reach.
* Nobody changes their own account here: not their roles, not their active flag, not
  their password (that is the password-change page, which asks for the old one).
* The superuser flag is never set from the console (a superuser is a break-glass
  account made with `createsuperuser` at the server, which the audit records). The staff
  flag follows the roles (cmdb.roles.STAFF_ROLES); direct per-user permissions are not
  granted at all: what a person may do is their roles.
* API tokens are never shown: only whether one exists and when it was made.

Every operation writes its audit entries in the same transaction as the change.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from django.conf import settings
from django.contrib.auth import get_user_model, password_validation
from django.contrib.auth.models import Group
from django.core.exceptions import PermissionDenied, ValidationError
from django.db import transaction
from django.utils.module_loading import import_string
from django.utils.translation import gettext as _
from rest_framework.authtoken.models import Token

from . import account_audit
from .roles import PRIVILEGED_PERMISSION, PRIVILEGED_ROLES, ROLES, STAFF_ROLES

PROFILE_FIELDS = ("username", "first_name", "last_name", "email", "is_active")
ORDINARY_ROLES = [role for role in ROLES if role not in PRIVILEGED_ROLES]


class AccountRefused(PermissionDenied):
    """A change the acting user may not make. `field` names the form field it concerns."""

    def __init__(self, message: str, field: str | None = None):
        super().__init__(message)
        self.field = field
        self.message = message


# --- the rules ---------------------------------------------------------------------------------


def roles_of(user) -> set[str]:
    if user is None or user.pk is None:
        return set()
    return set(user.groups.filter(name__in=ROLES).values_list("name", flat=True))


def is_privileged(user) -> bool:
    return bool(user.is_superuser or roles_of(user) & PRIVILEGED_ROLES or user.user_permissions.exists())


def _acting(actor) -> bool:
    return bool(actor is not None and actor.is_authenticated and actor.is_active)


def _same(actor, target) -> bool:
    return target.pk is not None and actor.pk == target.pk


def may_manage(actor, target) -> bool:
    """May actor edit target's profile, activation, password and token, and its ordinary roles?"""
    if not _acting(actor) or _same(actor, target):
        return False
    if target.pk is not None and is_privileged(target):
        return actor.has_perm(PRIVILEGED_PERMISSION)
    return actor.has_perm("auth.change_user") if target.pk else actor.has_perm("auth.add_user")


def may_grant(actor, target, role: str) -> bool:
    """May actor grant or revoke role on target?"""
    if role not in ROLES or not _acting(actor) or _same(actor, target):
        return False
    if role in PRIVILEGED_ROLES:
        return actor.has_perm(PRIVILEGED_PERMISSION)
    return may_manage(actor, target)


def may_open(actor, target) -> bool:
    """May actor change anything at all on target (roles included)?"""
    return may_manage(actor, target) or (
        _acting(actor) and not _same(actor, target) and actor.has_perm(PRIVILEGED_PERMISSION)
    )


def grantable_roles(actor, target) -> list[str]:
    return [role for role in ROLES if may_grant(actor, target, role)]


def check_role_change(actor, target, wanted: Iterable[str]) -> tuple[set[str], set[str]]:
    """(granted, revoked) for moving target to the wanted roles; refuses any role actor
    may not change on target, naming it."""
    wanted = set(wanted)
    unknown = wanted - set(ROLES)
    if unknown:
        raise AccountRefused(_("알 수 없는 역할입니다: %(roles)s") % {"roles": ", ".join(sorted(unknown))}, "roles")
    current = roles_of(target)
    granted, revoked = wanted - current, current - wanted
    if (granted or revoked) and _same(actor, target):
        raise AccountRefused(_("자신의 역할은 바꿀 수 없습니다."), "roles")
    refused = sorted(role for role in granted | revoked if not may_grant(actor, target, role))
    if refused:
        privileged = [role for role in refused if role in PRIVILEGED_ROLES]
        message = (
            _("보안책임자만 부여하거나 회수할 수 있는 역할입니다: %(roles)s")
            if privileged
            else _("이 계정의 역할을 바꿀 권한이 없습니다: %(roles)s")
        )
        raise AccountRefused(message % {"roles": ", ".join(refused)}, "roles")
    return granted, revoked


def _require_manage(actor, target) -> None:
    if _same(actor, target):
        raise AccountRefused(_("자신의 계정은 이 화면에서 바꿀 수 없습니다."))
    if not may_manage(actor, target):
        raise AccountRefused(_("이 계정을 관리할 권한이 없습니다. 특권 계정은 보안책임자가 관리합니다."))


# --- operations ----------------------------------------------------------------------------------


def _apply_roles(actor, user, granted: set[str], revoked: set[str]) -> None:
    if not (granted or revoked):
        return
    groups = {g.name: g for g in Group.objects.filter(name__in=granted | revoked)}
    user.groups.add(*(groups[r] for r in granted))
    user.groups.remove(*(groups[r] for r in revoked))
    staff = bool(roles_of(user) & STAFF_ROLES) or user.is_superuser
    if staff != user.is_staff:
        old = user.is_staff
        user.is_staff = staff
        user.save(update_fields=["is_staff"])
        account_audit.record(actor, "auth.user_change", user.get_username(), changed={"is_staff": [old, staff]})
    account_audit.record_role_change(actor, user.get_username(), granted, True)
    account_audit.record_role_change(actor, user.get_username(), revoked, False)


def create_account(actor, user, password: str, roles: Iterable[str] = ()):
    """Save a new account (an unsaved User with its profile fields set) with a password."""
    if not (_acting(actor) and actor.has_perm("auth.add_user")):
        raise AccountRefused(_("계정을 만들 권한이 없습니다."))
    if user.pk is not None:
        raise ValueError("create_account takes an unsaved user")
    granted, _revoked = check_role_change(actor, user, roles)
    password_validation.validate_password(password, user)
    with transaction.atomic(), account_audit.quiet():
        user.is_superuser = False
        user.is_staff = False
        user.set_password(password)
        user.full_clean(exclude=["password"])
        user.save()
        account_audit.record_user_saved(actor, user, None, password_changed=False)
        _apply_roles(actor, user, granted, set())
    return user


def update_account(actor, user, changed_fields: Iterable[str], roles: Iterable[str] | None = None):
    """Save profile changes (PROFILE_FIELDS only) and move the user to `roles` if given.

    The rules are decided on the stored row (locked), not on the edited instance, so a
    form cannot make an account look ordinary to get past them.
    """
    fields = [f for f in changed_fields if f != "roles"]
    stray = set(fields) - set(PROFILE_FIELDS)
    if stray:
        raise AccountRefused(_("콘솔에서 바꿀 수 없는 항목입니다: %(f)s") % {"f": ", ".join(sorted(stray))})
    User = get_user_model()
    with transaction.atomic(), account_audit.quiet():
        stored = User.objects.select_for_update().get(pk=user.pk)
        before = {f: getattr(stored, f) for f in account_audit.WATCHED_FIELDS}
        fields = [f for f in fields if getattr(stored, f) != getattr(user, f)]
        if fields:
            _require_manage(actor, stored)
        granted, revoked = check_role_change(actor, stored, roles) if roles is not None else (set(), set())
        if fields:
            for field in fields:
                setattr(stored, field, getattr(user, field))
            stored.full_clean(exclude=["password"])
            stored.save(update_fields=fields)
            account_audit.record_user_saved(actor, stored, before, password_changed=False)
            if before["is_active"] and not stored.is_active:
                # Someone who may no longer act: the approval steps waiting on them move on now.
                for path in getattr(settings, "ACCOUNT_DISABLED_HOOKS", []):
                    import_string(path)(stored)
        _apply_roles(actor, stored, granted, revoked)
    return stored


def set_active(actor, user, active: bool) -> bool:
    """Activate or deactivate; returns whether anything changed."""
    if user.is_active == active:
        return False
    user.is_active = active
    update_account(actor, user, ["is_active"])
    return True


def set_password(actor, user, raw_password: str) -> None:
    """Set another person's password (never one's own here). The value is never recorded."""
    User = get_user_model()
    with transaction.atomic(), account_audit.quiet():
        stored = User.objects.select_for_update().get(pk=user.pk)
        _require_manage(actor, stored)
        password_validation.validate_password(raw_password, stored)
        stored.set_password(raw_password)
        stored.save(update_fields=["password"])
        account_audit.record(actor, "auth.password_set", stored.get_username(), by="other")


@dataclass(frozen=True)
class TokenState:
    """What the console may know of a token: that it exists and when it was made."""

    exists: bool
    created: object = None


def token_state(user) -> TokenState:
    created = Token.objects.filter(user=user).values_list("created", flat=True).first()
    return TokenState(created is not None, created)


def issue_token(actor, user) -> bool:
    """Create an API token for user if there is none; the key is never returned or shown.
    Returns whether one was created."""
    if not actor.has_perm("authtoken.add_token"):
        raise AccountRefused(_("API 토큰을 발급할 권한이 없습니다."))
    with transaction.atomic(), account_audit.quiet():
        _require_manage(actor, user)
        if Token.objects.filter(user=user).exists():
            return False
        token = Token.objects.create(user=user)
        account_audit.record(
            actor, "auth.token_create", user.get_username(), created=account_audit.token_created_text(token)
        )
    return True


def revoke_token(actor, user) -> bool:
    """Delete user's API token; returns whether there was one."""
    if not actor.has_perm("authtoken.delete_token"):
        raise AccountRefused(_("API 토큰을 폐기할 권한이 없습니다."))
    with transaction.atomic(), account_audit.quiet():
        _require_manage(actor, user)
        token = Token.objects.filter(user=user).first()
        if token is None:
            return False
        created = account_audit.token_created_text(token)
        token.delete()
        account_audit.record(actor, "auth.token_delete", user.get_username(), created=created)
    return True


def refusal_message(exc: Exception) -> str:
    if isinstance(exc, AccountRefused):
        return exc.message
    if isinstance(exc, ValidationError):
        return " ".join(exc.messages)
    return str(exc)
