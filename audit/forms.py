from __future__ import annotations

from datetime import datetime, time, timedelta

from django import forms
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from .exports import FORMATS, ExportFilter

FORMAT_LABELS = {"csv": "CSV", "jsonl": "JSON Lines", "pdf": "PDF"}


class DateInput(forms.DateInput):
    """The browser's date picker; the value travels as ISO YYYY-MM-DD."""

    input_type = "date"

    def __init__(self, attrs=None) -> None:
        super().__init__(attrs, format="%Y-%m-%d")


class ExportForm(forms.Form):
    format = forms.ChoiceField(
        label=_("형식"), choices=[(f, FORMAT_LABELS.get(f, f.upper())) for f in FORMATS], initial="csv"
    )
    since = forms.DateField(label=_("시작일"), required=False, widget=DateInput())
    until = forms.DateField(label=_("종료일 (포함)"), required=False, widget=DateInput())
    institution = forms.CharField(label=_("기관 코드"), max_length=64, required=False)
    task = forms.CharField(label=_("작업 번호"), max_length=64, required=False)

    def clean(self):
        super().clean()
        data = self.cleaned_data
        if data.get("since") and data.get("until") and data["since"] > data["until"]:
            raise forms.ValidationError({"until": _("종료일이 시작일보다 빠릅니다.")})
        return data

    def export_filter(self) -> ExportFilter:
        """Days are local (settings.TIME_ZONE); until is inclusive of its whole day."""
        data = self.cleaned_data

        def start(day) -> datetime:
            return timezone.make_aware(datetime.combine(day, time(0, 0)))

        return ExportFilter(
            since=start(data["since"]) if data.get("since") else None,
            until=start(data["until"] + timedelta(days=1)) if data.get("until") else None,
            institution=data.get("institution", "").strip(),
            task=data.get("task", "").strip(),
        )
