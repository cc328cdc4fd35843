"""Shared fixtures (keep small); factories live in tests/factories.py."""

from __future__ import annotations

import pytest

# Tests that start sshd, PostgreSQL or Chromium carry that service's marker, so the fast lane
# (scripts/test.sh --fast) can leave them out: set here from the fixtures that start them,
# besides any marker a test module writes itself.
SERVICE_FIXTURES = {"testbed": "testbed", "sshd": "testbed", "pg_url": "postgres", "browser": "browser"}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        for fixture in SERVICE_FIXTURES.keys() & set(getattr(item, "fixturenames", ())):
            item.add_marker(SERVICE_FIXTURES[fixture])


@pytest.fixture(autouse=True)
def _fast_hasher(settings):
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture
def roles(db):
    """The role groups with their permissions (created by cmdb.roles on migrate)."""
    from django.contrib.auth.models import Group

    return {g.name: g for g in Group.objects.all()}
