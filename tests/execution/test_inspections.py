"""Scheduled inspections: pre-approved read-only runs, audited, a ticket when a threshold is crossed."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest
from django.core.exceptions import ValidationError
from django.utils import timezone
from django_q.models import Schedule

from audit.models import AuditEntry
from execution.inspections import SCHEDULE_NAME, run_due
from execution.models import Execution, InspectionSchedule
from governance.models import GlobalStop, OpsTask
from tests.factories import SystemOwnerFactory

pytestmark = [pytest.mark.testbed, pytest.mark.django_db(transaction=True)]


def schedule(servers, kind, thresholds, name=None):
    item = InspectionSchedule.objects.create(
        name=name or f"{kind} check",
        system=servers[0].system,
        kind=kind,
        thresholds=thresholds,
        interval_minutes=60,
        next_run_at=timezone.now() - dt.timedelta(seconds=1),
    )
    item.servers.set(servers)
    return item


def test_the_recurring_runner_is_a_django_q_schedule():
    row = Schedule.objects.get(name=SCHEDULE_NAME)
    assert row.func == "execution.tasks.run_inspections" and row.schedule_type == Schedule.MINUTES


def test_thresholds_are_validated(testbed_cmdb):
    item = InspectionSchedule(name="x", system=testbed_cmdb[0].system, kind="DISK_CHECK", thresholds={})
    with pytest.raises(ValidationError) as info:
        item.full_clean()
    assert "thresholds" in info.value.message_dict


def test_error_count_over_threshold_opens_a_ticket_for_the_owner(testbed_cmdb):
    servers = testbed_cmdb[:3]
    SystemOwnerFactory(system=servers[0].system)
    noisy = servers[1]
    with open(noisy.log_path, "a") as log:
        for i in range(5):
            log.write(f"2026-05-23 10:0{i}:00,000 ERROR: connection pool exhausted ({i})\n")
    errors = schedule(servers, "ERROR_COUNT", {"max_errors": 2})
    memory = schedule(servers, "MEMORY_CHECK", {"max_used_percent": 100}, name="memory")

    assert run_due() == 2

    errors.refresh_from_db()
    assert list(errors.last_result["crossed"]) == [noisy.server_id]
    assert errors.next_run_at > timezone.now() + dt.timedelta(minutes=59)
    ticket = OpsTask.objects.get(channel="SCHEDULE")
    assert list(ticket.targets.values_list("server_id", flat=True)) == [noisy.server_id]
    assert "로그의 오류 줄 5개" in ticket.parameters["findings"]["servers"][noisy.server_id]
    memory.refresh_from_db()
    assert memory.last_result["crossed"] == {} and memory.last_result["outcome"] == "SUCCEEDED"
    # No approval per run, yet every command is audited and the run itself too.
    steps = AuditEntry.objects.filter(action="execution.step", actor="inspection")
    assert steps.count() >= 3 * 3
    assert AuditEntry.objects.filter(action="inspection.run").count() == 2
    assert Execution.objects.filter(inspection=memory).get().summary["findings"][noisy.server_id]["total_mb"] > 0
    assert run_due() == 0  # not due again for an hour


def test_disk_check_and_global_stop(testbed_cmdb):
    servers = testbed_cmdb[:2]
    SystemOwnerFactory(system=servers[0].system)
    item = schedule(servers, "DISK_CHECK", {"min_free_mb": 10**9})  # nobody has a petabyte free
    GlobalStop.objects.update_or_create(id=1, defaults={"engaged": True, "reason": "drill"})
    assert run_due() == 0
    GlobalStop.objects.filter(id=1).update(engaged=False)
    assert run_due() == 1
    item.refresh_from_db()
    assert set(item.last_result["crossed"]) == {s.server_id for s in servers}
    assert Path(item.last_result["crossed"][servers[0].server_id].split(" 여유 공간 ")[0]).is_absolute()
    assert OpsTask.objects.get(channel="SCHEDULE").targets.count() == 2
