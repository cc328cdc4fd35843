"""The look-ups every decision (and every API request) makes, compiled once, answer what the ORM
answers: the caller's token and permissions, the messenger identity a notification goes to, and
the gateway a run is queued on; and a decision still costs no more statements than counted."""

from __future__ import annotations

import pytest
from django.contrib.auth.backends import ModelBackend
from django.contrib.auth.models import Permission
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils.translation import gettext
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from audit.verify import verify_chain
from cmdb.models import Gateway
from execution import gateways
from governance.models import OpsTask, StepStatus
from governance.queries import load_permissions
from intake.messenger import outbox
from intake.models import ChatChannel, MessengerIdentity
from tests.factories import UserFactory

URL = "/api/v1/approval/process"


def fresh(user):
    return type(user).objects.get(pk=user.pk)  # no permission cache


def test_one_query_loads_what_modelbackend_loads(world):
    user = UserFactory(username="mixed", role="team_lead")
    user.user_permissions.add(Permission.objects.get(codename="view_auditentry"))
    for person in (user, world.owner, world.pm, world.requester, world.auditor, world.admin):
        expected = ModelBackend().get_all_permissions(fresh(person))
        loaded = fresh(person)
        with CaptureQueriesContext(connection) as queries:
            load_permissions(loaded)
            assert loaded.has_perm("governance.decide_step") == ("governance.decide_step" in expected)
        assert len(queries) == 1
        assert loaded.get_all_permissions() == expected and expected
    assert "audit.view_auditentry" in fresh(user).get_all_permissions()


def test_an_inactive_user_or_a_revoked_permission_is_not_remembered_across_requests(world):
    gone = fresh(world.owner)
    gone.is_active = False
    load_permissions(gone)
    assert not gone.has_perm("governance.decide_step") and not hasattr(gone, "_perm_cache")
    group = world.owner.groups.get()
    group.permissions.remove(Permission.objects.get(codename="decide_step"))
    again = fresh(world.owner)  # the next request's user object
    load_permissions(again)
    assert not again.has_perm("governance.decide_step")


def test_the_token_look_up_is_drfs_and_refuses_as_drf_does(world):
    key = Token.objects.create(user=world.owner).key
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {key}")
    assert client.get("/api/v1/tasks/").status_code == 200
    client.credentials(HTTP_AUTHORIZATION=f"Token {key[:-1]}x")
    refused = client.get("/api/v1/tasks/")
    assert refused.status_code == 401 and refused.json() == {"detail": gettext("Invalid token.")}  # DRF's text
    world.owner.is_active = False
    world.owner.save(update_fields=["is_active"])
    client.credentials(HTTP_AUTHORIZATION=f"Token {key}")
    inactive = client.get("/api/v1/tasks/")
    assert inactive.status_code == 401 and inactive.json() == {"detail": gettext("User inactive or deleted.")}


def test_the_messenger_identity_is_the_orms_first_enabled_one(world):
    assert outbox._IDENTITY.first(user=world.owner.pk) is None
    MessengerIdentity.objects.create(user=world.owner, channel=ChatChannel.MATRIX, matrix_id="@o:x", enabled=False)
    assert outbox._IDENTITY.first(user=world.owner.pk) is None
    MessengerIdentity.objects.filter(user=world.owner).update(enabled=True)
    found = outbox._IDENTITY.first(user=world.owner.pk)
    expected = MessengerIdentity.objects.select_related("webhook").get(user=world.owner)
    assert (found.pk, found.matrix_id, found.channel, found.updated_at) == (
        expected.pk,
        expected.matrix_id,
        expected.channel,
        expected.updated_at,
    )


def test_the_gateway_follows_the_cmdb_as_it_is_now(world, submit):
    filed = submit("SERVICE_RESTART", targets=world.servers)

    def gateway() -> str:  # as a decision has it: the task just locked with its institution
        return gateways.task_gateway(OpsTask.objects.select_related("system__institution").get(pk=filed.pk))

    assert gateway() == gateways.CENTRAL
    a, b = Gateway.objects.create(name="A"), Gateway.objects.create(name="B")
    world.inst.gateway = a
    world.inst.save(update_fields=["gateway"])
    assert gateway() == "A"
    world.servers[0].gateway = b
    world.servers[0].save(update_fields=["gateway"])
    assert gateway() == "A"  # spanning two: the institution's (the plan then refuses it)
    world.servers[1].gateway = b
    world.servers[1].save(update_fields=["gateway"])
    assert gateway() == "B"


@pytest.mark.parametrize("decision", ["APPROVED", "REJECTED"])
def test_a_decision_through_a_token_costs_its_counted_statements(world, submit, decision):
    task = submit("SERVICE_RESTART", targets=world.servers[:1])
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {Token.objects.create(user=world.owner).key}")
    step = task.steps.get(step_order=1)
    with CaptureQueriesContext(connection) as queries:
        response = client.post(URL, {"step_id": step.pk, "decision": decision, "comments": "사유"}, format="json")
    assert response.status_code == 200, response.content
    sql = [q["sql"] for q in queries.captured_queries]
    # Token 1, permissions 1 (ModelBackend asked 2), then the decision's transaction.
    assert (
        sql[0].startswith('SELECT "authtoken_token"')
        and "auth_permission" in sql[1]
        and sql[2].startswith(("BEGIN", "SAVEPOINT"))
    )
    assert sum("auth_permission" in s for s in sql) == 1
    assert len(sql) <= (19 if decision == "APPROVED" else 16), f"{len(sql)} statements:\n" + "\n".join(sql)
    step.refresh_from_db()
    assert step.status == (StepStatus.APPROVED if decision == "APPROVED" else StepStatus.REJECTED)
    # The task's row: only what the decision and its transition changed is written (not the plan).
    (update,) = [s for s in sql if s.startswith('UPDATE "TB_OPS_TASK"')]
    assert '"status" = ' in update and '"current_approver_id" = NULL' in update and '"plan"' not in update
    saved = OpsTask.objects.get(pk=task.pk)
    assert saved.status == decision and saved.current_approver is None and saved.plan == task.plan
    assert (saved.approved_at is not None) == (decision == "APPROVED")
    assert (saved.finished_at is not None) == (decision == "REJECTED")
    assert saved.playbook_version == task.plan["playbook_version"] and saved.updated_at > task.updated_at
    assert verify_chain().ok
