"""Read-only query helpers for the console (no state changes here; those are in services.py)."""

from __future__ import annotations

from django.db.models import Q, QuerySet

from .models import OpsTask


def search_tasks(user, *, q: str = "", institution=None, person: str = "") -> QuerySet[OpsTask]:
    """Tasks the user may see, filtered by task id / SR number / title, institution and person.

    "Person" matches the requester or anyone who was assigned or decided a step, by
    username or name, because a lead remembers "the one Kim approved", not a user id.
    """
    tasks = OpsTask.objects.visible_to(user).select_related("system__institution", "requester")
    q = q.strip()
    if q:
        tasks = tasks.filter(Q(task_id__icontains=q) | Q(sr_number__icontains=q) | Q(title__icontains=q))
    if institution is not None:
        tasks = tasks.filter(system__institution=institution)
    person = person.strip()
    if person:
        who = Q()
        for prefix in ("requester", "steps__assigned_to", "steps__actual_approver"):
            who |= (Q(**{f"{prefix}__username__icontains": person})
                    | Q(**{f"{prefix}__first_name__icontains": person})
                    | Q(**{f"{prefix}__last_name__icontains": person}))
        tasks = tasks.filter(who)
    return tasks.distinct().order_by("-created_at")


def diff_lines(diff: str) -> list[tuple[str, str]]:
    """Unified diff -> (css class, line) pairs for colouring added/removed lines."""
    lines = []
    for line in (diff or "").splitlines():
        if line.startswith(("+++", "---")):
            css = "hunk"
        elif line.startswith("+"):
            css = "add"
        elif line.startswith("-"):
            css = "del"
        elif line.startswith("@@"):
            css = "hunk"
        else:
            css = "ctx"
        lines.append((css, line))
    return lines


def package_view(package: dict) -> dict:
    """Normalise a result package for display: diff lines, log text, health rows, the rest."""
    package = dict(package or {})
    log = package.pop("log", "")
    if isinstance(log, list):
        log = "\n".join(item if isinstance(item, str) else repr(item) for item in log)
    health = package.pop("health", None)
    if isinstance(health, dict):
        health = [{"server": key, **(value if isinstance(value, dict) else {"detail": value})}
                  for key, value in health.items()]
    rows = []
    for row in health or []:
        row = row if isinstance(row, dict) else {"detail": row}
        rows.append({"server": row.get("server", ""), "ok": bool(row.get("ok")),
                     "detail": row.get("detail") or row.get("message") or row.get("error") or ""})
    return {
        "diff": diff_lines(package.pop("diff", "")),
        "log": str(log or ""),
        "health": rows,
        "extra": package,
    }
