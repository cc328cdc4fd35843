"""The directory synchronisation schedule (django-q2), made to match the settings after every
migrate: present while directory login is on with a service bind and
GUARDIA_DIRECTORY_SYNC_HOURS is above 0 (24 by default), gone otherwise.

A login refuses a disabled directory account at once; this run catches the people who never
log in again but could still decide by messenger or API token (see ``manage.py
sync_directory``, which the schedule runs).
"""

from __future__ import annotations

import logging
from datetime import timedelta

from django.conf import settings
from django.core.management import call_command
from django.utils import timezone

log = logging.getLogger(__name__)

SYNC_DIRECTORY = "cmdb: directory account synchronisation"
# The first run after the schedule appears: soon, so a new setup is checked the same day.
FIRST_RUN_AFTER = timedelta(minutes=10)


def wanted_interval_minutes() -> int:
    """Minutes between runs, or 0 when the schedule must not exist."""
    hours = int(getattr(settings, "DIRECTORY_SYNC_HOURS", 24) or 0)
    service_bind = bool(getattr(settings, "AUTH_LDAP_BIND_DN", "")) and not getattr(
        settings, "AUTH_LDAP_BIND_AS_AUTHENTICATING_USER", True
    )
    if not getattr(settings, "LDAP_ENABLED", False) or not service_bind or hours <= 0:
        return 0
    return hours * 60


def ensure_schedules(using: str = "default", **kwargs) -> None:
    """post_migrate: create, update or remove the one schedule; running it again changes nothing."""
    from django_q.models import Schedule

    minutes = wanted_interval_minutes()
    rows = Schedule.objects.using(using).filter(name=SYNC_DIRECTORY)
    if not minutes:
        rows.delete()
        return
    schedule, created = Schedule.objects.using(using).get_or_create(
        name=SYNC_DIRECTORY,
        defaults={
            "func": "cmdb.schedules.sync_directory",
            "schedule_type": Schedule.MINUTES,
            "minutes": minutes,
            "repeats": -1,
            "next_run": timezone.now() + FIRST_RUN_AFTER,
        },
    )
    if not created and (schedule.minutes != minutes or schedule.schedule_type != Schedule.MINUTES):
        schedule.schedule_type, schedule.minutes = Schedule.MINUTES, minutes
        schedule.save(update_fields=["schedule_type", "minutes"])


def sync_directory() -> None:
    """The scheduled run: the management command, so the schedule and the shell share one path
    (a failure raises, and django-q2 records the task as failed)."""
    call_command("sync_directory")
