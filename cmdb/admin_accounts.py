"""GUARDiA's own account screens in place of the stock User, Group and Token admins.

The stock screens let anyone with `auth.change_user` tick "superuser", join any group,
grant single permissions and reset anyone's password, and the token admin lists every
key. Here every change goes through cmdb.accounts (the rules and the audit entries);
these classes only decide what to show. Roles are read-only screens (the role table in
cmdb.roles is their definition) and tokens are managed as actions on the account, never
displayed.
"""

from __future__ import annotations

from django import forms
from django.contrib import admin, messages
from django.contrib.admin.utils import unquote
from django.contrib.auth import get_user_model, password_validation
from django.contrib.auth.models import Group
from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils.html import format_html
from django.utils.translation import gettext
from django.utils.translation import gettext_lazy as _
from rest_framework.authtoken.models import TokenProxy

from audit.admin import ReadOnlyAdmin

from . import account_audit, accounts, otp
from .roles import PRIVILEGED_PERMISSION, PRIVILEGED_ROLES, ROLES

User = get_user_model()

ROLE_LABELS = {
    "site_manager": _("현장 담당자"),
    "team_lead": _("팀장(시스템 담당자)"),
    "pm": _("PM"),
    "security_officer": _("보안책임자"),
    "supervisor": _("상급자"),
    "auditor": _("감사자"),
    "admin": _("관리자"),
}

# Keys a crafted POST might carry to reach what the forms do not offer.
FORBIDDEN_KEYS = {"is_superuser", "is_staff", "groups", "user_permissions", "password"}


def role_choices() -> list[tuple[str, str]]:
    marked = f" — {gettext('보안책임자 부여')}"
    return [(role, f"{ROLE_LABELS.get(role, role)}{marked if role in PRIVILEGED_ROLES else ''}") for role in ROLES]


class _AccountForm(forms.ModelForm):
    """Profile fields and roles; the acting user is set by AccountAdmin.get_form."""

    actor = None
    roles = forms.MultipleChoiceField(
        label=_("역할"),
        choices=role_choices,
        required=False,
        widget=forms.CheckboxSelectMultiple,
        help_text=_(
            "보안책임자·감사자·관리자 역할은 보안책임자만 부여하고 회수합니다. 자신의 역할은 바꿀 수 없습니다."
        ),
    )

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        if self.instance.pk and "roles" in self.fields:  # not a field when shown read-only
            self.fields["roles"].initial = sorted(accounts.roles_of(self.instance))

    def clean(self):
        super().clean()
        cleaned = self.cleaned_data
        stray = sorted(FORBIDDEN_KEYS & set(self.data))
        if stray:
            raise forms.ValidationError(
                gettext("콘솔에서 바꿀 수 없는 항목입니다: %(f)s") % {"f": ", ".join(stray)}, code="forbidden"
            )
        if "roles" in self.fields and ("roles" in self.changed_data or not self.instance.pk):
            try:
                accounts.check_role_change(self.actor, self.instance, cleaned.get("roles") or [])
            except accounts.AccountRefused as exc:
                self.add_error(exc.field or None, exc.message)
        return cleaned


class AccountChangeForm(_AccountForm):
    class Meta:
        model = User
        fields = ["username", "first_name", "last_name", "email", "is_active"]


class AccountCreationForm(_AccountForm):
    password1 = forms.CharField(label=_("비밀번호"), strip=False, widget=forms.PasswordInput(render_value=False))
    password2 = forms.CharField(label=_("비밀번호 확인"), strip=False, widget=forms.PasswordInput(render_value=False))

    class Meta:
        model = User
        fields = ["username", "first_name", "last_name", "email"]

    def clean(self):
        cleaned = super().clean()
        if self.errors:
            return cleaned
        first, second = cleaned.get("password1"), cleaned.get("password2")
        if first != second:
            self.add_error("password2", gettext("두 비밀번호가 다릅니다."))
            return cleaned
        probe = User(**{f: cleaned.get(f, "") for f in ("username", "first_name", "last_name", "email")})
        try:
            password_validation.validate_password(first, probe)
        except forms.ValidationError as exc:
            self.add_error("password1", exc)
        return cleaned


class PasswordResetForm(forms.Form):
    """Another person's new password. Saving is cmdb.accounts.set_password's job."""

    password1 = forms.CharField(label=_("새 비밀번호"), strip=False, widget=forms.PasswordInput)
    password2 = forms.CharField(label=_("새 비밀번호 확인"), strip=False, widget=forms.PasswordInput)

    def __init__(self, user, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.user = user

    def clean(self):
        super().clean()
        cleaned = self.cleaned_data
        if cleaned.get("password1") != cleaned.get("password2"):
            self.add_error("password2", gettext("두 비밀번호가 다릅니다."))
        elif cleaned.get("password1"):
            try:
                password_validation.validate_password(cleaned["password1"], self.user)
            except forms.ValidationError as exc:
                self.add_error("password1", exc)
        return cleaned


class RoleFilter(admin.SimpleListFilter):
    title = _("역할")
    parameter_name = "role"

    def lookups(self, request, model_admin):
        return [(role, ROLE_LABELS.get(role, role)) for role in ROLES]

    def queryset(self, request, queryset):
        return queryset.filter(groups__name=self.value()) if self.value() else queryset


for model in (User, Group, TokenProxy):
    if admin.site.is_registered(model):
        admin.site.unregister(model)


@admin.register(User)
class AccountAdmin(admin.ModelAdmin):
    form = AccountChangeForm
    add_form = AccountCreationForm
    list_display = ["username", "full_name", "role_list", "is_active", "token_display", "last_login"]
    list_filter = ["is_active", RoleFilter]
    search_fields = ["username", "first_name", "last_name", "email"]
    ordering = ["username"]
    actions = ["deactivate_accounts", "activate_accounts", "issue_tokens", "revoke_tokens", "reset_second_factors"]
    change_password_template = "admin/cmdb/account_password.html"

    def get_queryset(self, request):
        return super().get_queryset(request).prefetch_related("groups").select_related("auth_token")

    # --- permissions: the rules are cmdb.accounts'; these only pick the screen ---

    def has_change_permission(self, request, obj=None) -> bool:
        user = request.user
        if obj is None:
            return user.has_perm("auth.change_user") or user.has_perm(PRIVILEGED_PERMISSION)
        return accounts.may_open(user, obj)

    def has_delete_permission(self, request, obj=None) -> bool:
        return False  # accounts are deactivated, never deleted, so their history stays attributable

    # --- forms ---

    def get_form(self, request, obj=None, change=False, **kwargs):
        if obj is None:
            kwargs["form"] = self.add_form
        form = super().get_form(request, obj, change=change, **kwargs)
        return type(form.__name__, (form,), {"actor": request.user})

    def get_fieldsets(self, request, obj=None):
        if obj is None:
            return [
                (None, {"fields": ["username", "password1", "password2"]}),
                (_("이름과 연락처"), {"fields": ["first_name", "last_name", "email"]}),
                (_("역할"), {"fields": ["roles"]}),
            ]
        first = ["username", "is_active"] + (["password_link"] if accounts.may_manage(request.user, obj) else [])
        return [
            (None, {"fields": first}),
            (_("이름과 연락처"), {"fields": ["first_name", "last_name", "email"]}),
            (_("역할"), {"fields": ["roles"]}),
            (_("상태"), {"fields": ["is_superuser", "is_staff", "token_display", "last_login", "date_joined"]}),
        ]

    def get_readonly_fields(self, request, obj=None):
        if obj is None:
            return []
        fixed = ["password_link", "is_superuser", "is_staff", "token_display", "last_login", "date_joined"]
        if not accounts.may_manage(request.user, obj):
            fixed += ["username", "is_active", "first_name", "last_name", "email"]
        if not accounts.grantable_roles(request.user, obj):
            fixed.append("roles")
        return fixed

    def save_model(self, request, obj, form, change):
        if not change:
            accounts.create_account(request.user, obj, form.cleaned_data["password1"], form.cleaned_data["roles"])
            return
        roles = form.cleaned_data.get("roles") if "roles" in form.changed_data else None
        accounts.update_account(request.user, obj, form.changed_data, roles=roles)

    def save_related(self, request, form, formsets, change):
        """Roles were applied by the service; the form has no relation of its own to save."""

    # --- columns ---

    @admin.display(description=_("이름"))
    def full_name(self, obj):
        return obj.get_full_name() or "—"

    @admin.display(description=_("역할"))
    def role_list(self, obj):
        names = sorted(g.name for g in obj.groups.all() if g.name in ROLES)
        return ", ".join(str(ROLE_LABELS.get(n, n)) for n in names) or "—"

    @admin.display(description=_("API 토큰"))
    def token_display(self, obj):
        token = getattr(obj, "auth_token", None) if obj and obj.pk else None
        if token is None:
            return gettext("없음")
        return gettext("발급됨 (%(when)s)") % {"when": token.created.strftime("%Y-%m-%d %H:%M")}

    @admin.display(description=_("역할"))
    def roles(self, obj):
        """The roles, read-only (shown when the acting user may change none of them)."""
        return self.role_list(obj)

    @admin.display(description=_("비밀번호"))
    def password_link(self, obj):
        url = reverse("admin:auth_user_password_change", args=[obj.pk])
        return format_html('<a href="{}">{}</a>', url, gettext("비밀번호 재설정"))

    # --- actions ---

    def _each(self, request, queryset, operation, done_message: str) -> None:
        done = 0
        for user in queryset:
            try:
                done += bool(operation(request.user, user))
            except accounts.AccountRefused as exc:
                self.message_user(request, f"{user.get_username()}: {exc.message}", messages.ERROR)
        if done:
            self.message_user(request, done_message % {"n": done}, messages.SUCCESS)

    @admin.action(description=_("선택한 계정 비활성화"), permissions=["change"])
    def deactivate_accounts(self, request, queryset):
        done = gettext("%(n)d개 계정을 비활성화했습니다.")
        self._each(request, queryset, lambda actor, user: accounts.set_active(actor, user, False), done)

    @admin.action(description=_("선택한 계정 활성화"), permissions=["change"])
    def activate_accounts(self, request, queryset):
        done = gettext("%(n)d개 계정을 활성화했습니다.")
        self._each(request, queryset, lambda actor, user: accounts.set_active(actor, user, True), done)

    @admin.action(description=_("API 토큰 발급 (값은 표시되지 않음)"), permissions=["change"])
    def issue_tokens(self, request, queryset):
        self._each(request, queryset, accounts.issue_token, gettext("%(n)d개 계정에 API 토큰을 발급했습니다."))

    @admin.action(description=_("API 토큰 폐기"), permissions=["change"])
    def revoke_tokens(self, request, queryset):
        self._each(request, queryset, accounts.revoke_token, gettext("%(n)d개 계정의 API 토큰을 폐기했습니다."))

    @admin.action(description=_("2차 인증 초기화 (기기 분실: 다음 로그인 때 다시 등록)"), permissions=["change"])
    def reset_second_factors(self, request, queryset):
        done = gettext("%(n)d개 계정의 2차 인증을 초기화했습니다. 다음 로그인 때 기기를 다시 등록합니다.")
        self._each(request, queryset, otp.reset_second_factor, done)

    # --- password ---

    def get_urls(self):
        view = self.admin_site.admin_view(self.password_view)
        return [path("<id>/password/", view, name="auth_user_password_change"), *super().get_urls()]

    def password_view(self, request, id):
        user = self.get_object(request, unquote(id))
        if user is None:
            raise Http404
        if not accounts.may_manage(request.user, user):
            raise PermissionDenied
        form = PasswordResetForm(user, request.POST or None)
        if request.method == "POST" and form.is_valid():
            try:
                accounts.set_password(request.user, user, form.cleaned_data["password1"])
            except accounts.AccountRefused as exc:
                raise PermissionDenied(exc.message) from exc
            self.message_user(request, gettext("비밀번호를 재설정했습니다."), messages.SUCCESS)
            return HttpResponseRedirect(reverse("admin:auth_user_change", args=[user.pk]))
        context = {
            **self.admin_site.each_context(request),
            "title": gettext("비밀번호 재설정: %(name)s") % {"name": user.get_username()},
            "form": form,
            "opts": self.opts,
            "original": user,
        }
        return TemplateResponse(request, self.change_password_template, context)


@admin.register(Group)
class RoleAdmin(ReadOnlyAdmin):
    """Roles as the role table defines them: who holds each and what it may do. Read-only."""

    list_display = ["name", "label", "member_count", "permission_count"]
    readonly_fields = ("name", "label", "permission_list", "members")
    fields = readonly_fields
    ordering = ["name"]

    @admin.display(description=_("역할 이름"))
    def label(self, obj):
        return ROLE_LABELS.get(obj.name, "—")

    @admin.display(description=_("구성원 수"))
    def member_count(self, obj):
        return obj.user_set.count()

    @admin.display(description=_("권한 수"))
    def permission_count(self, obj):
        return obj.permissions.count()

    @admin.display(description=_("권한"))
    def permission_list(self, obj):
        return ", ".join(account_audit.perm_names(obj.permissions.select_related("content_type"))) or "—"

    @admin.display(description=_("구성원"))
    def members(self, obj):
        return ", ".join(obj.user_set.order_by("username").values_list("username", flat=True)) or "—"


_stock_password_change = admin.site.password_change


def _password_change_as_self(request, extra_context=None):
    """The admin site's own "change my password" page, attributed to the person using it
    (the change itself is Django's, so the audit receivers record it)."""
    with account_audit.acting_as(request.user):
        return _stock_password_change(request, extra_context)


# The default admin site keeps its own page; only the attribution is added.
admin.site.password_change = _password_change_as_self  # type: ignore[method-assign]
