"""Read-only admin: entries and checkpoints can be looked at, never added, changed or deleted.

The log grows to millions of entries, so every list here reads a bounded number of rows
per page: the filters offer fixed choices (no scan for the distinct values of a column),
the search matches one whole value on one indexed column, and the paginator counts at
most a bounded number of rows (no COUNT(*) over the whole log).
"""

from __future__ import annotations

import re

from django.contrib import admin
from django.core.paginator import Paginator
from django.db.models import QuerySet
from django.utils.functional import cached_property
from django.utils.translation import gettext_lazy as _

from .labels import ACTION_LABELS
from .models import AuditCheckpoint, AuditEntry


class ReadOnlyAdmin(admin.ModelAdmin):
    """History and definitions that are not edited through the admin (the audit log, the
    execution layer's run records, the role table)."""

    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False


class BoundedCountPaginator(Paginator):
    """Counts at most COUNT_UP_TO rows (a COUNT over a LIMIT subquery), so a page of a
    million-row table costs the same as one of a thousand; further pages are reached by
    narrowing the list (a filter or a search), not by paging."""

    COUNT_UP_TO = 10_000

    @cached_property
    def count(self) -> int:
        queryset = self.object_list
        if isinstance(queryset, QuerySet):
            return queryset.order_by()[: self.COUNT_UP_TO].count()
        return min(len(queryset), self.COUNT_UP_TO)


class ActionFilter(admin.SimpleListFilter):
    """The actions the product writes (audit/labels.py), not the distinct values of the column."""

    title = _("행위")
    parameter_name = "action"

    def lookups(self, request, model_admin):
        return sorted(ACTION_LABELS.items(), key=lambda item: item[0])

    def queryset(self, request, queryset):
        return queryset.filter(action=self.value()) if self.value() else queryset


# "행위자:kim" / "기관:MOEF" / "행위:task.transition" / "작업:OPS-…": the column named; a bare
# value shaped like a task id (OPS-20260101-001) is a task, any other bare value an actor.
SEARCH_PREFIXES = {"작업": "task", "행위자": "actor", "기관": "institution", "행위": "action"}
SEARCH_PREFIXES |= {column: column for column in SEARCH_PREFIXES.values()}  # task:, actor:, … too
TASK_ID = re.compile(r"^[A-Z]{2,10}-\d{8}-\d+$")


def search_column(term: str) -> tuple[str, str]:
    """The one indexed column a search term names, and the value to match exactly."""
    prefix, colon, value = term.partition(":")
    if colon and prefix.strip() in SEARCH_PREFIXES:
        return SEARCH_PREFIXES[prefix.strip()], value.strip()
    term = term.strip()
    return ("task" if TASK_ID.match(term) else "actor"), term


@admin.register(AuditEntry)
class AuditEntryAdmin(ReadOnlyAdmin):
    list_display = ("seq", "created_at", "actor", "action", "institution", "task", "target", "result_code")
    list_filter = (ActionFilter,)
    ordering = ("-seq",)
    paginator = BoundedCountPaginator
    show_full_result_count = False
    # Whole values on one column, read off its (column, seq) index: a substring search
    # ("%x%") or an OR over several columns reads every row of the log.
    search_fields = ("=task",)
    search_help_text = _(
        "작업 ID(예: OPS-20260101-001) 또는 행위자 이름을 그대로 입력하세요. "
        "'행위자:이름', '기관:코드', '행위:이름', '작업:ID'로 열을 지정할 수 있습니다. 값 전체가 같은 항목만 찾습니다."
    )
    readonly_fields = [f.name for f in AuditEntry._meta.fields]

    def get_search_results(self, request, queryset, search_term):
        if not search_term.strip():
            return queryset, False
        column, value = search_column(search_term)
        return queryset.filter(**{column: value}), False


@admin.register(AuditCheckpoint)
class AuditCheckpointAdmin(ReadOnlyAdmin):
    list_display = ("seq", "created_at", "reason", "key_id", "entry_hash")
    ordering = ("-seq",)
    paginator = BoundedCountPaginator
    show_full_result_count = False
    readonly_fields = [f.name for f in AuditCheckpoint._meta.fields]
