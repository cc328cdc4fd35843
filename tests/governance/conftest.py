from __future__ import annotations

import pytest

from tests.factories import file_task, governance_world


@pytest.fixture
def world(db):
    return governance_world()


@pytest.fixture
def submit(world, django_capture_on_commit_callbacks):
    """File a request as the field user; on-commit callbacks (execution enqueue) are captured, not run."""

    def _submit(sub_type="APP_DEPLOY", **kwargs):
        kwargs.setdefault("title", "예산시스템 WAS 배포")
        with django_capture_on_commit_callbacks(execute=False):
            return file_task(world, sub_type, **kwargs)

    return _submit
