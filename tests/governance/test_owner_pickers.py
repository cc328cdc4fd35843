"""Owner and deputy pickers offer only people who can decide for the system, and a posted
outsider is refused on save, in the owner's console settings and in the supervisor's admin."""

from __future__ import annotations

import re

import pytest
from django.urls import reverse

from audit.models import AuditEntry
from cmdb.deciders import deciders_for
from cmdb.models import SystemOwner
from tests.factories import SystemFactory, SystemOwnerFactory, UserFactory, governance_world

pytestmark = pytest.mark.django_db


@pytest.fixture
def world():
    return governance_world(owner_username="lead")


def test_deciders_are_in_scope_and_hold_the_decide_permission(world):
    names = set(deciders_for(world.system).values_list("username", flat=True))
    # owner, deputy, supervisor, the institution's PM, the security officer (sees every system)
    assert names == {"lead", "deputy", "supervisor", "pm", "secoff"}
    # the site manager is in scope but may not decide; the auditor sees all but may not decide;
    # a team lead of another institution holds the permission but is out of scope
    assert not names & {"field", "auditor", "otherlead"}


def test_console_picker_lists_only_deciders_and_ids_do_not_repeat(client, world):
    SystemOwnerFactory(system=SystemFactory(code="SECOND", institution=world.inst), owner=world.owner)
    client.force_login(world.owner)
    page = client.get(reverse("console:owner_settings")).content.decode()
    ids = re.findall(r'id="(id_[^"]+)"', page)
    assert len(ids) == len(set(ids)) and len(ids) >= 4
    assert 'id="id_deputy"' not in page
    options = set(re.findall(r'<option value="\d+"[^>]*>([^<]+)</option>', page))
    assert {"deputy", "supervisor", "pm"} <= options
    assert not options & {"lead", "field", "auditor", "otherlead"}


@pytest.mark.parametrize("candidate", ["requester", "outsider", "auditor"])
def test_owner_cannot_save_a_non_decider_as_deputy(client, world, candidate):
    person = getattr(world, candidate)
    client.force_login(world.owner)
    before = AuditEntry.objects.filter(action="owner.presence").count()
    response = client.post(
        reverse("console:owner_settings"), {"system": world.system.pk, "deputy": person.pk}, follow=True
    )
    assert response.status_code == 200
    assert "대리 승인자" in response.content.decode()  # the error names the field
    world.ownership.refresh_from_db()
    assert world.ownership.deputy == world.deputy
    assert AuditEntry.objects.filter(action="owner.presence").count() == before


def test_owner_can_name_an_in_scope_decider(client, world):
    client.force_login(world.owner)
    client.post(reverse("console:owner_settings"), {"system": world.system.pk, "deputy": world.pm.pk})
    world.ownership.refresh_from_db()
    assert world.ownership.deputy == world.pm


def admin_post(row: SystemOwner, **changes) -> dict:
    data = {
        "owner": row.owner_id,
        "deputy": row.deputy_id,
        "supervisor": row.supervisor_id,
        "owner_is_active": "on",
        "sla_minutes": row.sla_minutes,
        "auth_level": row.auth_level,
    }
    data.update(changes)
    return data


@pytest.mark.parametrize(
    "field, candidate", [("deputy", "requester"), ("deputy", "outsider"), ("owner", "requester"), ("deputy", "auditor")]
)
def test_supervisor_cannot_save_a_non_decider_in_the_admin(client, world, field, candidate):
    world.supervisor.is_staff = True
    world.supervisor.save()
    client.force_login(world.supervisor)
    url = reverse("admin:cmdb_systemowner_change", args=[world.ownership.pk])
    form = client.get(url).content.decode()
    picker = re.search(rf'<select name="{field}".*?</select>', form, re.S).group(0)
    assert f'value="{getattr(world, candidate).pk}"' not in picker

    response = client.post(url, admin_post(world.ownership, **{field: getattr(world, candidate).pk}))
    assert response.status_code == 200  # the form again, with the error
    assert response.context["adminform"].form.errors[field]
    world.ownership.refresh_from_db()
    assert (world.ownership.owner, world.ownership.deputy) == (world.owner, world.deputy)
    assert not AuditEntry.objects.filter(action="cmdb.owner_change").exists()


def test_admin_may_name_a_decider_from_outside_the_institution(client, world):
    admin = UserFactory(username="cmdb-admin", role="admin", is_staff=True)
    client.force_login(admin)
    url = reverse("admin:cmdb_systemowner_change", args=[world.ownership.pk])
    assert client.post(url, admin_post(world.ownership, deputy=world.outsider.pk)).status_code == 302
    world.ownership.refresh_from_db()
    assert world.ownership.deputy == world.outsider
    # but never someone who cannot decide at all
    response = client.post(url, admin_post(world.ownership, deputy=world.requester.pk))
    assert response.status_code == 200
    world.ownership.refresh_from_db()
    assert world.ownership.deputy == world.outsider
