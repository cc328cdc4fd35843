"""The intake tests' world: the governance world plus another institution's system the
site manager may not file for."""

from __future__ import annotations

import pytest

from tests.factories import InstitutionFactory, ServerFactory, SystemFactory, SystemOwnerFactory, governance_world


@pytest.fixture
def world(db):
    w = governance_world()
    other = InstitutionFactory(code="MOE", name="교육부", tier=2)
    w.foreign = SystemFactory(code="NEIS", name="나이스", institution=other)
    SystemOwnerFactory(system=w.foreign)
    ServerFactory(system=w.foreign, server_id="neis-was-1")
    return w
