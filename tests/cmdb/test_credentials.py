from __future__ import annotations

import pytest
from django.db import connection
from django.urls import reverse

from audit.models import AuditEntry
from cmdb.models import Credential
from tests.factories import CredentialFactory, UserFactory

pytestmark = pytest.mark.django_db

SECRET = "Tr0ub4dor&3-unique-secret"


def raw_database_text() -> str:
    """Every row of every table, as the database returns it: what a DBA or a dump would see."""
    chunks = []
    with connection.cursor() as cursor:
        for table in connection.introspection.table_names(cursor):
            cursor.execute(f'SELECT * FROM "{table}"')
            chunks.extend(repr(row) for row in cursor.fetchall())
    return "\n".join(chunks)


def test_team_lead_cannot_open_the_credential_admin(client):
    CredentialFactory(name="deploy-key")
    lead = UserFactory(role="team_lead", is_staff=True)  # even with admin access in general
    client.force_login(lead)
    assert client.get(reverse("admin:cmdb_credential_changelist")).status_code == 403
    assert client.get(reverse("admin:cmdb_credential_add")).status_code == 403
    cred = Credential.objects.get(name="deploy-key")
    assert client.get(reverse("admin:cmdb_credential_change", args=[cred.pk])).status_code == 403
    # And a team lead without staff status is sent to the login page, not shown anything.
    lead.is_staff = False
    lead.save()
    response = client.get(reverse("admin:cmdb_credential_changelist"))
    assert response.status_code == 302 and "/login/" in response["Location"]


def test_secret_is_write_only_and_its_change_audited_without_it(admin_client, cmdb_admin):
    response = admin_client.post(
        reverse("admin:cmdb_credential_add"),
        {"name": "was-deploy", "username": "deploy", "kind": "password", "new_password": SECRET},
    )
    assert response.status_code == 302
    cred = Credential.objects.get(name="was-deploy")
    assert cred.reveal() == SECRET

    for url in (reverse("admin:cmdb_credential_changelist"), reverse("admin:cmdb_credential_change", args=[cred.pk])):
        body = admin_client.get(url).content.decode()
        assert SECRET not in body
        assert cred.secret_encrypted not in body and cred.secret_encrypted.split(":")[2][:16] not in body
    change = admin_client.get(reverse("admin:cmdb_credential_change", args=[cred.pk])).content.decode()
    assert 'name="new_password"' in change and "설정됨: 예" in change
    password_input = change.split('name="new_password"')[1].split(">")[0]
    assert "value=" not in password_input  # not even a masked value that would give away the length

    entry = AuditEntry.objects.get(action="cmdb.credential_create")
    assert entry.actor == cmdb_admin.username and entry.payload["material_replaced"] is True
    assert SECRET not in raw_database_text()


def test_failed_submit_does_not_echo_the_secret(admin_client):
    response = admin_client.post(
        reverse("admin:cmdb_credential_add"),
        {"name": "k", "username": "deploy", "kind": "private_key", "new_private_key": SECRET},
    )
    assert response.status_code == 200
    assert "new_private_key" in response.context["adminform"].form.errors
    assert SECRET not in response.content.decode()
    assert not Credential.objects.filter(name="k").exists()


def test_changing_fields_keeps_the_secret_and_audits_field_names(admin_client):
    cred = CredentialFactory(name="keep", secret=SECRET)
    url = reverse("admin:cmdb_credential_change", args=[cred.pk])
    assert admin_client.post(url, {"username": "root2", "kind": "password"}).status_code == 302
    cred.refresh_from_db()
    assert cred.username == "root2" and cred.reveal() == SECRET
    entry = AuditEntry.objects.get(action="cmdb.credential_change")
    assert entry.payload == {"changed": ["username"], "material_replaced": False}

    new_secret = "another-Secret-9876"
    form = {"username": "root2", "kind": "password", "new_password": new_secret}
    assert admin_client.post(url, form).status_code == 302
    cred.refresh_from_db()
    assert cred.reveal() == new_secret
    last = AuditEntry.objects.filter(action="cmdb.credential_change").last()
    assert last.payload == {"changed": [], "material_replaced": True}
    text = raw_database_text()
    assert SECRET not in text and new_secret not in text
