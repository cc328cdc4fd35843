"""The owner-mapping check's schedule (django-q2), made to match the settings after every
migrate: monthly by default, weekly or daily by ``GUARDIA_OWNER_CHECK_EVERY``, and removed
when it says ``off``. Running it again changes nothing.
"""

from __future__ import annotations

from datetime import timedelta

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.utils import timezone

OWNER_CHECK = "governance: owner mapping check"
RUN = "governance.owner_check.run_check"
# The first run after the schedule appears: soon, so a new setup sees its report the same day.
FIRST_RUN_AFTER = timedelta(hours=1)


def wanted_type() -> str:
    """The django-q2 schedule type for the setting, or "" for no schedule."""
    from django_q.models import Schedule

    every = str(getattr(settings, "OWNER_CHECK_EVERY", "monthly") or "off").strip().lower()
    types = {"monthly": Schedule.MONTHLY, "weekly": Schedule.WEEKLY, "daily": Schedule.DAILY, "off": ""}
    if every not in types:
        raise ImproperlyConfigured(f"GUARDIA_OWNER_CHECK_EVERY: one of {', '.join(types)}, not {every!r}")
    return types[every]


def ensure_schedules(using: str = "default", **kwargs) -> None:
    """post_migrate: create, update or remove the one schedule (its next run is kept)."""
    from django_q.models import Schedule

    kind = wanted_type()
    rows = Schedule.objects.using(using).filter(name=OWNER_CHECK)
    if not kind:
        rows.delete()
    elif not rows.update(func=RUN, schedule_type=kind):
        rows.create(
            name=OWNER_CHECK, func=RUN, schedule_type=kind, repeats=-1, next_run=timezone.now() + FIRST_RUN_AFTER
        )
