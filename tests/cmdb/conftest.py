from __future__ import annotations

import pytest

from tests.factories import UserFactory


@pytest.fixture
def cmdb_admin(db):
    """A user in the admin role (staff, not superuser): proves the group's permissions suffice."""
    return UserFactory(username="cmdb-admin", role="admin", is_staff=True)


@pytest.fixture
def admin_client(client, cmdb_admin):
    client.force_login(cmdb_admin)
    return client
