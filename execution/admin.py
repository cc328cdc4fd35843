"""Execution history and inspection schedules in the admin console (history is read-only)."""

from __future__ import annotations

from django.contrib import admin
from django.utils.html import format_html
from django.utils.translation import gettext_lazy as _

from audit.admin import ReadOnlyAdmin

from .models import Execution, InspectionSchedule, ServerRun, StepResult


class ServerRunInline(admin.TabularInline):
    model = ServerRun
    fields = ("server_ref", "group_index", "tier", "state", "message", "started_at", "finished_at")
    readonly_fields = fields
    extra = 0
    can_delete = False
    show_change_link = True


@admin.register(Execution)
class ExecutionAdmin(ReadOnlyAdmin):
    list_display = ("started_at", "task_ref", "playbook", "playbook_version", "outcome_badge", "reason")
    list_filter = ("outcome", "playbook")
    search_fields = ("task_ref", "reason")
    list_select_related = ("task",)
    raw_id_fields = ("task", "inspection")
    inlines = [ServerRunInline]

    @admin.display(description=_("결과"), ordering="outcome")
    def outcome_badge(self, obj: Execution):
        color = {"SUCCEEDED": "green", "RUNNING": "blue"}.get(obj.outcome, "crimson")
        return format_html('<b style="color:{}">{}</b>', color, obj.get_outcome_display())


class StepResultInline(admin.TabularInline):
    model = StepResult
    fields = ("seq", "phase", "name", "state", "exit_code", "duration_ms", "command", "output_sha256")
    readonly_fields = fields
    extra = 0
    can_delete = False


@admin.register(ServerRun)
class ServerRunAdmin(ReadOnlyAdmin):
    list_display = ("server_ref", "execution", "group_index", "state", "playbook_version", "finished_at")
    list_filter = ("state",)
    search_fields = ("server_ref", "execution__task_ref")
    list_select_related = ("execution",)
    raw_id_fields = ("execution", "server")
    inlines = [StepResultInline]


@admin.register(InspectionSchedule)
class InspectionScheduleAdmin(admin.ModelAdmin):
    list_display = ("name", "system", "kind", "interval_minutes", "enabled", "last_run_at", "next_run_at")
    list_filter = ("kind", "enabled")
    search_fields = ("name", "system__code")
    autocomplete_fields = ("system",)
    filter_horizontal = ("servers",)
    readonly_fields = ("last_run_at", "last_result")
