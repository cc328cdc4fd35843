from __future__ import annotations

import pytest

from governance import services
from tests.factories import governance_world
from tests.task_parameters import valid_parameters


@pytest.fixture
def world(db):
    return governance_world()


@pytest.fixture
def submit(world, django_capture_on_commit_callbacks):
    """File a request as the field user; on-commit callbacks (execution enqueue) are captured, not run."""

    def _submit(sub_type="APP_DEPLOY", **kwargs):
        kwargs.setdefault("title", "예산시스템 WAS 배포")
        kwargs.setdefault("targets", world.servers)
        kwargs.setdefault("parameters", valid_parameters(sub_type))
        requester = kwargs.pop("requester", world.requester)
        with django_capture_on_commit_callbacks(execute=False):
            return services.submit_task(
                requester, system=kwargs.pop("system", world.system), sub_type=sub_type, **kwargs
            )

    return _submit
