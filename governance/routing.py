"""Who should decide a step (seed "option B", distributed owners).

Owner steps climb the ladder owner -> deputy -> supervisor: the owner if present, the
deputy if the owner is away, the supervisor if neither can act. PM and security-officer
steps go to the institution's PM or a member of the role's group, then the supervisor.
Nobody on the ladder may be the requester (four-eyes) or have decided an earlier step of
the same task (different steps, different approvers).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from django.contrib.auth import get_user_model

from cmdb.models import SystemOwner

from .models import OpsTask, Routing

User = get_user_model()
if TYPE_CHECKING:
    from django.contrib.auth.models import User as AuthUser

OWNER, DEPUTY, SUPERVISOR = 0, 1, 2


@dataclass(frozen=True)
class Assignment:
    user: AuthUser | None
    level: int
    routing: str
    original_owner: AuthUser | None


def excluded_users(task: OpsTask) -> set[int]:
    taken = set(task.steps.exclude(actual_approver=None).values_list("actual_approver_id", flat=True))
    return taken | {task.requester_id}


def ownership_of(task: OpsTask) -> SystemOwner | None:
    """The system's owner row; callers select_related it (see transitions.lock_task) so a
    sweep over a thousand steps does not query it a thousand times."""
    try:
        return task.system.ownership
    except SystemOwner.DoesNotExist:
        return None


def ladder(task: OpsTask, role: str) -> list[tuple[int, AuthUser | None]]:
    """Candidates for a role in order, each with its escalation level."""
    ownership = ownership_of(task)
    supervisor = ownership.supervisor if ownership else None
    if role == "owner":
        if ownership is None:
            return []
        rungs: list[tuple[int, AuthUser | None]] = []
        if ownership.owner_is_active:
            rungs.append((OWNER, ownership.owner))
        if ownership.deputy:
            rungs.append((DEPUTY, ownership.deputy))
        rungs.append((SUPERVISOR, supervisor))
        return rungs
    if role == "supervisor":
        return [(SUPERVISOR, supervisor)]
    first = None
    if role == "pm" and task.system.institution.pm_id:
        first = task.system.institution.pm
    group_members = list(User.objects.filter(groups__name=role, is_active=True).order_by("pk"))
    rungs = [(OWNER, first)] if first else []
    rungs += [(OWNER, member) for member in group_members if member != first]
    rungs.append((SUPERVISOR, supervisor))
    return rungs


def assign(task: OpsTask, role: str, *, min_level: int = 0, excluded: set[int] | None = None) -> Assignment:
    """The first eligible candidate at or above min_level; user None when nobody can act.

    `excluded` (requester and earlier approvers) may be passed in by a sweep that loaded it
    for many tasks in one query.
    """
    ownership = ownership_of(task)
    original = ownership.owner if (ownership and role == "owner") else None
    if excluded is None:
        excluded = excluded_users(task)
    for level, user in ladder(task, role):
        if level < min_level or user is None or not user.is_active or user.pk in excluded:
            continue
        if role == "owner":
            routing = {OWNER: Routing.DIRECT, DEPUTY: Routing.DELEGATED}.get(level, Routing.ESCALATED)
        else:
            routing = Routing.DIRECT if level == OWNER else Routing.ESCALATED
        if min_level > 0:
            routing = Routing.ESCALATED
        return Assignment(user, level, routing, original)
    return Assignment(None, SUPERVISOR, Routing.ESCALATED, original)
