"""Who may see the audit console, exports and verification: whoever holds the audit view
permission (auditors, security officers and admins by cmdb/roles.py; superusers)."""

from __future__ import annotations

from functools import wraps

from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from rest_framework.permissions import BasePermission

AUDIT_PERMISSION = "audit.view_auditentry"


def is_auditor(user) -> bool:
    # Decided by permission, never by group name: the console menu shows the audit link on
    # the same permission, so a link is never offered that then answers 403.
    if not getattr(user, "is_authenticated", False):
        return False
    return user.has_perm(AUDIT_PERMISSION)


def auditor_required(view):
    @login_required
    @wraps(view)
    def wrapped(request, *args, **kwargs):
        if not is_auditor(request.user):
            raise PermissionDenied("audit pages need the audit view permission")
        return view(request, *args, **kwargs)

    return wrapped


class IsAuditor(BasePermission):
    message = "audit endpoints need the audit view permission"

    def has_permission(self, request, view) -> bool:
        return is_auditor(request.user)
