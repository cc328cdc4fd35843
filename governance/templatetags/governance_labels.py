"""Korean labels for stored machine names in templates: {{ step.role|role_label }},
{{ note.kind|notification_kind_label }} (the tables are governance.labels)."""

from __future__ import annotations

from django import template

from governance import labels

register = template.Library()


@register.filter
def role_label(role: str) -> str:
    return labels.role_label(role)


@register.filter
def notification_kind_label(kind: str) -> str:
    return labels.notification_kind_label(kind)
