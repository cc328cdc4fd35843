"""The audit schedules, created idempotently after every migrate."""

from __future__ import annotations

from datetime import datetime, time, timedelta

from django.utils import timezone

VERIFY = "audit: daily chain verification"
CHECKPOINT = "audit: hourly signed checkpoint"


def next_local_midnight() -> datetime:
    now = timezone.localtime()
    return timezone.make_aware(datetime.combine(now.date() + timedelta(days=1), time(0, 0)))


def ensure_schedules(**kwargs) -> None:
    from django_q.models import Schedule

    Schedule.objects.using(kwargs.get("using", "default")).get_or_create(
        name=VERIFY,
        defaults={
            "func": "audit.tasks.verify_chain_scheduled",
            "schedule_type": Schedule.DAILY,
            "next_run": next_local_midnight(),  # DAILY keeps the time of day: 00:00 local
            "repeats": -1,
        },
    )
    Schedule.objects.using(kwargs.get("using", "default")).get_or_create(
        name=CHECKPOINT,
        defaults={
            "func": "audit.tasks.hourly_checkpoint",
            "schedule_type": Schedule.HOURLY,
            "next_run": timezone.now() + timedelta(hours=1),
            "repeats": -1,
        },
    )
