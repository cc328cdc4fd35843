"""Access basics: login throttling (django-axes) and the client-network allowlist."""

from __future__ import annotations

import pytest
from django.core.exceptions import ImproperlyConfigured
from django.test import Client

from audit.models import AuditEntry
from guardia.middleware import parse_networks
from tests.factories import UserFactory

LOGIN = "/accounts/login/"


def test_repeated_failures_lock_the_account_even_for_the_right_password(db, settings):
    settings.AXES_FAILURE_LIMIT = 3
    UserFactory(username="lead", role="team_lead")
    client = Client()
    for _ in range(3):
        client.post(LOGIN, {"username": "lead", "password": "wrong"}, REMOTE_ADDR="10.0.0.7")
    locked = client.post(LOGIN, {"username": "lead", "password": "pw-Guardia-1"}, REMOTE_ADDR="10.0.0.7")
    assert locked.status_code in (403, 429)
    assert "_auth_user_id" not in client.session
    assert AuditEntry.objects.filter(action__icontains="login_failed").count() >= 3
    # Another address is a different (username, address) pair and may still log in.
    other = Client()
    response = other.post(LOGIN, {"username": "lead", "password": "pw-Guardia-1"}, REMOTE_ADDR="10.0.0.8")
    assert response.status_code == 302 and "_auth_user_id" in other.session


def test_allowlist_admits_bastion_ranges_only(db, settings):
    settings.CLIENT_ALLOWLIST = ["10.10.0.0/16", "192.168.5.0/24"]
    client = Client()  # middleware is built per client handler, after the setting changed
    assert client.get(LOGIN, REMOTE_ADDR="10.10.3.4").status_code == 200
    assert client.get(LOGIN, REMOTE_ADDR="192.168.5.9").status_code == 200
    refused = client.get(LOGIN, REMOTE_ADDR="172.16.0.1")
    assert refused.status_code == 403 and b"client network not allowed" in refused.content
    assert client.get("/api/v1/tasks/", REMOTE_ADDR="8.8.8.8").status_code == 403


def test_bad_allowlist_entry_names_itself():
    with pytest.raises(ImproperlyConfigured, match="'10.10.0.0/33'"):
        parse_networks(["10.10.0.0/33"])
