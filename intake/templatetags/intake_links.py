"""Deep links into the field app from console pages: a system or server node opens
``/app/new`` with that system or server prefilled (checked again against the scope there)."""

from __future__ import annotations

from django import template

from cmdb.models import Server, System

register = template.Library()

MAX_SYSTEMS = 12
MAX_SERVERS = 8


@register.simple_tag
def request_nodes(user) -> list[dict]:
    """The caller's systems (a few) with their active servers, for "현장 요청" links; empty for
    anyone who may not file requests."""
    if not (user and user.is_authenticated and user.has_perm("governance.submit_task")):
        return []
    systems = list(
        System.objects.for_user(user).select_related("institution").order_by("institution__name", "name")[:MAX_SYSTEMS]
    )
    servers: dict[int, list[str]] = {s.pk: [] for s in systems}
    for system_id, server_id in (
        Server.objects.filter(system__in=systems, active=True)
        .order_by("server_id")
        .values_list("system_id", "server_id")
    ):
        if len(servers[system_id]) < MAX_SERVERS:
            servers[system_id].append(server_id)
    return [{"code": s.code, "name": f"{s.institution.name} · {s.name}", "servers": servers[s.pk]} for s in systems]
