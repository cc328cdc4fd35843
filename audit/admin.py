"""Read-only admin: entries and checkpoints can be looked at, never added, changed or deleted."""

from __future__ import annotations

from django.contrib import admin

from .models import AuditCheckpoint, AuditEntry


class ReadOnlyAdmin(admin.ModelAdmin):
    """History is not edited through the admin (the execution layer's run records use it too)."""

    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False


@admin.register(AuditEntry)
class AuditEntryAdmin(ReadOnlyAdmin):
    list_display = ("seq", "created_at", "actor", "action", "institution", "task", "target", "result_code")
    list_filter = ("action", "institution")
    # Whole values, each read off its (column, seq) index: a substring search ("%x%") reads
    # every row of the log, once for the count and again for the page.
    search_fields = ("=task", "=actor", "=action", "=institution")
    show_full_result_count = False  # COUNT(*) over millions of rows on every page is slow
    readonly_fields = [f.name for f in AuditEntry._meta.fields]


@admin.register(AuditCheckpoint)
class AuditCheckpointAdmin(ReadOnlyAdmin):
    list_display = ("seq", "created_at", "reason", "key_id", "entry_hash")
    readonly_fields = [f.name for f in AuditCheckpoint._meta.fields]
