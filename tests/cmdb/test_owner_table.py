from __future__ import annotations

import pytest
from django.urls import reverse

from audit.models import AuditEntry
from cmdb.models import SystemOwner
from tests.factories import SystemOwnerFactory, UserFactory

pytestmark = pytest.mark.django_db


def owner_form(row: SystemOwner, **changes) -> dict:
    data = {
        "owner": row.owner_id,
        "deputy": row.deputy_id or "",
        "supervisor": row.supervisor_id,
        "owner_is_active": "on" if row.owner_is_active else "",
        "sla_minutes": row.sla_minutes,
        "auth_level": row.auth_level,
    }
    data.update(changes)
    return {k: v for k, v in data.items() if v != ""}


def test_supervisor_edits_own_row_and_the_change_is_audited_field_by_field(client):
    supervisor = UserFactory(username="sup1", role="supervisor", is_staff=True)
    mine = SystemOwnerFactory(supervisor=supervisor, system__code="MINE", sla_minutes=10)
    new_deputy = UserFactory(username="new-deputy", role="team_lead")
    # a deputy must be able to decide for the system: a team lead already owning a system of its institution
    SystemOwnerFactory(owner=new_deputy, system__institution=mine.system.institution)
    client.force_login(supervisor)

    url = reverse("admin:cmdb_systemowner_change", args=[mine.pk])
    assert client.get(url).status_code == 200
    response = client.post(url, owner_form(mine, deputy=new_deputy.pk, sla_minutes=15))
    assert response.status_code == 302

    mine.refresh_from_db()
    assert mine.deputy == new_deputy and mine.sla_minutes == 15
    entry = AuditEntry.objects.get(action="cmdb.owner_change")
    assert entry.target == "MINE" and entry.actor == "sup1"
    assert entry.payload["changed"]["sla_minutes"] == [10, 15]
    assert entry.payload["changed"]["deputy"][1] == "new-deputy"
    assert set(entry.payload["changed"]) == {"deputy", "sla_minutes"}


def test_supervisor_cannot_edit_an_owner_row_outside_their_systems(client):
    supervisor = UserFactory(username="sup2", role="supervisor", is_staff=True)
    SystemOwnerFactory(supervisor=supervisor, system__code="OWN")
    foreign = SystemOwnerFactory(system__code="FOREIGN", sla_minutes=10)
    before = (foreign.owner_id, foreign.deputy_id, foreign.supervisor_id, foreign.sla_minutes)
    client.force_login(supervisor)

    listing = client.get(reverse("admin:cmdb_systemowner_changelist"))
    assert [r.system.code for r in listing.context["cl"].result_list] == ["OWN"]

    # Another institution's row is "not found", exactly like a row that does not exist.
    url = reverse("admin:cmdb_systemowner_change", args=[foreign.pk])
    assert client.get(url).status_code == 404
    response = client.post(url, owner_form(foreign, supervisor=supervisor.pk, sla_minutes=99))
    assert response.status_code == 404
    assert client.get(reverse("admin:cmdb_systemowner_change", args=[999999])).status_code == 404

    foreign.refresh_from_db()
    assert (foreign.owner_id, foreign.deputy_id, foreign.supervisor_id, foreign.sla_minutes) == before
    assert not AuditEntry.objects.filter(action="cmdb.owner_change").exists()
    # Nor can they delete or add rows: the owner table's structure is the admin's.
    assert client.post(reverse("admin:cmdb_systemowner_delete", args=[foreign.pk]), {"post": "yes"}).status_code == 403
    assert client.get(reverse("admin:cmdb_systemowner_add")).status_code == 403
    assert SystemOwner.objects.filter(pk=foreign.pk).exists()


def test_owner_equal_to_deputy_is_refused_with_the_field_named(client):
    supervisor = UserFactory(role="supervisor", is_staff=True)
    row = SystemOwnerFactory(supervisor=supervisor)
    client.force_login(supervisor)
    response = client.post(
        reverse("admin:cmdb_systemowner_change", args=[row.pk]), owner_form(row, deputy=row.owner_id)
    )
    assert response.status_code == 200
    assert "deputy" in response.context["adminform"].form.errors
    row.refresh_from_db()
    assert row.deputy_id != row.owner_id


def test_admin_role_edits_every_row(admin_client):
    row = SystemOwnerFactory(sla_minutes=10)
    url = reverse("admin:cmdb_systemowner_change", args=[row.pk])
    assert admin_client.post(url, owner_form(row, sla_minutes=20)).status_code == 302
    row.refresh_from_db()
    assert row.sla_minutes == 20
