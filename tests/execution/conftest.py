"""Testbed fixtures: one real-sshd testbed per test session, reset between tests."""

from __future__ import annotations

import pytest

from testbed import Testbed


@pytest.fixture(scope="session")
def testbed(tmp_path_factory):
    """Ten real sshd servers on loopback (groups 1 and 2 of five), started once per session."""
    tb = Testbed(tmp_path_factory.mktemp("testbed"))
    tb.up(10)
    yield tb
    tb.down()


@pytest.fixture
def clean_testbed(testbed):
    """The session testbed with every fault off and every server back on 1.0.0."""
    testbed.reset()
    return testbed


@pytest.fixture
def testbed_cmdb(db, clean_testbed):
    """The testbed's servers registered in the CMDB (vault credential, pinned host keys)."""
    from testbed.register import register_testbed

    return register_testbed(clean_testbed.manifest)


@pytest.fixture
def owner_and_pm(testbed_cmdb):
    """The testbed system's owner (team lead) and its institution's PM, who hear of a lost
    worker; the port wait shortened for the restarts a recovery runs."""
    from cmdb.models import Institution, SystemOwner
    from tests.execution.engine_helpers import fast_port_wait
    from tests.factories import UserFactory

    system = testbed_cmdb[0].system
    pm = UserFactory(username="reaper-pm", role="pm")
    Institution.objects.filter(pk=system.institution_id).update(pm=pm)
    owner = UserFactory(username="reaper-owner", role="team_lead")
    SystemOwner.objects.create(system=system, owner=owner, supervisor=UserFactory(role="supervisor"))
    fast_port_wait(testbed_cmdb, 5)
    return owner, pm
