from __future__ import annotations

from django.conf import settings


def guardia(request):
    """Values every page needs: the global stop banner, the unread inbox count, and whether
    the user owns a system (the owner settings page is about owned systems, not a role)."""
    context: dict[str, object] = {"guardia_production": settings.PRODUCTION}
    from cmdb.models import SystemOwner
    from governance.control import global_stop_state
    from governance.services import unread_count

    context["global_stop"] = global_stop_state()
    user = getattr(request, "user", None)
    if user is not None and user.is_authenticated:
        context["unread_notifications"] = unread_count(user)
        context["owns_systems"] = SystemOwner.objects.filter(owner=user).exists()
    return context
