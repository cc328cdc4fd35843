"""The monthly owner-mapping check: who on a system's approval ladder (owner, deputy,
supervisor) can no longer be relied on, each supervisor told about their own systems only,
the run in the audit chain, one schedule however often migrate runs, and the console page
scoped to the systems its reader may see."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.contrib.auth.models import Group
from django.core.management import call_command
from django.utils import timezone
from django.utils.module_loading import import_string
from django_q.models import Schedule

from audit.models import AuditEntry
from governance import owner_check, services
from governance.models import Notification
from governance.schedules import OWNER_CHECK, ensure_schedules
from tests.factories import InstitutionFactory, SystemFactory, SystemOwnerFactory, UserFactory


@pytest.fixture
def second(world):
    """Another institution's system whose owner lost the decide permission, and a third,
    healthy system with its own supervisor."""
    inst = InstitutionFactory(code="MOIS", name="행정안전부")
    ownership = SystemOwnerFactory(
        system=SystemFactory(code="CIVIL", name="민원시스템", institution=inst),
        owner=UserFactory(username="owner2", role="team_lead"),
        deputy=UserFactory(username="deputy2", role="team_lead"),
        supervisor=UserFactory(username="supervisor2", role="supervisor"),
    )
    healthy = SystemOwnerFactory(
        system=SystemFactory(code="HR", name="인사시스템", institution=inst),
        owner=UserFactory(username="owner3", role="team_lead"),
        supervisor=UserFactory(username="supervisor3", role="supervisor"),
    )
    ownership.owner.groups.remove(Group.objects.get(name="team_lead"))  # no longer decides
    ownership.owner.groups.add(Group.objects.get_or_create(name="site_manager")[0])
    return ownership, healthy


def notes_of(user) -> list[str]:
    return list(Notification.objects.filter(user=user).values_list("message", flat=True))


def test_inactive_deputy_and_owner_away_too_long_found_and_the_right_supervisor_told(world, second):
    ownership2, healthy = second
    services.set_owner_presence(world.owner, world.system, owner_is_active=False)  # audited: away from now
    world.deputy.is_active = False
    world.deputy.save(update_fields=["is_active"])

    # Within the period an away owner is not reported; the inactive deputy is at once.
    soon = {r.system.code: r for r in owner_check.find_problems(now=timezone.now() + timedelta(days=5))}
    assert [(f.role, f.reasons) for f in soon["BUDGET"].findings] == [("deputy", [{"code": "inactive"}])]

    summary = owner_check.run_check(now=timezone.now() + timedelta(days=20))

    budget, civil = (r for r in owner_check.find_problems(now=timezone.now() + timedelta(days=20)))
    assert [(f.role, f.username, [r["code"] for r in f.reasons]) for f in budget.findings] == [
        ("owner", "owner", ["away"]),
        ("deputy", "deputy", ["inactive"]),
    ]
    assert budget.findings[0].reasons[0]["days"] == 20 and "부재 20일째 (기준 14일)" in budget.findings[0].reason_texts
    assert [(f.role, f.username, f.reasons) for f in civil.findings] == [
        ("owner", "owner2", [{"code": "no_permission"}])
    ]

    told = notes_of(world.supervisor)
    assert len(told) == 1
    assert "BUDGET" in told[0] and "부재 20일째" in told[0] and "대리 승인자 deputy: 비활성 계정" in told[0]
    assert "CIVIL" not in told[0]  # another supervisor's system is not in this list
    (told2,) = notes_of(ownership2.supervisor)
    assert "CIVIL" in told2 and "승인 권한 없음" in told2 and "BUDGET" not in told2
    assert notes_of(healthy.supervisor) == [] and notes_of(world.pm) == []  # nothing to report, nobody told
    assert summary["notified"] == ["supervisor", "supervisor2"]

    # In the chain: one entry per institution with findings (its export filter finds it) and the run.
    findings = {e.institution: e for e in AuditEntry.objects.filter(action="owner_check.findings")}
    assert set(findings) == {"MOEF", "MOIS"}
    assert findings["MOEF"].payload["systems"][0]["findings"][1] == {
        "role": "deputy",
        "user": "deputy",
        "reasons": [{"code": "inactive"}],
    }
    run = AuditEntry.objects.get(action="owner_check.run")
    assert run.result_code == "found" and run.payload["notified"] == ["supervisor", "supervisor2"]


def test_long_idle_and_inactive_supervisor_goes_to_the_pm(world):
    world.supervisor.last_login = timezone.now() - timedelta(days=100)
    world.supervisor.save(update_fields=["last_login"])
    (report,) = owner_check.find_problems()
    assert [(f.role, f.reasons) for f in report.findings] == [
        ("supervisor", [{"code": "idle", "days": 100, "limit": 90, "never": False}])
    ]
    world.supervisor.is_active = False
    world.supervisor.save(update_fields=["is_active"])
    owner_check.run_check()
    assert notes_of(world.supervisor) == []
    (note,) = notes_of(world.pm)  # the supervisor cannot act: the institution's PM is told
    assert "상급자 supervisor: 비활성 계정" in note


def test_nothing_wrong_nothing_sent(world):
    summary = owner_check.run_check()
    assert summary["systems"] == 0 and not Notification.objects.exists()
    assert AuditEntry.objects.get(action="owner_check.run").result_code == "ok"


def test_schedule_made_once_follows_the_setting_and_runs_the_check(world, settings):
    call_command("migrate", verbosity=0)  # post_migrate makes it (the test database has it already)
    call_command("migrate", verbosity=0)
    schedule = Schedule.objects.get(name=OWNER_CHECK)
    assert (schedule.func, schedule.schedule_type, schedule.repeats) == (
        "governance.owner_check.run_check",
        Schedule.MONTHLY,
        -1,
    )
    first_run = schedule.next_run
    settings.OWNER_CHECK_EVERY = "weekly"
    ensure_schedules()
    schedule.refresh_from_db()
    assert schedule.schedule_type == Schedule.WEEKLY and schedule.next_run == first_run
    assert Schedule.objects.filter(name=OWNER_CHECK).count() == 1
    settings.OWNER_CHECK_EVERY = "off"
    ensure_schedules()
    assert not Schedule.objects.filter(name=OWNER_CHECK).exists()
    settings.OWNER_CHECK_EVERY = "hourly"
    with pytest.raises(Exception, match="GUARDIA_OWNER_CHECK_EVERY"):
        ensure_schedules()

    world.deputy.is_active = False
    world.deputy.save(update_fields=["is_active"])
    import_string(schedule.func)()  # what the django-q2 cluster calls
    assert "BUDGET" in notes_of(world.supervisor)[0]


def test_away_set_by_the_supervisor_counts_from_that_change_and_a_never_used_account_is_idle(world, settings):
    from cmdb.services import save_system_owner

    world.ownership.owner_is_active = False
    save_system_owner(world.supervisor, world.ownership, ["owner_is_active"])  # audited cmdb.owner_change
    settings.OWNER_IDLE_DAYS = 10
    world.deputy.date_joined = timezone.now() - timedelta(days=12)
    world.deputy.save(update_fields=["date_joined"])
    later = timezone.now() + timedelta(days=15)
    (report,) = owner_check.find_problems(now=later)
    found = {f.role: f.reasons for f in report.findings}
    assert found["owner"][0] == {"code": "away", "days": 15, "limit": 14}
    assert found["deputy"] == [{"code": "idle", "days": 27, "limit": 10, "never": True}]
    settings.OWNER_AWAY_DAYS = 0  # the away test off: only the login age is left
    (report,) = owner_check.find_problems(now=later)
    assert [r["code"] for f in report.findings for r in f.reasons] == ["idle", "idle", "idle"]
