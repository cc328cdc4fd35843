"""The directory synchronisation runs on a django-q2 schedule: made after migrate when
directory login is on with a service bind (daily unless GUARDIA_DIRECTORY_SYNC_HOURS says
otherwise), the same one however often migrate runs, removed when directory login is off;
the scheduled call deactivates an account the real directory has disabled."""

from __future__ import annotations

from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.utils.module_loading import import_string
from django_q.models import Schedule

from audit.models import AuditEntry
from cmdb.schedules import SYNC_DIRECTORY, ensure_schedules
from tests.cmdb.test_ldap import PEOPLE_PASSWORDS, configure, directory, login  # noqa: F401 - fixture

User = get_user_model()


def test_schedule_follows_the_settings_and_migrate_makes_it_once(settings, directory, db):  # noqa: F811
    assert not Schedule.objects.filter(name=SYNC_DIRECTORY).exists()  # directory login off in tests
    configure(settings, directory, service_bind=True)
    settings.LDAP_ENABLED = True
    call_command("migrate", verbosity=0)  # post_migrate makes it
    call_command("migrate", verbosity=0)
    schedule = Schedule.objects.get(name=SYNC_DIRECTORY)
    assert (schedule.func, schedule.schedule_type, schedule.minutes, schedule.repeats) == (
        "cmdb.schedules.sync_directory",
        Schedule.MINUTES,
        24 * 60,
        -1,
    )
    first_run = schedule.next_run

    settings.DIRECTORY_SYNC_HOURS = 6
    ensure_schedules()
    schedule.refresh_from_db()
    assert schedule.minutes == 6 * 60 and schedule.next_run == first_run  # changed, not made again
    assert Schedule.objects.filter(name=SYNC_DIRECTORY).count() == 1

    settings.AUTH_LDAP_BIND_AS_AUTHENTICATING_USER = True  # no service bind: nothing to run it with
    ensure_schedules()
    assert not Schedule.objects.filter(name=SYNC_DIRECTORY).exists()
    settings.AUTH_LDAP_BIND_AS_AUTHENTICATING_USER = False
    settings.DIRECTORY_SYNC_HOURS = 0
    ensure_schedules()
    assert not Schedule.objects.filter(name=SYNC_DIRECTORY).exists()


def test_the_scheduled_call_deactivates_a_disabled_directory_account(client, settings, directory, db):  # noqa: F811
    configure(settings, directory, service_bind=True)
    settings.LDAP_ENABLED = True
    assert login(client, "kim", PEOPLE_PASSWORDS["kim"])[0]
    ensure_schedules()
    schedule = Schedule.objects.get(name=SYNC_DIRECTORY)
    directory.set_attribute("kim", "employeeType", "disabled")
    try:
        import_string(schedule.func)()  # what the django-q2 cluster calls
    finally:
        directory.set_attribute("kim", "employeeType", "staff")
    assert not User.objects.get(username="kim").is_active
    assert AuditEntry.objects.filter(action="auth.user_deactivate", target="kim").exists()
