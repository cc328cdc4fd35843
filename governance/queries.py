"""Read-only query helpers: the scoped lookups every entry point uses, and console helpers.

Every console view, REST endpoint, consumer and control service finds a task or an
approval step through ``visible_task`` / ``visible_steps`` here (``services.decide_step``
locks the step it decides through ``visible_steps``), so "may this user see
it" is answered in one place and before any state is looked at: a task the user may not
see is "not found" (404) whatever its state, and no conflict text about it leaks.
(No state changes here; those are in services.py.)
"""

from __future__ import annotations

from collections.abc import Mapping

from django.contrib.auth.models import Permission
from django.db.models import Q, QuerySet

from audit.paging import KeysetPage, keyset_page

from .compiled import CompiledValues
from .errors import NotFound
from .models import ApprovalStep, OpsTask

# Every permission a user holds, their own and their groups', in one query compiled once
# (ModelBackend asks two, each built and compiled by the ORM on every request).
_PERMISSIONS = CompiledValues(
    lambda user: (
        Permission.objects.filter(
            Q(pk__in=Permission.user_set.through.objects.filter(user_id=user).values("permission_id"))
            | Q(pk__in=Permission.group_set.through.objects.filter(group__user=user).values("permission_id"))
        )
        .order_by()
        .values_list("content_type__app_label", "codename")
    ),
    "user",
)


def load_permissions(user) -> None:
    """Fill ModelBackend's permission cache of ``user`` (``user.has_perm`` then asks nothing)
    with what ModelBackend itself would load, in one query: nothing for an inactive or
    anonymous user; a superuser is left to ModelBackend (has_perm answers True without it).
    A cache already filled in this request is kept."""
    if hasattr(user, "_perm_cache") or not user.is_active or user.is_anonymous or user.is_superuser:
        return
    user._perm_cache = {f"{app_label}.{codename}" for app_label, codename in _PERMISSIONS.rows(user=user.pk)}


def visible_tasks(user) -> QuerySet[OpsTask]:
    if not getattr(user, "is_authenticated", False):
        return OpsTask.objects.none()
    return OpsTask.objects.visible_to(user)


def visible_task(user, task_id: str) -> OpsTask:
    """The task if the user may see it; NotFound (404) otherwise, with nothing about its state."""
    task = (
        visible_tasks(user)
        .filter(task_id=str(task_id))
        .select_related("system__institution", "requester", "current_approver")
        .first()
    )
    if task is None:
        raise NotFound(f"task {task_id} not found")
    return task


def visible_steps(user) -> QuerySet[ApprovalStep]:
    """Approval steps of tasks the user may see (a step is read through its task)."""
    return ApprovalStep.objects.filter(task__in=visible_tasks(user).values("pk"))


def search_tasks(user, *, q: str = "", institution=None, person: str = "") -> QuerySet[OpsTask]:
    """Tasks the user may see, filtered by task id / SR number / title, institution and person.

    "Person" matches the requester or anyone who was assigned or decided a step, by
    username or name, because a lead remembers "the one Kim approved", not a user id.
    """
    tasks = visible_tasks(user).select_related("system__institution", "requester")
    q = q.strip()
    if q:
        tasks = tasks.filter(Q(task_id__icontains=q) | Q(sr_number__icontains=q) | Q(title__icontains=q))
    if institution is not None:
        tasks = tasks.filter(system__institution=institution)
    person = person.strip()
    if person:
        # The steps are matched in a subquery of task ids: a join would list a task once
        # per matching step and need a DISTINCT over every column.
        def named(prefix: str) -> Q:
            return (
                Q(**{f"{prefix}__username__icontains": person})
                | Q(**{f"{prefix}__first_name__icontains": person})
                | Q(**{f"{prefix}__last_name__icontains": person})
            )

        deciders = ApprovalStep.objects.filter(named("assigned_to") | named("actual_approver")).values("task_id")
        tasks = tasks.filter(named("requester") | Q(pk__in=deciders))
    return tasks.order_by("-created_at", "-pk")


TASKS_PER_PAGE = 50
# Lists say "1,000건 이상" beyond this: an exact count would read every matching task.
COUNT_CAP = 1000


def task_page(rows: QuerySet, params: Mapping[str, str], size: int = TASKS_PER_PAGE) -> KeysetPage:
    """A page of tasks (or notifications), newest first, by keyset on (created_at, id)
    (audit/paging.py): ``before`` / ``after`` in the query string say where; BadCursor
    names a bad one."""
    return keyset_page(
        rows, ("created_at", "pk"), before=params.get("before", ""), after=params.get("after", ""), size=size
    )


def approvals_page(steps: QuerySet, params: Mapping[str, str], size: int) -> KeysetPage:
    """A page of open approval steps, nearest deadline first, by keyset on (sla_deadline, id)
    (every open step has a deadline from its activation); BadCursor names a bad position."""
    return keyset_page(
        steps,
        ("sla_deadline", "pk"),
        before=params.get("before", ""),
        after=params.get("after", ""),
        size=size,
        ascending=True,
    )


def count_up_to(queryset: QuerySet, cap: int) -> int:
    """The number of rows, counted no further than ``cap`` + 1 (the caller says "more than cap")."""
    return queryset.order_by()[: cap + 1].count()


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
