"""Who may see the audit console, exports and verification: auditors, admins, superusers."""

from __future__ import annotations

from functools import wraps

from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from rest_framework.permissions import BasePermission

AUDIT_GROUPS = ("auditor", "admin")


def is_auditor(user) -> bool:
    if not getattr(user, "is_authenticated", False):
        return False
    return user.is_superuser or user.groups.filter(name__in=AUDIT_GROUPS).exists()


def auditor_required(view):
    @login_required
    @wraps(view)
    def wrapped(request, *args, **kwargs):
        if not is_auditor(request.user):
            raise PermissionDenied("audit pages are for auditors and admins")
        return view(request, *args, **kwargs)

    return wrapped


class IsAuditor(BasePermission):
    message = "audit endpoints are for auditors and admins"

    def has_permission(self, request, view) -> bool:
        return is_auditor(request.user)
