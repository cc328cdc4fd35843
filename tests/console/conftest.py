"""Console page tests (Django test client, in-memory channel layer): the world they share."""

from __future__ import annotations

import pytest

from tests.factories import governance_world


@pytest.fixture
def console_world(db):
    """The governance world with the owner called "lead" (the console's main user)."""
    world = governance_world(owner_username="lead")
    world.lead = world.owner
    return world
