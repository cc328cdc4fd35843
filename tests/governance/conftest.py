from __future__ import annotations

from types import SimpleNamespace

import pytest

from governance import services
from tests.factories import InstitutionFactory, ServerFactory, SystemFactory, SystemOwnerFactory, UserFactory
from tests.task_parameters import valid_parameters


@pytest.fixture
def world(db):
    """One institution (tier 2) with a PM, one system with owner/deputy/supervisor, and the other roles."""
    pm = UserFactory(username="pm", role="pm")
    inst = InstitutionFactory(code="MOEF", name="기획재정부", tier=2, pm=pm)
    system = SystemFactory(code="BUDGET", name="예산시스템", institution=inst)
    ownership = SystemOwnerFactory(
        system=system,
        owner=UserFactory(username="owner", role="team_lead"),
        deputy=UserFactory(username="deputy", role="team_lead"),
        supervisor=UserFactory(username="supervisor", role="supervisor"),
    )
    requester = UserFactory(username="field", role="site_manager")
    inst.site_managers.add(requester)
    return SimpleNamespace(
        inst=inst, system=system, ownership=ownership, pm=pm,
        owner=ownership.owner, deputy=ownership.deputy, supervisor=ownership.supervisor,
        requester=requester,
        security=UserFactory(username="secoff", role="security_officer"),
        auditor=UserFactory(username="auditor", role="auditor"),
        admin=UserFactory(username="admin", role="admin"),
        outsider=UserFactory(username="otherlead", role="team_lead"),
        servers=[ServerFactory(system=system, server_id=f"was-{i}") for i in (1, 2)],
    )


@pytest.fixture
def submit(world, django_capture_on_commit_callbacks):
    """File a request as the field user; on-commit callbacks (execution enqueue) are captured, not run."""

    def _submit(sub_type="APP_DEPLOY", **kwargs):
        kwargs.setdefault("title", "예산시스템 WAS 배포")
        kwargs.setdefault("targets", world.servers)
        kwargs.setdefault("parameters", valid_parameters(sub_type))
        requester = kwargs.pop("requester", world.requester)
        with django_capture_on_commit_callbacks(execute=False):
            return services.submit_task(requester, system=kwargs.pop("system", world.system), sub_type=sub_type,
                                        **kwargs)

    return _submit
