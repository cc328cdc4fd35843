"""Template filters that show the audit record's machine names as Korean labels."""

from __future__ import annotations

from django import template

from audit import labels

register = template.Library()


@register.filter
def action_label(action: str) -> str:
    return labels.action_label(action or "")


@register.filter
def actor_label(actor) -> str:
    return labels.actor_label(actor or "")


@register.filter
def result_label(code) -> str:
    return labels.result_label("" if code is None else str(code))


@register.filter
def break_label(kind: str) -> str:
    return labels.break_label(kind or "")


@register.simple_tag
def action_choices(current: str = "") -> list[tuple[str, str]]:
    """The action filter's options: every labelled action, plus the current value if it is
    an action without a label (so the filter still shows what it filters on)."""
    choices = sorted(((action, str(label)) for action, label in labels.ACTION_LABELS.items()), key=lambda c: c[1])
    if current and current not in labels.ACTION_LABELS:
        choices.append((current, current))
    return choices
