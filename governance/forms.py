"""Console forms: they validate input shape only; every rule lives in governance/services.py."""

from __future__ import annotations

import datetime
import json
from typing import cast

from django import forms
from django.contrib.auth import get_user_model
from django.utils.translation import gettext_lazy as _

from cmdb.deciders import deciders_for
from cmdb.models import Institution, Server, System

from .attachments import SHA256_ANY_CASE_RE
from .models import SubType


def plan_sha256_field() -> forms.RegexField:
    """The hidden hash of the plan a decision page showed."""
    return forms.RegexField(regex=SHA256_ANY_CASE_RE, required=False, widget=forms.HiddenInput)


def require_text_when(form: forms.Form, choice_field: str, choice: str, text_field: str, message) -> dict:
    """The form's cleaned data, with ``message`` on ``text_field`` when ``choice_field`` is
    ``choice`` but the text is blank (a rejection needs a reason, a global stop too)."""
    data = form.cleaned_data
    if data.get(choice_field) == choice and not (data.get(text_field) or "").strip():
        form.add_error(text_field, message)
    return data


class DecisionForm(forms.Form):
    """Approve or reject one step. ``plan_sha256`` is the hash of the plan the page showed:
    the service refuses the decision (409) if the task's plan is no longer that one."""

    decision = forms.ChoiceField(choices=[("APPROVED", _("승인")), ("REJECTED", _("반려"))])
    comments = forms.CharField(
        label=_("의견"), required=False, max_length=2000, widget=forms.Textarea(attrs={"rows": 2})
    )
    plan_sha256 = plan_sha256_field()

    def clean(self) -> dict:
        super().clean()
        return require_text_when(self, "decision", "REJECTED", "comments", _("반려하려면 사유(의견)를 입력하세요."))


class StopForm(forms.Form):
    reason = forms.CharField(label=_("중지 사유"), max_length=300)


class GlobalStopForm(forms.Form):
    action = forms.ChoiceField(choices=[("engage", _("전체 정지")), ("release", _("정지 해제"))])
    reason = forms.CharField(label=_("사유"), max_length=300, required=False)

    def clean(self) -> dict:
        super().clean()
        # An engaged stop without a reason tells the next operator nothing.
        return require_text_when(self, "action", "engage", "reason", _("전체 정지에는 사유가 필요합니다."))


class ValidationForm(forms.Form):
    verdict = forms.ChoiceField(
        choices=[("approve", _("승인(완료)")), ("rework", _("재작업 지시")), ("takeover", _("직접 인수"))]
    )
    comments = forms.CharField(
        label=_("지시 사항 / 의견"), required=False, max_length=4000, widget=forms.Textarea(attrs={"rows": 3})
    )
    plan_sha256 = plan_sha256_field()


class OwnerPresenceForm(forms.Form):
    deputy = forms.ModelChoiceField(label=_("대리 승인자"), queryset=get_user_model().objects.none(), required=False)
    away = forms.BooleanField(label=_("부재 중"), required=False)

    def __init__(self, *args, owner=None, system: System | None = None, **kwargs) -> None:
        # One form per owned system on the page: ids carry the system so none repeats.
        if system is not None:
            kwargs.setdefault("auto_id", f"id_%s_{system.pk}")
        super().__init__(*args, **kwargs)
        # Only people who can decide this system's steps; anyone else is an invalid choice.
        users = deciders_for(system) if system is not None else get_user_model().objects.none()
        if owner is not None:
            users = users.exclude(pk=owner.pk)  # an owner cannot deputise for themselves
        cast(forms.ModelChoiceField, self.fields["deputy"]).queryset = users
        self.fields["deputy"].error_messages["invalid_choice"] = _(
            "이 시스템의 요청을 승인할 수 있는 사람만 대리 승인자로 지정할 수 있습니다."
        )


class SearchForm(forms.Form):
    q = forms.CharField(label=_("작업 ID / SR 번호 / 제목"), required=False, max_length=100)
    institution = forms.ModelChoiceField(label=_("기관"), queryset=Institution.objects.order_by("name"), required=False)
    person = forms.CharField(label=_("사람 (요청자·승인자)"), required=False, max_length=150)


class StatisticsRangeForm(forms.Form):
    """The statistics page's time range: a recent span or two days, in the server's zone (KST)."""

    RECENT_DAYS = {"7d": 7, "30d": 30, "90d": 90, "365d": 365}
    range = forms.ChoiceField(
        label=_("기간"),
        required=False,
        choices=[
            ("all", _("전체 기간")),
            ("7d", _("최근 7일")),
            ("30d", _("최근 30일")),
            ("90d", _("최근 90일")),
            ("365d", _("최근 1년")),
            ("custom", _("직접 지정")),
        ],
    )
    since = forms.DateField(label=_("시작일 (KST)"), required=False, widget=forms.DateInput(attrs={"type": "date"}))
    until = forms.DateField(label=_("종료일 (KST)"), required=False, widget=forms.DateInput(attrs={"type": "date"}))

    def clean(self):
        data = super().clean() or {}
        since, until = data.get("since"), data.get("until")
        if data.get("range") == "custom" and not (since or until) and not self.errors:
            self.add_error("since", _("직접 지정하려면 시작일이나 종료일을 입력하세요."))
        if since and until and since > until:
            self.add_error("until", _("종료일은 시작일과 같거나 뒤여야 합니다."))
        return data

    def period(self, today: datetime.date) -> tuple[datetime.date | None, datetime.date | None]:
        """(first day, last day), both included; None where the range is open."""
        days = self.RECENT_DAYS.get(self.cleaned_data.get("range") or "")
        if days:
            return today - datetime.timedelta(days=days - 1), today
        if self.cleaned_data.get("range") in ("", "all", None) and not (
            self.cleaned_data.get("since") or self.cleaned_data.get("until")
        ):
            return None, None
        return self.cleaned_data.get("since"), self.cleaned_data.get("until")


# Typed fields per template; anything else goes through the JSON textarea.
TEMPLATE_FIELDS: dict[str, tuple[str, ...]] = {
    SubType.APP_DEPLOY: ("artifact", "version"),
    SubType.STATIC_SYNC: ("artifact",),
    SubType.SERVICE_RESTART: (),
    SubType.SSL_REPLACE: ("cert_file", "key_file", "chain_file", "cert_path", "key_path", "https_port"),
    SubType.DATA_CLEANUP: ("script", "table", "condition"),
}
# Playbook parameter named in a validation error → the typed field that feeds it.
PARAMETER_FIELD = {
    "artifact_sha256": "artifact",
    "artifact": "artifact",
    "version": "version",
    "cert_sha256": "cert_file",
    "key_sha256": "key_file",
    "chain_sha256": "chain_file",
    "cert_path": "cert_path",
    "key_path": "key_path",
    "https_port": "https_port",
    "script": "script",
    "args": "table",
}


class NewRequestForm(forms.Form):
    """ "새 요청": shape only. The system picker offers System.objects.for_user(user); the targets
    are the chosen system's servers; governance.services.submit_task decides the rest."""

    system = forms.ModelChoiceField(label=_("시스템"), queryset=System.objects.none())
    sub_type = forms.ChoiceField(label=_("작업 유형"), choices=SubType.choices)
    title = forms.CharField(label=_("제목"), max_length=200)
    targets = forms.ModelMultipleChoiceField(
        label=_("대상 서버"), queryset=Server.objects.none(), required=False, widget=forms.CheckboxSelectMultiple
    )
    sr_number = forms.CharField(label=_("SR 번호"), max_length=64, required=False)
    emergency = forms.BooleanField(label=_("긴급 (배포 시간 외, 추가 승인)"), required=False)
    raw_request = forms.CharField(
        label=_("요청 내용"), required=False, max_length=10000, widget=forms.Textarea(attrs={"rows": 2})
    )
    artifact = forms.FileField(label=_("배포 파일 (WAR/JAR/압축)"), required=False)
    version = forms.CharField(label=_("버전"), max_length=64, required=False)
    cert_file = forms.FileField(label=_("인증서 (PEM)"), required=False)
    key_file = forms.FileField(label=_("개인 키 (PEM)"), required=False)
    chain_file = forms.FileField(label=_("체인 인증서 (선택)"), required=False)
    cert_path = forms.CharField(label=_("서버의 인증서 경로"), max_length=500, required=False)
    key_path = forms.CharField(label=_("서버의 키 경로"), max_length=500, required=False)
    https_port = forms.IntegerField(label=_("HTTPS 포트"), min_value=1, max_value=65535, required=False)
    script = forms.CharField(label=_("등록된 정리 스크립트"), max_length=64, required=False)
    table = forms.CharField(label=_("테이블"), max_length=200, required=False)
    condition = forms.CharField(label=_("조건"), max_length=200, required=False)
    parameters_json = forms.CharField(
        label=_("기타 파라미터 (JSON)"),
        required=False,
        max_length=20000,
        widget=forms.Textarea(attrs={"rows": 3, "placeholder": '{"rollout": {...}}'}),
    )

    def __init__(self, *args, user=None, system: System | None = None, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        systems = System.objects.for_user(user).select_related("institution").order_by("institution__name", "name")
        cast(forms.ModelChoiceField, self.fields["system"]).queryset = systems
        if system is not None:
            targets = Server.objects.filter(system=system, active=True).order_by("server_id")
            cast(forms.ModelChoiceField, self.fields["targets"]).queryset = targets

    def clean_parameters_json(self) -> dict:
        raw = self.cleaned_data["parameters_json"].strip()
        if not raw:
            return {}
        try:
            value = json.loads(raw)
        except ValueError as exc:
            raise forms.ValidationError(_("JSON 형식이 아닙니다: %(error)s") % {"error": exc}) from exc
        if not isinstance(value, dict):
            raise forms.ValidationError(_("JSON 객체({...})여야 합니다."))
        return value

    def parameters(self) -> dict:
        """The JSON textarea, then the typed fields of the chosen template on top."""
        data = self.cleaned_data
        parameters = dict(data.get("parameters_json") or {})
        sub_type = data["sub_type"]
        if sub_type == SubType.APP_DEPLOY and data["version"]:
            parameters["version"] = data["version"]
        if sub_type == SubType.SSL_REPLACE:
            for name in ("cert_path", "key_path", "https_port"):
                if data[name] not in (None, ""):
                    parameters[name] = data[name]
        if sub_type == SubType.DATA_CLEANUP:
            if data["script"]:
                parameters["script"] = data["script"]
            if data["table"]:
                parameters["args"] = [data["table"], *([data["condition"]] if data["condition"] else [])]
        return parameters

    def uploads(self) -> dict:
        allowed = self._template_fields()
        return {
            name: self.cleaned_data[name]
            for name in ("artifact", "cert_file", "key_file", "chain_file")
            if self.cleaned_data.get(name) and name in allowed
        }

    def _template_fields(self) -> tuple[str, ...]:
        """The typed fields of the chosen template (none before a template is chosen)."""
        return TEMPLATE_FIELDS.get(self.cleaned_data.get("sub_type") or "", ())

    def add_service_error(self, field: str | None, detail: str, errors: dict | None = None) -> None:
        """Show an Invalid from the service next to the field it names; playbook errors
        ({"parameters.artifact_sha256": "required", ...}, or the older "name: message; ..."
        text) next to the typed field that feeds them, the rest under the JSON parameters."""
        if errors:
            for name, message in errors.items():
                top, _dot, parameter = str(name).partition(".")
                if top != "parameters" or not parameter:
                    self.add_error(top if top in self.fields else None, message)
                    continue
                target = PARAMETER_FIELD.get(parameter.split(".", 1)[0])
                if target and target in self._template_fields():
                    self.add_error(target, message)
                else:
                    self.add_error("parameters_json", f"{parameter}: {message}")
            return
        if field == "parameters":
            for part in detail.split("; "):
                name, _sep, message = part.partition(": ")
                target = PARAMETER_FIELD.get(name) if message else None
                if target and target in self._template_fields():
                    self.add_error(target, message)
                else:
                    self.add_error("parameters_json", part)
            return
        self.add_error(field if field in self.fields else None, detail)
