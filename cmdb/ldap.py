"""Directory login (LDAP / Active Directory) through django-auth-ldap.

The directory is the authority for the accounts it holds: their password (a bind), their
roles (directory groups mapped to GUARDiA roles by GUARDIA_LDAP_ROLE_GROUPS, applied at
every login, so a person taken out of a group loses the role the next time they log in)
and whether they may act at all (GUARDIA_LDAP_DISABLED_FILTER, e.g. AD's
userAccountControl ACCOUNTDISABLE bit). A disabled account is refused, deactivated here,
and the approval steps waiting on it go to the next person on their ladder, as for an
away owner (settings.ACCOUNT_DISABLED_HOOKS, so cmdb never imports governance).

Local accounts stay for break-glass administrators: a directory login never touches an
account that was not created by the directory (DirectoryAccount), whatever its name.
Every change a login makes is written to the audit chain with the source "directory".
"""

from __future__ import annotations

import logging
from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.db import transaction
from django.utils import timezone
from django.utils.module_loading import import_string
from django_auth_ldap.backend import LDAPBackend  # type: ignore[import-untyped]

from . import account_audit
from .models import DirectoryAccount
from .roles import ROLES, STAFF_ROLES

log = logging.getLogger(__name__)
SOURCE = {"source": "directory"}


def role_groups() -> dict[str, list[str]]:
    """GUARDiA role -> directory group DNs (lower-cased, as DNs compare)."""
    mapping: dict[str, list[str]] = getattr(settings, "GUARDIA_LDAP_ROLE_GROUPS", {}) or {}
    return {role: [dn.lower() for dn in dns] for role, dns in mapping.items()}


def roles_from_groups(group_dns: set[str]) -> set[str]:
    groups = {dn.lower() for dn in group_dns}
    return {role for role, dns in role_groups().items() if role in ROLES and groups & set(dns)}


def is_disabled(connection, dn: str) -> bool:
    """Does the directory mark this entry as disabled (GUARDIA_LDAP_DISABLED_FILTER)?"""
    import ldap  # type: ignore[import-untyped]

    flt = getattr(settings, "GUARDIA_LDAP_DISABLED_FILTER", "")
    if not flt:
        return False
    return bool(connection.search_s(dn, ldap.SCOPE_BASE, flt, ["1.1"]))


def deactivate(user, reason: str) -> None:
    """The directory says this account may no longer act: deactivate it and hand its open
    approval steps on."""
    if not user.is_active:
        return
    with transaction.atomic(), account_audit.quiet():
        type(user).objects.filter(pk=user.pk).update(is_active=False)
        user.is_active = False
        account_audit.record(None, "auth.user_deactivate", user.get_username(), SOURCE, reason=reason)
        for path in getattr(settings, "ACCOUNT_DISABLED_HOOKS", []):
            import_string(path)(user)


def apply_directory_roles(user, roles: set[str]) -> tuple[set[str], set[str]]:
    """Bring the user's roles in line with the directory; (granted, revoked)."""
    current = set(user.groups.filter(name__in=ROLES).values_list("name", flat=True))
    granted, revoked = roles - current, current - roles
    groups = {g.name: g for g in Group.objects.filter(name__in=granted | revoked)}
    user.groups.add(*(groups[r] for r in granted if r in groups))
    user.groups.remove(*(groups[r] for r in revoked if r in groups))
    staff = bool(roles & STAFF_ROLES)
    if staff != user.is_staff:
        account_audit.record(
            None, "auth.user_change", user.get_username(), SOURCE, changed={"is_staff": [user.is_staff, staff]}
        )
        user.is_staff = staff
        user.save(update_fields=["is_staff"])
    account_audit.record_role_change(None, user.get_username(), granted, True, SOURCE)
    account_audit.record_role_change(None, user.get_username(), revoked, False, SOURCE)
    return granted, revoked


class DirectoryBackend(LDAPBackend):
    """django-auth-ldap with GUARDiA's rules: local accounts untouched, disabled accounts
    refused and deactivated, roles from directory groups, everything audited."""

    def authenticate(self, request, username=None, password=None, **kwargs):
        if not username or not password:
            return None
        User = get_user_model()
        local = User.objects.filter(username__iexact=username.strip()).first()
        if local is not None and not DirectoryAccount.objects.filter(user=local).exists():
            return None  # a local account: only its local password opens it
        return super().authenticate(request, username=username, password=password, **kwargs)

    def get_or_build_user(self, username, ldap_user):
        # Everything the directory is asked happens here, before any database write.
        if is_disabled(ldap_user.connection, ldap_user.dn):
            linked = DirectoryAccount.objects.filter(dn__iexact=ldap_user.dn).select_related("user").first()
            if linked is not None:
                deactivate(linked.user, "disabled in the directory")
            raise ldap_user.AuthenticationFailed("account disabled in the directory")
        ldap_user._guardia_roles = roles_from_groups(set(ldap_user.group_dns))
        user, built = super().get_or_build_user(username, ldap_user)
        ldap_user._guardia_before = None if built else {f: getattr(user, f) for f in account_audit.WATCHED_FIELDS}
        if not built and not user.is_active:
            # Enabled in the directory again: the account comes back with its roles.
            user.is_active = True
        return user, built

    def authenticate_ldap_user(self, ldap_user, password):
        with account_audit.quiet():
            user = ldap_user.authenticate(password)
            if user is None:
                return None
            with transaction.atomic():
                before: dict[str, Any] | None = getattr(ldap_user, "_guardia_before", None)
                user.is_superuser = False
                link, created = DirectoryAccount.objects.get_or_create(user=user, defaults={"dn": ldap_user.dn})
                if not created and link.dn != ldap_user.dn:
                    link.dn = ldap_user.dn
                link.synced_at = timezone.now()
                link.save()
                account_audit.record_user_saved(None, user, before if not created else None, False, SOURCE)
                apply_directory_roles(user, getattr(ldap_user, "_guardia_roles", set()))
        return user


def sync_directory_accounts() -> dict[str, int]:
    """Deactivate every linked account the directory removed or disabled, without waiting
    for its next login (an approver who never logs in again must not keep approving by
    messenger or API token). Needs a service bind (GUARDIA_LDAP_BIND_DN); a directory that
    cannot be reached changes nothing."""
    import ldap

    backend = DirectoryBackend()
    conf = backend.settings
    conn = ldap.initialize(conf.SERVER_URI, bytes_mode=False)
    for opt, value in conf.CONNECTION_OPTIONS.items():
        conn.set_option(opt, value)
    if conf.START_TLS:
        conn.start_tls_s()
    conn.simple_bind_s(conf.BIND_DN, conf.BIND_PASSWORD)
    counts = {"checked": 0, "deactivated": 0}
    try:
        for link in DirectoryAccount.objects.filter(user__is_active=True).select_related("user"):
            counts["checked"] += 1
            try:
                disabled = is_disabled(conn, link.dn)
                conn.search_s(link.dn, ldap.SCOPE_BASE, "(objectClass=*)", ["1.1"])
                reason = "disabled in the directory" if disabled else ""
            except ldap.NO_SUCH_OBJECT:
                reason = "removed from the directory"
            if reason:
                deactivate(link.user, reason)
                counts["deactivated"] += 1
            else:
                DirectoryAccount.objects.filter(pk=link.pk).update(synced_at=timezone.now())
    finally:
        conn.unbind_s()
    return counts
