"""The messenger's admin screens: identities and webhooks (every save audited through
intake.messenger.accounts) and the outbox, read-only, as the backlog of notifications not
yet delivered (a messenger that is down shows here)."""

from __future__ import annotations

from django.contrib import admin
from django.db import models
from django.utils.html import format_html
from django.utils.translation import gettext_lazy as _

from .messenger import accounts
from .models import ChatWebhook, MessengerIdentity, OutboxMessage


class AuditedByAccounts(admin.ModelAdmin):
    """Saves and deletes go through intake.messenger.accounts, which audits each one."""

    def save_model(self, request, obj, form, change):
        self.save_audited(request.user, obj, list(form.changed_data), not change)

    def delete_model(self, request, obj):
        self.delete_audited(request.user, obj)

    def delete_queryset(self, request, queryset):
        for obj in queryset:
            self.delete_audited(request.user, obj)

    def save_audited(self, actor, obj, changed: list[str], created: bool) -> None:
        raise NotImplementedError

    def delete_audited(self, actor, obj) -> None:
        raise NotImplementedError


@admin.register(MessengerIdentity)
class MessengerIdentityAdmin(AuditedByAccounts):
    list_display = ("user", "channel", "matrix_id", "chat_user_id", "webhook", "enabled", "updated_at")
    list_filter = ("channel", "enabled")
    list_select_related = ("user", "webhook")
    search_fields = ("user__username", "matrix_id", "chat_user_id")
    raw_id_fields = ("user",)
    readonly_fields = ("room_id", "updated_at")
    fieldsets = (
        (None, {"fields": ("user", "channel", "enabled")}),
        (_("Matrix 계정"), {"fields": ("matrix_id", "room_id")}),
        (_("Mattermost / Slack / 웹훅"), {"fields": ("chat_user_id", "webhook")}),
        (_("기록"), {"fields": ("updated_at",)}),
    )

    def save_audited(self, actor, obj, changed: list[str], created: bool) -> None:
        accounts.save_identity(actor, obj)

    def delete_audited(self, actor, obj) -> None:
        accounts.delete_identity(actor, obj)


@admin.register(ChatWebhook)
class ChatWebhookAdmin(AuditedByAccounts):
    list_display = ("name", "kind", "institution", "enabled")
    list_filter = ("kind", "enabled")
    list_select_related = ("institution",)
    search_fields = ("name", "institution__name")
    raw_id_fields = ("institution",)
    formfield_overrides = {models.URLField: {"assume_scheme": "https"}}

    def save_audited(self, actor, obj, changed: list[str], created: bool) -> None:
        accounts.save_webhook(actor, obj, changed, created)

    def delete_audited(self, actor, obj) -> None:
        accounts.delete_webhook(actor, obj)


class BacklogFilter(admin.SimpleListFilter):
    title = _("전달")
    parameter_name = "backlog"

    def lookups(self, request, model_admin):
        return [("waiting", _("대기 중 (미전달)")), ("retrying", _("재시도 중")), ("sent", _("전달됨"))]

    def queryset(self, request, queryset):
        value = self.value()
        if value == "waiting":
            return queryset.filter(status=OutboxMessage.Status.PENDING)
        if value == "retrying":
            return queryset.filter(status=OutboxMessage.Status.PENDING, attempts__gt=0)
        if value == "sent":
            return queryset.filter(status=OutboxMessage.Status.SENT)
        return queryset


@admin.register(OutboxMessage)
class OutboxMessageAdmin(admin.ModelAdmin):
    """The backlog: read-only; rows leave it only by being delivered."""

    list_display = (
        "created_at",
        "user",
        "channel",
        "kind",
        "task_ref",
        "summary",
        "state",
        "attempts",
        "next_attempt_at",
    )
    list_filter = (BacklogFilter, "channel", "kind")
    list_select_related = ("user",)
    search_fields = ("user__username", "task_ref", "key")
    date_hierarchy = "created_at"
    ordering = ("-created_at",)

    @admin.display(description=_("내용"))
    def summary(self, obj: OutboxMessage) -> str:
        return obj.text[:80]

    @admin.display(description=_("상태"), ordering="status")
    def state(self, obj: OutboxMessage):
        if obj.status == OutboxMessage.Status.SENT:
            return format_html('<span style="color:#1d7a35">{}</span>', obj.get_status_display())
        return format_html(
            '<b style="color:#b00020">{}</b> <span class="muted">{}</span>', obj.get_status_display(), obj.last_error
        )

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False
