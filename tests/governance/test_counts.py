"""Every dashboard tile and statistics figure, for every role, equals a count made
independently in Python from the rows themselves.

The data is shaped to catch the classic mistakes: tasks with several approval steps (a
join through the steps multiplies rows), one user tied to a task in several ways (owner
and assignee), several statuses and months (a GROUP BY that picks up the default ordering
gives one group per task) and two institutions (a limited view must not see the other).
"""

from __future__ import annotations

import datetime as dt
from collections import Counter

import pytest
from django.urls import reverse
from django.utils import timezone

from governance import reports, services
from governance.models import ApprovalStep, OpsTask, Routing, Status
from tests import factories
from tests.factories import InstitutionFactory, ServerFactory, SystemFactory, SystemOwnerFactory, UserFactory
from tests.module_world import built_once

pytestmark = pytest.mark.django_db

KST = dt.timezone(dt.timedelta(hours=9))

# (status, months ago, lead time in minutes or None, extra steps: (assignee attr, routing))
SHAPES = [
    (Status.PENDING_APPROVAL, 0, None, []),
    (Status.PENDING_APPROVAL, 1, None, [("outsider", Routing.ESCALATED)]),
    (Status.EXECUTING, 1, 7, [("pm", Routing.DIRECT)]),
    (Status.COMPLETED, 2, 30, [("pm", Routing.DIRECT), ("security", Routing.DIRECT)]),
    (Status.COMPLETED, 3, 300, [("deputy", Routing.ESCALATED)]),
    (Status.FAILED_ROLLED_BACK, 3, 12, []),
    (Status.REJECTED, 4, None, [("supervisor", Routing.ESCALATED), ("owner", Routing.DIRECT)]),
    (Status.PENDING_PM_VALIDATION, 5, 45, [("pm", Routing.DIRECT)]),
]


@pytest.fixture(scope="module")
def world(django_db_setup, django_db_blocker):
    """One world and its history for the module: the tests here only read them."""
    with built_once(django_db_blocker, factories.governance_world) as world:
        yield world


@pytest.fixture(scope="module")
def history(world, django_db_blocker):
    with django_db_blocker.unblock():
        return build_history(world)


def build_history(world):
    """Tasks on the world's system and on a second institution's system, each filed through
    submit_task (the enqueueing on commit never runs: the test's transaction is rolled back),
    then aged and moved to a status, with extra steps added. Returns the second field user."""
    other_pm = UserFactory(username="pm2", role="pm")
    other_inst = InstitutionFactory(code="MOIS", name="행정안전부", tier=2, pm=other_pm)
    other_system = SystemFactory(code="GOV24", name="정부24", institution=other_inst)
    SystemOwnerFactory(
        system=other_system,
        owner=world.outsider,
        deputy=UserFactory(username="deputy2", role="team_lead"),
        supervisor=UserFactory(username="supervisor2", role="supervisor"),
    )
    other_field = UserFactory(username="field2", role="site_manager")
    other_inst.site_managers.add(other_field)
    other_servers = [ServerFactory(system=other_system, server_id="gov-1")]
    now = timezone.now()
    for place, (system, requester, servers) in enumerate(
        [(world.system, world.requester, world.servers[:1]), (other_system, other_field, other_servers)]
    ):
        for i, (status, months, lead, extra) in enumerate(SHAPES):
            if place and i % 3 == 2:
                continue  # a different mix on the other institution
            task = services.submit_task(
                requester, system=system, sub_type="MEMORY_CHECK", title=f"점검 {place}-{i}", targets=servers
            )
            created = now - dt.timedelta(days=30 * months, hours=i)
            OpsTask.objects.filter(pk=task.pk).update(
                status=status,
                created_at=created,
                approved_at=created + dt.timedelta(minutes=lead) if lead is not None else None,
            )
            order = task.steps.count()
            for who, routing in extra:
                order += 1
                ApprovalStep.objects.create(
                    task=task, step_order=order, role="pm", routing=routing, assigned_to=getattr(world, who)
                )
    return other_field


def _independent_visible(user) -> list[OpsTask]:
    """Which tasks a user may see, decided row by row in Python."""
    everything = user.has_perm("governance.view_opstask")
    seen = []
    for task in OpsTask.objects.select_related("system__ownership", "system__institution"):
        own = task.system.ownership
        ties = {task.requester_id, own.owner_id, own.deputy_id, own.supervisor_id}
        ties |= {step.assigned_to_id for step in ApprovalStep.objects.filter(task=task)}
        if everything or user.pk in ties:
            seen.append(task)
    return seen


def _expected(tasks: list[OpsTask]) -> dict:
    status = Counter(t.status for t in tasks)
    leads = sorted((t.approved_at - t.created_at) / dt.timedelta(minutes=1) for t in tasks if t.approved_at)

    def pick(share: float) -> float | None:
        return leads[min(len(leads) - 1, round(share * (len(leads) - 1)))] if leads else None

    with_steps = [t for t in tasks if ApprovalStep.objects.filter(task=t).exists()]
    escalated = [t for t in with_steps if ApprovalStep.objects.filter(task=t, routing=Routing.ESCALATED).exists()]
    succeeded = sum(status[s] for s in (Status.PENDING_PM_VALIDATION, Status.COMPLETED))
    failed = sum(status[s] for s in reports.EXECUTION_FAILED)
    months = Counter(timezone.localtime(t.created_at).strftime("%Y-%m") for t in tasks)
    return {
        "tiles": {
            "waiting": sum(status[s] for s in reports.WAITING),
            "in_progress": sum(status[s] for s in reports.IN_PROGRESS),
            "done": sum(status[s] for s in reports.DONE),
            "failed": sum(status[s] for s in reports.FAILED),
        },
        "total": len(tasks),
        "per_institution": Counter(t.system.institution.name for t in tasks),
        "per_category": Counter(t.category for t in tasks),
        "per_month": months,
        "p50": pick(0.5),
        "p90": pick(0.9),
        "samples": len(leads),
        "escalation_rate": len(escalated) / len(with_steps) if with_steps else None,
        "execution_success_rate": succeeded / (succeeded + failed) if succeeded + failed else None,
    }


ROLES = ["requester", "owner", "deputy", "supervisor", "outsider", "pm", "security", "auditor", "admin", "field2"]


@pytest.mark.parametrize("role", ROLES)
def test_every_tile_and_figure_matches_an_independent_count(client, world, history, role):
    user = history if role == "field2" else getattr(world, role)
    visible = _independent_visible(user)
    want = _expected(visible)
    assert visible, "every role in this data set sees at least one task"

    client.force_login(user)
    tiles = client.get(reverse("console:tiles")).json()
    assert tiles == want["tiles"]
    assert sum(tiles.values()) == want["total"]  # every status is in exactly one tile

    stats = reports.statistics(user)
    assert_figures(stats, want)

    page = client.get(reverse("console:statistics"))
    assert page.status_code == 200 and page.context["stats"]["total"] == want["total"]


def assert_figures(stats: dict, want: dict) -> None:
    """Every statistics figure equals the independent count."""
    assert stats["total"] == want["total"]
    assert {r["label"]: r["n"] for r in stats["per_institution"]} == dict(want["per_institution"])
    assert {r["label"]: r["n"] for r in stats["per_category"]} == dict(want["per_category"])
    assert stats["granularity"] == "month"
    drawn = {r["label"]: r["n"] for r in stats["per_period"]}
    assert {k: v for k, v in drawn.items() if v} == dict(want["per_month"])
    assert sum(drawn.values()) == want["total"]
    assert stats["lead_time_samples"] == want["samples"]
    assert (stats["lead_time_p50_min"], stats["lead_time_p90_min"]) == pytest.approx((want["p50"], want["p90"]))
    assert stats["escalation_rate"] == pytest.approx(want["escalation_rate"])
    assert stats["execution_success_rate"] == pytest.approx(want["execution_success_rate"])


def test_a_limited_view_is_one_row_per_task(world, history):
    """The owner is tied to some tasks twice (owner and assignee): still one row each."""
    ids = list(OpsTask.objects.visible_to(world.owner).values_list("pk", flat=True))
    assert len(ids) == len(set(ids)) == len(_independent_visible(world.owner))
    assert "DISTINCT" not in str(OpsTask.objects.visible_to(world.owner).query)
