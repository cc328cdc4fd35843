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


_RESTORED = pytest.StashKey[bool]()


@pytest.fixture(scope="session")
def django_db_keepdb(request, django_db_modify_db_settings, django_db_blocker) -> bool:
    """Start from the migrated database an earlier run saved (tests/migrated_db.py), when its
    migrations are the same; pytest-django's --reuse-db keeps working as before."""
    from tests import migrated_db

    with django_db_blocker.unblock():
        restored = migrated_db.restore()
    request.config.stash[_RESTORED] = restored
    return restored or bool(request.config.getvalue("reuse_db"))


@pytest.fixture(scope="session")
def django_db_setup(django_db_setup, django_db_blocker, request):
    """pytest-django's set-up, then the freshly migrated database is saved for the next run."""
    from tests import migrated_db

    if not request.config.stash.get(_RESTORED, False):
        with django_db_blocker.unblock():
            migrated_db.save()


@pytest.fixture(autouse=True)
def _fast_hasher(settings):
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture
def sqlite_timeout():
    """``sqlite_timeout(seconds)`` sets the SQLite busy timeout of the default connection for
    this test (the connection is reopened with it); the setting is put back afterwards."""
    from django.db import connection

    options = connection.settings_dict.setdefault("OPTIONS", {})
    before = options.get("timeout")

    def set_timeout(seconds: float) -> None:
        options["timeout"] = seconds
        connection.close()

    yield set_timeout
    set_timeout(before)


@pytest.fixture
def roles(db):
    """The role groups with their permissions (created by cmdb.roles on migrate)."""
    from django.contrib.auth.models import Group

    return {g.name: g for g in Group.objects.all()}


@pytest.fixture(autouse=True)
def _default_command_catalogue(request):
    """A transactional test ends with a flush, which empties every table, including the rows a
    data migration wrote (the default command catalogue); post_migrate brings back only the
    roles. Put the migrated defaults back for each database test that follows such a flush."""
    marker = request.node.get_closest_marker("django_db")
    if marker is None and not {"db", "transactional_db"} & set(request.fixturenames):
        return
    transactional = "transactional_db" in request.fixturenames or bool(
        marker and (marker.kwargs.get("transaction") or (marker.args and marker.args[0]))
    )
    request.getfixturevalue("transactional_db" if transactional else "db")
    import importlib

    from django.apps import apps

    from cmdb.models import CommandRule

    if CommandRule.objects.filter(system=None).exists():
        return
    defaults = importlib.import_module("cmdb.migrations.0004_default_command_catalogue")
    tightened = importlib.import_module("cmdb.migrations.0005_tighten_default_grep_and_cut")
    defaults.seed(apps, None)
    tightened.swap(apps, tightened.OLD, tightened.NEW)
