"""Permission matrix: every role × every governance action, through the services every
entry point (console, API, messenger) calls."""

from __future__ import annotations

import pytest

from governance import control, services
from governance.errors import Forbidden, NotFound
from governance.models import Status
from tests.factories import governance_world
from tests.module_world import built_once

pytestmark = pytest.mark.django_db

ROLES = ["requester", "owner", "outsider", "deputy", "pm", "security", "supervisor", "auditor", "admin"]

ALLOWED = {
    # the outsider leads another system: they may file requests, but not for this one
    "submit": {"requester", "owner", "deputy", "pm"},
    "approve": {"owner"},
    "reject": {"owner"},
    "validate": {"pm"},
    "stop": {"pm", "supervisor", "admin"},
    "edit_owner_table": {"owner"},
}


@pytest.fixture(scope="module")
def world(django_db_setup, django_db_blocker):
    """One world for the module (each test's changes are rolled back; none changes its objects)."""
    with built_once(django_db_blocker, governance_world) as world:
        yield world


def perform(action, user, world, submit):
    if action == "submit":
        return services.submit_task(
            user, system=world.system, sub_type="SERVICE_RESTART", title="재시작", targets=world.servers
        )
    task = submit("SERVICE_RESTART")
    step = task.steps.get()
    if action in ("approve", "reject"):
        if action == "approve":
            return services.decide_step(user, step.pk, "APPROVED")
        return services.decide_step(user, step.pk, "REJECTED", "matrix: not now")  # a rejection needs a reason
    if action == "validate":
        services.decide_step(world.owner, step.pk, "APPROVED")
        control.execution_started(task.pk)
        control.execution_finished(task.pk, {"log": "ok"})
        return control.validate_result(user, task.task_id, "approve")
    if action == "stop":
        return control.stop_task(user, task.task_id, "matrix")
    if action == "edit_owner_table":
        return services.set_owner_presence(user, world.system, owner_is_active=False)
    raise AssertionError(action)


@pytest.mark.parametrize("action", list(ALLOWED))
@pytest.mark.parametrize("role", ROLES)
def test_permission_matrix(role, action, world, submit):
    user = getattr(world, role)
    if role in ALLOWED[action]:
        assert perform(action, user, world, submit) is not None
    else:
        # Someone who may not even see the task is told it is not there (404), not 403.
        with pytest.raises((Forbidden, NotFound)):
            perform(action, user, world, submit)


def test_nobody_approves_their_own_request(world, submit):
    """The owner files a request: it routes past them, and they cannot decide it anyway."""
    task = submit("SERVICE_RESTART", requester=world.owner)
    step = task.steps.get()
    step.assigned_to = world.owner  # even if an admin mis-assigned it by hand
    step.save()
    with pytest.raises(Forbidden, match="4-eyes"):
        services.decide_step(world.owner, step.pk, "APPROVED")
    task.refresh_from_db()
    assert task.status == Status.PENDING_APPROVAL


def test_lead_cannot_approve_a_system_they_do_not_own(world, submit):
    task = submit("SERVICE_RESTART")
    with pytest.raises(NotFound):  # they cannot see the task: its step is "not found"
        services.decide_step(world.outsider, task.steps.get().pk, "APPROVED")
    with pytest.raises(Forbidden, match="다른 사람에게 배정되어 있습니다"):  # the deputy sees it, but it is not theirs
        services.decide_step(world.deputy, task.steps.get().pk, "APPROVED")
