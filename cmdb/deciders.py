"""Who may be named owner or deputy of a system: people who can decide its approval steps.

A name in TB_SYSTEM_OWNER routes approvals to that person, so the pickers (the owner's
console settings and the supervisor's admin form) offer only users who hold the decide
permission and whose institution scope covers the system, and both forms refuse anyone
else on save. The permission is named as a string, so cmdb needs no governance import.
"""

from __future__ import annotations

from django.contrib.auth import get_user_model
from django.contrib.auth.models import Permission
from django.db.models import Q, QuerySet

from .models import System

DECIDE_PERMISSION = ("governance", "decide_step")
SEE_ALL_PERMISSION = ("cmdb", "view_all_systems")


def _holders(app_label: str, codename: str) -> Q:
    """Users holding a permission through a group, directly, or as superusers."""
    perm = Permission.objects.filter(content_type__app_label=app_label, codename=codename)
    return Q(is_superuser=True) | Q(groups__permissions__in=perm) | Q(user_permissions__in=perm)


def deciders_for(system: System | None) -> QuerySet:
    """Active users who may decide approval steps of `system`, ordered by username.

    Institution scope: the user sees every system, or is already tied to the system's
    institution (owns, deputises or supervises one of its systems, or is its PM).
    Site managers of the institution are in scope but hold no decide permission.
    Without a system (an admin form before one is chosen) scope is not yet known, so
    only the permission applies; the form's clean() checks the scope once it is.
    """
    users = get_user_model().objects.filter(is_active=True).filter(_holders(*DECIDE_PERMISSION))
    if system is not None:
        institution = system.institution_id
        users = users.filter(
            _holders(*SEE_ALL_PERMISSION)
            | Q(owned_systems__system__institution=institution)
            | Q(deputy_systems__system__institution=institution)
            | Q(supervised_systems__system__institution=institution)
            | Q(pm_institutions=institution)
        )
    # The joins above repeat a user once per matching row; a subquery keeps the picker flat.
    return get_user_model().objects.filter(pk__in=users.values("pk")).order_by("username")


def may_decide_for(user, system: System) -> bool:
    return user is not None and deciders_for(system).filter(pk=user.pk).exists()
