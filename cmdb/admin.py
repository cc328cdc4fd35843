"""The Django admin is the CMDB console: list, search and filter the inventory,
import servers from CSV, pin SSH host keys, keep the owner table and the credentials.

Every change goes through cmdb.services so it is validated and audited the same way
whichever screen made it; this module only wires screens to those services.
"""

from __future__ import annotations

from typing import Any, cast

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.db.models import Count, Q
from django.http import Http404, HttpResponse
from django.shortcuts import redirect
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils.html import format_html
from django.utils.translation import gettext_lazy as _

from . import admin_accounts, csv_import, services  # noqa: F401  (admin_accounts: the account screens)
from .deciders import deciders_for
from .forms import CredentialForm, InstitutionForm, ServerImportForm
from .models import (
    CommandRule,
    Credential,
    EnvSchema,
    Gateway,
    HealthCriteria,
    Institution,
    SecurityPolicy,
    Server,
    System,
    SystemOwner,
    SystemSource,
    Tier,
    sees_all_systems,
)

# --- list filters ---------------------------------------------------------------------------


class _LookupFilter(admin.SimpleListFilter):
    """Filter on a related row; one query for the choices however long the list is."""

    field_path = ""

    def queryset(self, request, queryset):
        value = self.value()
        return queryset.filter(**{self.field_path: value}) if value else queryset


class InstitutionFilter(_LookupFilter):
    title = _("기관")
    parameter_name = "institution"
    field_path = "system__institution__id"

    def lookups(self, request, model_admin):
        return [(str(pk), name) for pk, name in Institution.objects.values_list("pk", "name")]


class SystemFilter(_LookupFilter):
    title = _("시스템")
    parameter_name = "system"
    field_path = "system__id"

    def lookups(self, request, model_admin):
        systems = System.objects.for_user(request.user).values_list("pk", "code", "name")
        return [(str(pk), f"{name} ({code})") for pk, code, name in systems]


class TierFilter(_LookupFilter):
    title = _("등급")
    parameter_name = "tier"
    field_path = "system__institution__tier"

    def lookups(self, request, model_admin):
        return [(str(value), label) for value, label in Tier.choices]


class OsFilter(_LookupFilter):
    title = _("OS")
    parameter_name = "os"
    field_path = "os_type"

    def lookups(self, request, model_admin):
        return Server.OsType.choices


class SystemInstitutionFilter(InstitutionFilter):
    field_path = "institution__id"


class SystemTierFilter(TierFilter):
    field_path = "institution__tier"


class AuditedAdmin(admin.ModelAdmin):
    """Saves and deletes go through the audited service functions."""

    def save_model(self, request, obj, form, change):
        services.save_with_audit(request.user, obj, list(form.changed_data), created=not change)

    def delete_model(self, request, obj):
        services.delete_with_audit(request.user, obj)

    def delete_queryset(self, request, queryset):
        # One at a time through delete_model, so a bulk delete is audited like a single one.
        for obj in queryset:
            self.delete_model(request, obj)


def tier_badge(tier: int):
    colours = {1: "#b00020", 2: "#1d5fa8", 3: "#5a7d2a"}
    return format_html('<b style="color:{}">T{}</b>', colours.get(tier, "#333"), tier)


# --- institutions and systems -------------------------------------------------------------------


@admin.register(Institution)
class InstitutionAdmin(AuditedAdmin):
    form = InstitutionForm
    list_display = ["code", "name", "alias_display", "tier_display", "pm", "contact", "system_count"]
    list_select_related = ["pm"]
    list_filter = ["tier"]
    search_fields = ["code", "name", "aliases", "contact"]
    filter_horizontal = ["site_managers"]
    raw_id_fields = ["pm"]
    fieldsets = [
        (None, {"fields": ["code", "name", "aliases", "tier"]}),
        (_("사람"), {"fields": ["pm", "contact", "site_managers"]}),
        (_("게이트웨이"), {"fields": ["gateway"]}),
    ]

    def get_queryset(self, request):
        qs = super().get_queryset(request).annotate(n_systems=Count("systems", distinct=True))
        return qs if sees_all_systems(request.user) else qs.filter(pk__in=Institution.objects.for_user(request.user))

    @admin.display(description=_("별칭"))
    def alias_display(self, obj):
        return ", ".join(obj.alias_list)

    @admin.display(description=_("등급"), ordering="tier")
    def tier_display(self, obj):
        return tier_badge(obj.tier)

    @admin.display(description=_("시스템 수"), ordering="n_systems")
    def system_count(self, obj):
        return obj.n_systems


@admin.register(Gateway)
class GatewayAdmin(AuditedAdmin):
    """Site gateways are infrastructure, not a tenant's rows: not institution-scoped; the role
    table says who views (cmdb.view_gateway) and who edits them. The heartbeat is the cluster's."""

    list_display = ["name", "description", "heartbeat_at", "heartbeat_by", "silent_since", "institution_count"]
    search_fields = ["name", "description", "network_notes"]
    readonly_fields = ["heartbeat_at", "heartbeat_by", "silent_since"]
    fields = ["name", "description", "network_notes", *readonly_fields]

    def get_queryset(self, request):
        return super().get_queryset(request).annotate(n_institutions=Count("institutions", distinct=True))

    @admin.display(description=_("기관 수"), ordering="n_institutions")
    def institution_count(self, obj):
        return obj.n_institutions


class HealthCriteriaInline(admin.StackedInline):
    model = HealthCriteria
    extra = 0
    max_num = 1


@admin.register(System)
class SystemAdmin(AuditedAdmin):
    list_display = ["code", "name", "institution", "tier_display", "sensitive", "window", "owner", "server_count"]
    list_select_related = ["institution", "ownership__owner"]
    list_filter = [SystemInstitutionFilter, SystemTierFilter, "sensitive"]
    search_fields = ["code", "name", "institution__name", "institution__aliases"]
    autocomplete_fields = ["institution"]
    inlines = [HealthCriteriaInline]
    fieldsets = [
        (None, {"fields": ["code", "name", "institution", "sensitive"]}),
        (_("배포 가능 시간 (현지 시각; 시작 = 종료이면 언제나)"), {"fields": ["window_start", "window_end"]}),
        (_("에스컬레이션"), {"fields": ["expire_unanswered"]}),
        (_("실행"), {"fields": ["recovery_policy"]}),
    ]

    def get_queryset(self, request):
        qs = super().get_queryset(request).annotate(n_servers=Count("servers", distinct=True))
        return qs if sees_all_systems(request.user) else qs.filter(pk__in=System.objects.for_user(request.user))

    @admin.display(description=_("등급"), ordering="institution__tier")
    def tier_display(self, obj):
        return tier_badge(obj.institution.tier)

    @admin.display(description=_("배포 가능 시간"))
    def window(self, obj):
        if obj.window_start == obj.window_end:
            return _("언제나")
        return f"{obj.window_start:%H:%M}–{obj.window_end:%H:%M}"

    @admin.display(description=_("담당자"))
    def owner(self, obj):
        ownership = getattr(obj, "ownership", None)
        return ownership.owner if ownership else "—"

    @admin.display(description=_("서버 수"), ordering="n_servers")
    def server_count(self, obj):
        url = reverse("admin:cmdb_server_changelist") + f"?system={obj.pk}"
        return format_html('<a href="{}">{}</a>', url, obj.n_servers)

    def save_formset(self, request, form, formset, change):
        for obj in formset.save(commit=False):
            services.save_with_audit(request.user, obj, ["health"], created=obj.pk is None)
        for obj in formset.deleted_objects:
            services.delete_with_audit(request.user, obj)


# --- servers --------------------------------------------------------------------------------


class CsvImportAdmin(admin.ModelAdmin):
    """A CSV import next to a CMDB list (cmdb.csv_import): the upload page, a template to
    download, and a link on the list. The add permission decides; ``run_import`` does the work."""

    change_list_template = "admin/cmdb/import_change_list.html"
    import_title = _("CSV에서 가져오기")
    imported = _("%(n)d개 행을 가져왔습니다.")

    def run_import(self, request, data: bytes, filename: str) -> csv_import.ImportResult:
        raise NotImplementedError

    def template_text(self) -> tuple[str, list[str], list[str]]:
        """The template CSV, its columns and the required ones."""
        raise NotImplementedError

    def _url(self, action: str) -> str:
        return f"cmdb_{self.model._meta.model_name}_{action}"

    def get_urls(self):
        extra = [
            path("import/", self.admin_site.admin_view(self.import_view), name=self._url("import")),
            path("import/template.csv", self.admin_site.admin_view(self.import_template), name=self._url("template")),
        ]
        return extra + super().get_urls()

    def import_view(self, request):
        if not self.has_add_permission(request):
            raise PermissionDenied
        result = None
        form = ServerImportForm(request.POST or None, request.FILES or None)
        if request.method == "POST" and form.is_valid():
            upload = form.cleaned_data["file"]
            result = self.run_import(request, upload.read(), upload.name)
            if result.ok:
                self.message_user(request, self.imported % {"n": result.rows}, messages.SUCCESS)
                return redirect(f"admin:{self._url('changelist')}")
        _text, columns, required = self.template_text()
        context = {
            **self.admin_site.each_context(request),
            "opts": self.model._meta,
            "title": self.import_title,
            "form": form,
            "result": result,
            "columns": columns,
            "required": required,
            "template_url": reverse(f"admin:{self._url('template')}"),
        }
        return TemplateResponse(request, "admin/cmdb/server/import.html", context)

    def import_template(self, request):
        if not self.has_add_permission(request):
            raise PermissionDenied
        response = HttpResponse(self.template_text()[0], content_type="text/csv; charset=utf-8")
        response["Content-Disposition"] = f'attachment; filename="{self.model._meta.model_name}-template.csv"'
        return response


class ProfileImportAdmin(CsvImportAdmin):
    """A site-profile table's import: rows outside the importer's systems are "unknown"."""

    profile_table: csv_import.ProfileTable

    def run_import(self, request, data: bytes, filename: str) -> csv_import.ImportResult:
        return csv_import.import_profiles(request.user, self.profile_table, data, filename=filename)

    def template_text(self) -> tuple[str, list[str], list[str]]:
        table = self.profile_table
        return csv_import.profile_template_csv(table), list(table.columns), [table.key]


@admin.register(Server)
class ServerAdmin(CsvImportAdmin, AuditedAdmin):
    list_display = [
        "server_id",
        "hostname",
        "ip",
        "os_type",
        "system_link",
        "institution_name",
        "tier_display",
        "rolling_group",
        "canary",
        "fingerprint_short",
        "active",
    ]
    list_select_related = ["system__institution"]
    list_filter = [InstitutionFilter, SystemFilter, TierFilter, OsFilter, "canary", "active"]
    search_fields = ["server_id", "hostname", "ip", "system__code", "system__name", "system__institution__name"]
    autocomplete_fields = ["system", "credential"]
    list_per_page = 100
    # A second COUNT over the whole table on every filtered page buys nothing at 10,000 rows.
    show_full_result_count = False
    actions = ["scan_host_key"]
    fieldsets = [
        (None, {"fields": ["server_id", "system", "hostname", "ip", "os_type", "active"]}),
        (_("SSH"), {"fields": ["ssh_port", "ssh_user", "credential", "host_key_fingerprint"]}),
        (_("경로"), {"fields": ["app_path", "deploy_path", "backup_path", "script_path", "log_path"]}),
        (_("헬스 체크와 롤아웃"), {"fields": ["service_port", "health_url", "rolling_group", "canary"]}),
        (_("게이트웨이"), {"fields": ["gateway"]}),
    ]

    def get_queryset(self, request):
        qs = super().get_queryset(request)
        return qs if sees_all_systems(request.user) else qs.filter(system__in=System.objects.for_user(request.user))

    @admin.display(description=_("시스템"), ordering="system__code")
    def system_link(self, obj):
        # One reverse() per page instead of one per row: URL resolving was a third of the
        # render time of a 100-row page.
        if not hasattr(self, "_system_url"):
            self._system_url = reverse("admin:cmdb_system_change", args=[0]).replace("/0/", "/{}/")
        return format_html('<a href="{}">{}</a>', self._system_url.format(obj.system_id), obj.system.code)

    @admin.display(description=_("기관"), ordering="system__institution__name")
    def institution_name(self, obj):
        return obj.system.institution.name

    @admin.display(description=_("등급"), ordering="system__institution__tier")
    def tier_display(self, obj):
        return tier_badge(obj.system.institution.tier)

    @admin.display(description=_("호스트 키"))
    def fingerprint_short(self, obj):
        if not obj.host_key_fingerprint:
            return format_html('<span style="color:#b00020">{}</span>', _("고정되지 않음"))
        return format_html('<code title="{}">{}…</code>', obj.host_key_fingerprint, obj.host_key_fingerprint[:18])

    @admin.action(description=_("호스트 키를 스캔해 지문 고정"), permissions=["change"])
    def scan_host_key(self, request, queryset):
        for server in queryset[:50]:  # each scan is a network round trip; keep the request bounded
            try:
                old, new = services.scan_host_key(request.user, server)
            except Exception as exc:  # an unreachable server is reported, the others still run
                self.message_user(request, f"{server.server_id}: scan failed: {exc}", messages.ERROR)
                continue
            if old and old != new:
                self.message_user(request, f"{server.server_id}: host key CHANGED {old} -> {new}", messages.WARNING)
            else:
                self.message_user(request, f"{server.server_id}: {new}", messages.SUCCESS)

    import_title = _("CSV에서 서버 가져오기")
    imported = _("서버 %(n)d대를 가져왔습니다.")

    def run_import(self, request, data: bytes, filename: str) -> csv_import.ImportResult:
        return csv_import.import_servers(request.user, data, filename=filename)

    def template_text(self) -> tuple[str, list[str], list[str]]:
        return csv_import.template_csv(), csv_import.COLUMNS, csv_import.REQUIRED


# --- owner table (TB_SYSTEM_OWNER) ------------------------------------------------------------


class SystemOwnerForm(forms.ModelForm):
    """Owner and deputy must be able to decide the system's steps (cmdb.deciders); the
    pickers offer only them and clean() refuses anyone else, whatever was posted.

    Admins (change_any_systemowner) set up new institutions, where nobody is in scope
    yet, so for them the decide permission alone qualifies; supervisors stay in scope.
    """

    editor: Any = None  # the requesting user, set by SystemOwnerAdmin.get_form

    class Meta:
        model = SystemOwner
        fields = ["system", "owner", "deputy", "supervisor", "owner_is_active", "sla_minutes", "auth_level"]

    def _scope_system(self, system):
        if self.editor is not None and self.editor.has_perm("cmdb.change_any_systemowner"):
            return None
        return system

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        system = self.instance.system if self.instance.system_id else None
        for name in ("owner", "deputy"):
            if name in self.fields:
                cast(forms.ModelChoiceField, self.fields[name]).queryset = deciders_for(self._scope_system(system))

    def clean(self) -> dict:
        super().clean()
        data = self.cleaned_data
        system = data.get("system") or (self.instance.system if self.instance.system_id else None)
        allowed = deciders_for(self._scope_system(system)) if system is not None else None
        for name in ("owner", "deputy"):
            person = data.get(name)
            if allowed is not None and person is not None and not allowed.filter(pk=person.pk).exists():
                self.add_error(name, _("%(user)s 님은 이 시스템의 요청을 승인할 수 없습니다.") % {"user": person})
        return data


@admin.register(SystemOwner)
class SystemOwnerAdmin(AuditedAdmin):
    form = SystemOwnerForm

    def get_form(self, request, obj=None, change=False, **kwargs):
        form = cast(type[SystemOwnerForm], super().get_form(request, obj, change, **kwargs))
        form.editor = request.user
        return form

    list_display = ["system", "institution_name", "owner", "deputy", "supervisor", "owner_is_active", "sla_minutes"]
    list_select_related = ["system__institution", "owner", "deputy", "supervisor"]
    list_filter = [InstitutionFilter, "owner_is_active", "auth_level"]
    search_fields = ["system__code", "system__name", "owner__username", "deputy__username", "supervisor__username"]
    fieldsets = [
        (None, {"fields": ["system", "owner", "deputy", "supervisor"]}),
        (_("승인 경로"), {"fields": ["owner_is_active", "sla_minutes", "auth_level"]}),
    ]

    def get_queryset(self, request):
        qs = super().get_queryset(request)
        if request.user.is_superuser or request.user.has_perm("cmdb.change_any_systemowner"):
            return qs
        return qs.filter(system__in=System.objects.for_user(request.user))

    def has_change_permission(self, request, obj=None):
        return super().has_change_permission(request, obj) and services.may_edit_owner_row(request.user, obj)

    def has_delete_permission(self, request, obj=None):
        return super().has_delete_permission(request, obj) and request.user.has_perm("cmdb.change_any_systemowner")

    def get_readonly_fields(self, request, obj=None):
        return ["system"] if obj is not None else []

    def changeform_view(self, request, object_id=None, form_url="", extra_context=None):
        # A row outside the user's systems is 404, exactly like a row that does not exist:
        # the refusal is unambiguous and confirms nothing about other institutions' rows.
        if object_id and self.get_object(request, object_id) is None:
            raise Http404("no such owner row")
        return super().changeform_view(request, object_id, form_url, extra_context)

    def formfield_for_foreignkey(self, db_field, request, **kwargs):
        if db_field.name == "system" and not request.user.has_perm("cmdb.change_any_systemowner"):
            kwargs["queryset"] = System.objects.supervised_by(request.user)
        return super().formfield_for_foreignkey(db_field, request, **kwargs)

    @admin.display(description=_("기관"), ordering="system__institution__name")
    def institution_name(self, obj):
        return obj.system.institution.name

    def save_model(self, request, obj, form, change):
        services.save_system_owner(request.user, obj, list(form.changed_data))


# --- credentials ------------------------------------------------------------------------------


@admin.register(Credential)
class CredentialAdmin(AuditedAdmin):
    """Write-only secrets: the list and the form show whether a secret is set, nothing more."""

    form = CredentialForm
    list_display = ["name", "username", "kind", "secret_set", "server_count", "updated_at"]
    search_fields = ["name", "username"]
    fieldsets = [
        (None, {"fields": ["name", "username", "kind"]}),
        (_("비밀값 (쓰기 전용)"), {"fields": ["secret_status", "new_password", "new_private_key"]}),
    ]
    readonly_fields = ["secret_status"]

    def get_queryset(self, request):
        return super().get_queryset(request).annotate(n_servers=Count("servers"))

    def get_readonly_fields(self, request, obj=None):
        # The name is bound into the ciphertext (vault AAD), so it is fixed once a secret exists.
        return ["secret_status", "name"] if obj is not None and obj.has_secret else ["secret_status"]

    @admin.display(description=_("비밀값 설정됨"), boolean=True)
    def secret_set(self, obj):
        return obj.has_secret

    @admin.display(description=_("비밀값"))
    def secret_status(self, obj):
        return _("설정됨: 예") if obj and obj.has_secret else _("설정됨: 아니요")

    @admin.display(description=_("서버 수"), ordering="n_servers")
    def server_count(self, obj):
        return obj.n_servers

    def save_model(self, request, obj, form, change):
        services.save_credential(request.user, obj, list(form.changed_data), form.new_secret)

    def delete_model(self, request, obj):
        services.delete_credential(request.user, obj)


@admin.register(HealthCriteria)
class HealthCriteriaAdmin(AuditedAdmin):
    list_display = ["system", "service_port", "process_name", "expected_status", "max_latency_ms", "min_free_disk_mb"]
    list_select_related = ["system"]
    search_fields = ["system__code", "system__name", "process_name"]
    autocomplete_fields = ["system"]

    def get_queryset(self, request):
        qs = super().get_queryset(request)
        return qs if sees_all_systems(request.user) else qs.filter(system__in=System.objects.for_user(request.user))


@admin.register(SystemSource)
class SystemSourceAdmin(HealthCriteriaAdmin):
    """A system's source repository, build, tests and the agent's scope (docs/agent.md)."""

    list_display = ["system", "repository", "ref", "build_command", "artifact_path"]
    search_fields = ["system__code", "system__name", "repository"]
    fieldsets = [
        (None, {"fields": ["system", "repository", "ref"]}),
        (_("빌드와 테스트"), {"fields": ["build_command", "build_timeout", "test_command", "test_timeout"]}),
        (_("배포"), {"fields": ["artifact_path", "deploy_name"]}),
        (_("에이전트 범위"), {"fields": ["scope"]}),
    ]


@admin.register(SecurityPolicy)
class SecurityPolicyAdmin(ProfileImportAdmin, HealthCriteriaAdmin):
    """A system's SSH policy: login method, allowed ports, firewall notes (docs/profiles.md)."""

    profile_table = csv_import.SECURITY_POLICY

    list_display = ["system", "ssh_auth", "port_min", "port_max"]
    search_fields = ["system__code", "system__name"]


@admin.register(EnvSchema)
class EnvSchemaAdmin(ProfileImportAdmin, AuditedAdmin):
    """The environment each server is expected to run; a scan that differs shows in the drift report."""

    profile_table = csv_import.ENV_SCHEMA

    list_display = ["server", "os_type", "os_version", "init_system", "middleware", "was_home", "jdk_version"]
    list_select_related = ["server"]
    list_filter = ["init_system", "middleware"]
    search_fields = ["server__server_id", "server__hostname", "server__system__code"]
    autocomplete_fields = ["server"]
    fieldsets = [
        (None, {"fields": ["server", "os_type", "os_version", "kernel", "init_system", "service_name"]}),
        (_("미들웨어"), {"fields": ["middleware", "was_home", "start_script", "stop_script", "log_path"]}),
        (_("런타임"), {"fields": ["jdk_path", "jdk_version"]}),
        (_("정책"), {"fields": ["must_match"]}),
    ]

    def get_queryset(self, request):
        qs = super().get_queryset(request)
        if sees_all_systems(request.user):
            return qs
        return qs.filter(server__system__in=System.objects.for_user(request.user))


# --- command catalogue (RAW_COMMAND / CRON_MANAGE allow-list) -------------------------------------


class CatalogueScopeFilter(admin.SimpleListFilter):
    title = _("적용 범위")
    parameter_name = "scope"

    def lookups(self, request, model_admin):
        return [("default", _("기본 목록 (모든 시스템)")), ("system", _("시스템별 추가"))]

    def queryset(self, request, queryset):
        if self.value() == "default":
            return queryset.filter(system__isnull=True)
        if self.value() == "system":
            return queryset.filter(system__isnull=False)
        return queryset


@admin.register(CommandRule)
class CommandRuleAdmin(AuditedAdmin):
    """Security officers keep the catalogue; every save and delete is an audited service call.
    Other roles may at most read it (the model permissions decide, so the admin role gets 403)."""

    list_display = [
        "program",
        "scope",
        "description",
        "is_filter",
        "runs_programs",
        "run_as",
        "path_roots",
        "enabled",
        "updated_at",
    ]
    list_select_related = ["system"]
    list_filter = [CatalogueScopeFilter, "is_filter", "runs_programs", "enabled"]
    search_fields = ["program", "description", "system__code", "system__name"]
    autocomplete_fields = ["system"]
    fieldsets = [
        (None, {"fields": ["system", "program", "description", "enabled"]}),
        (_("인자"), {"fields": ["option_pattern", "operand_pattern", "argv_pattern", "path_roots", "max_args"]}),
        (_("파이프와 래퍼"), {"fields": ["is_filter", "runs_programs", "run_as"]}),
    ]

    def get_queryset(self, request):
        # The default list (no system) is everyone's; a system's own rules only within the
        # user's systems, like every other CMDB list.
        qs = super().get_queryset(request)
        if sees_all_systems(request.user):
            return qs
        return qs.filter(Q(system__isnull=True) | Q(system__in=System.objects.for_user(request.user)))

    @admin.display(description=_("적용 범위"), ordering="system__code")
    def scope(self, obj):
        return obj.system.code if obj.system_id else _("기본 목록")

    def save_model(self, request, obj, form, change):
        services.save_command_rule(request.user, obj)

    def delete_model(self, request, obj):
        services.delete_command_rule(request.user, obj)
