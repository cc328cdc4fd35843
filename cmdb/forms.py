"""Admin forms. The credential form is the only way a secret enters the system by hand,
so it never renders one back: no initial value, no placeholder, no length hint."""

from __future__ import annotations

from django import forms
from django.utils.translation import gettext_lazy as _

from .models import Credential, Institution


class SecretTextarea(forms.Textarea):
    """A textarea that never renders a value, even after a failed submit."""

    def format_value(self, value):
        return None


class CredentialForm(forms.ModelForm):
    new_password = forms.CharField(
        label=_("새 비밀번호"),
        required=False,
        strip=False,
        widget=forms.PasswordInput(render_value=False, attrs={"autocomplete": "new-password"}),
        help_text=_("쓰기 전용입니다. 비워 두면 저장된 비밀값을 유지합니다."),
    )
    new_private_key = forms.CharField(
        label=_("새 개인 키 (PEM)"),
        required=False,
        strip=False,
        widget=SecretTextarea(attrs={"autocomplete": "off", "spellcheck": "false", "rows": 6}),
        help_text=_("쓰기 전용입니다. 비워 두면 저장된 비밀값을 유지합니다."),
    )

    class Meta:
        model = Credential
        fields = ["name", "username", "kind"]

    def clean(self) -> dict:
        super().clean()
        data = self.cleaned_data
        kind = data.get("kind")
        password, key = data.get("new_password") or "", data.get("new_private_key") or ""
        if password and key:
            raise forms.ValidationError(_("비밀번호와 개인 키 중 하나만 입력하십시오"))
        if kind == Credential.Kind.PASSWORD and key:
            self.add_error("new_private_key", _("비밀번호 자격 증명입니다: 비밀번호 칸을 쓰십시오"))
        if kind == Credential.Kind.PRIVATE_KEY and password:
            self.add_error("new_password", _("개인 키 자격 증명입니다: 개인 키 칸을 쓰십시오"))
        if key and "PRIVATE KEY-----" not in key:
            self.add_error("new_private_key", _("PEM 개인 키가 필요합니다 (-----BEGIN ... PRIVATE KEY-----)"))
        if not self.instance.has_secret and not (password or key):
            raise forms.ValidationError(_("새 자격 증명에는 비밀값이 필요합니다"))
        return data

    @property
    def new_secret(self) -> str:
        return self.cleaned_data.get("new_password") or self.cleaned_data.get("new_private_key") or ""


class ServerImportForm(forms.Form):
    file = forms.FileField(label=_("CSV 파일"), help_text=_("UTF-8 또는 CP949, 첫 줄은 머리글"))


class InstitutionForm(forms.ModelForm):
    """Aliases are typed comma-separated and stored as "|a|b|" (see Institution.aliases)."""

    aliases = forms.CharField(
        label=_("별칭"), required=False, max_length=480, help_text=_("comma separated, e.g. 기재부, 재정부")
    )

    class Meta:
        model = Institution
        fields = ["code", "name", "aliases", "tier", "pm", "contact", "site_managers", "gateway"]

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        if self.instance.pk:
            self.initial["aliases"] = ", ".join(self.instance.alias_list)

    def clean_aliases(self) -> str:
        values = [v.strip() for v in self.cleaned_data.get("aliases", "").split(",") if v.strip()]
        if any("|" in v for v in values):
            raise forms.ValidationError(_("별칭에는 '|'를 쓸 수 없습니다"))
        probe = Institution()
        probe.set_aliases(values)
        return probe.aliases
