"""The runtime scan's schedule and command without a testbed: the setting drives the schedule,
and an unknown system code is refused naming the argument."""

from __future__ import annotations

import pytest
from django.core.management import CommandError, call_command
from django_q.models import Schedule

from audit.models import AuditEntry
from execution import profiles

pytestmark = pytest.mark.django_db


def test_schedule_follows_the_setting(settings):
    settings.PROFILE_SCAN_INTERVAL_MINUTES = 1440
    profiles.ensure_schedule()
    profiles.ensure_schedule()
    rows = Schedule.objects.filter(func="execution.profiles.scheduled_scan")
    assert rows.count() == 1 and rows.get().minutes == 1440
    settings.PROFILE_SCAN_INTERVAL_MINUTES = 60
    profiles.ensure_schedule()
    assert rows.get().minutes == 60
    settings.PROFILE_SCAN_INTERVAL_MINUTES = 0
    profiles.ensure_schedule()
    assert not rows.exists()


def test_unknown_system_is_refused_and_nothing_is_scanned():
    with pytest.raises(CommandError, match="system: 알 수 없는 시스템 코드"):
        call_command("scan_servers", "NO-SUCH-SYSTEM")
    assert not AuditEntry.objects.filter(action="execution.env_scan").exists()


def test_schema_paths_and_fields_are_validated_before_they_reach_the_scan():
    from django.core.exceptions import ValidationError

    from cmdb.models import EnvSchema
    from tests.factories import ServerFactory

    server = ServerFactory(app_path="/srv/was one/app", script_path="/srv/was one/scripts")
    schema = EnvSchema(server=server, was_home="/opt/$(reboot)", jdk_path="/opt/jdk'x", must_match="kernel,colour")
    with pytest.raises(ValidationError) as caught:
        schema.full_clean()
    assert {"was_home", "jdk_path", "must_match"} <= set(caught.value.message_dict)
    assert "colour" in " ".join(caught.value.message_dict["must_match"])
    assert not EnvSchema.objects.exists()
    # The server's own paths (spaces included) reach the script shell-quoted.
    command = profiles.scan_command(server, None)
    assert "W='/srv/was one'" in command and "[ -x '/srv/was one/scripts/startup.sh' ]" in command
