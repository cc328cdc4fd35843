"""The execution layer's recurring django-q2 Schedules, made once after migrate."""

from __future__ import annotations


def every_minute(name: str, func: str) -> None:
    """One Schedule ``name`` that calls ``func`` (a dotted path) every minute, for ever. An
    existing one is left as it is, so an operator's change to it survives the next migrate."""
    from django_q.models import Schedule

    Schedule.objects.get_or_create(
        name=name,
        defaults={"func": func, "schedule_type": Schedule.MINUTES, "minutes": 1, "repeats": -1},
    )
