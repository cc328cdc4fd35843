"""Console forms: they validate input shape only; every rule lives in governance/services.py."""

from __future__ import annotations

from django import forms
from django.contrib.auth import get_user_model
from django.utils.translation import gettext_lazy as _

from cmdb.models import Institution


class DecisionForm(forms.Form):
    decision = forms.ChoiceField(choices=[("APPROVED", _("승인")), ("REJECTED", _("반려"))])
    comments = forms.CharField(label=_("의견"), required=False, max_length=2000,
                               widget=forms.Textarea(attrs={"rows": 2}))


class StopForm(forms.Form):
    reason = forms.CharField(label=_("중지 사유"), max_length=300)


class GlobalStopForm(forms.Form):
    action = forms.ChoiceField(choices=[("engage", _("전체 정지")), ("release", _("정지 해제"))])
    reason = forms.CharField(label=_("사유"), max_length=300, required=False)

    def clean(self) -> dict:
        data = super().clean()
        # An engaged stop without a reason tells the next operator nothing.
        if data.get("action") == "engage" and not (data.get("reason") or "").strip():
            self.add_error("reason", _("전체 정지에는 사유가 필요합니다."))
        return data


class ValidationForm(forms.Form):
    verdict = forms.ChoiceField(choices=[("approve", _("승인(완료)")), ("rework", _("재작업 지시")),
                                         ("takeover", _("직접 인수"))])
    comments = forms.CharField(label=_("지시 사항 / 의견"), required=False, max_length=4000,
                               widget=forms.Textarea(attrs={"rows": 3}))


class OwnerPresenceForm(forms.Form):
    deputy = forms.ModelChoiceField(label=_("대리 승인자"), queryset=get_user_model().objects.none(), required=False)
    away = forms.BooleanField(label=_("부재 중"), required=False)

    def __init__(self, *args, owner=None, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        users = get_user_model().objects.filter(is_active=True).order_by("username")
        if owner is not None:
            users = users.exclude(pk=owner.pk)  # an owner cannot deputise for themselves
        self.fields["deputy"].queryset = users


class SearchForm(forms.Form):
    q = forms.CharField(label=_("작업 ID / SR 번호 / 제목"), required=False, max_length=100)
    institution = forms.ModelChoiceField(label=_("기관"), queryset=Institution.objects.order_by("name"),
                                         required=False)
    person = forms.CharField(label=_("사람 (요청자·승인자)"), required=False, max_length=150)
