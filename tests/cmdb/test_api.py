from __future__ import annotations

import pytest
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from tests.factories import (
    CredentialFactory,
    InstitutionFactory,
    ServerFactory,
    SystemFactory,
    SystemOwnerFactory,
    UserFactory,
)

pytestmark = pytest.mark.django_db


@pytest.fixture
def api():
    return APIClient()


def test_token_authenticated_get_works_and_no_token_is_401(api):
    lead = UserFactory(role="team_lead")
    token = Token.objects.create(user=lead)
    owned = SystemOwnerFactory(owner=lead, system__code="OWNED")
    ServerFactory(server_id="owned-was1", system=owned.system)

    assert api.get("/api/v1/cmdb/servers/").status_code == 401
    api.credentials(HTTP_AUTHORIZATION="Token not-a-real-token")
    assert api.get("/api/v1/cmdb/servers/").status_code == 401

    api.credentials(HTTP_AUTHORIZATION=f"Token {token.key}")
    response = api.get("/api/v1/cmdb/servers/")
    assert response.status_code == 200
    assert [s["server_id"] for s in response.json()["results"]] == ["owned-was1"]


def test_reads_are_scoped_to_the_users_systems(api):
    lead = UserFactory(role="team_lead")
    moef = InstitutionFactory(code="MOEF", name="기획재정부")
    moef.set_aliases(["기재부"])
    moef.save()
    mine = SystemOwnerFactory(deputy=lead, system__code="MINE", system__institution=moef)
    other = SystemFactory(code="OTHER")
    ServerFactory(server_id="mine-1", system=mine.system, credential=CredentialFactory(secret="api-Secret-123"))
    ServerFactory(server_id="other-1", system=other)
    api.force_authenticate(lead)

    systems = api.get("/api/v1/cmdb/systems/").json()["results"]
    assert [s["code"] for s in systems] == ["MINE"]
    institutions = api.get("/api/v1/cmdb/institutions/").json()["results"]
    assert [(i["code"], i["aliases"]) for i in institutions] == [("MOEF", ["기재부"])]
    server = api.get("/api/v1/cmdb/servers/").json()["results"][0]
    assert server["has_credential"] is True and "api-Secret-123" not in str(server)
    assert api.get(f"/api/v1/cmdb/systems/{other.pk}/").status_code == 404

    auditor = UserFactory(role="auditor")
    api.force_authenticate(auditor)
    assert {s["code"] for s in api.get("/api/v1/cmdb/systems/").json()["results"]} == {"MINE", "OTHER"}


def test_site_manager_sees_the_systems_of_their_institutions(api):
    manager = UserFactory(role="site_manager")
    site = InstitutionFactory()
    site.site_managers.add(manager)
    SystemFactory(code="SITE-SYS", institution=site)
    SystemFactory(code="ELSEWHERE")
    api.force_authenticate(manager)
    assert [s["code"] for s in api.get("/api/v1/cmdb/systems/").json()["results"]] == ["SITE-SYS"]
    assert api.post("/api/v1/cmdb/systems/", {"code": "X"}).status_code == 405
