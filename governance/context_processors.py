from __future__ import annotations

from django.conf import settings


def guardia(request):
    """Values every page needs: the global stop banner and the unread inbox count."""
    context = {"guardia_production": settings.PRODUCTION}
    from governance.services import global_stop_state, unread_count

    context["global_stop"] = global_stop_state()
    user = getattr(request, "user", None)
    if user is not None and user.is_authenticated:
        context["unread_notifications"] = unread_count(user)
    return context
