"""The chat commands through the same services as the console (no homeserver needed: the
Matrix and webhook tests show the transport; here each command's rule)."""

from __future__ import annotations

import pytest

from audit.models import AuditEntry
from cmdb.models import SystemOwner
from governance.models import GlobalStop, Status
from intake.messenger import commands
from intake.messenger.accounts import save_identity
from intake.models import ChatChannel, MessengerIdentity, OutboxMessage
from tests.factories import file_task, governance_world

pytestmark = pytest.mark.django_db


def chat(user, localpart: str) -> MessengerIdentity:
    return save_identity(
        "test", MessengerIdentity(user=user, channel=ChatChannel.MATRIX, matrix_id=f"@{localpart}:guardia.local")
    )


def test_help_away_and_deputy_for_the_owner_only():
    world = governance_world()
    owner, deputy, field = chat(world.owner, "owner"), chat(world.deputy, "deputy"), chat(world.requester, "field")
    assert "도움말" in commands.handle(owner, "도움말").text
    assert commands.handle(owner, "부재 on").ok
    assert not SystemOwner.objects.get(system=world.system).owner_is_active
    assert commands.handle(owner, "부재 off").ok
    assert SystemOwner.objects.get(system=world.system).owner_is_active
    SystemOwner.objects.filter(system=world.system).update(deputy=None)
    assert commands.handle(owner, f"대리 지정 {deputy.matrix_id}").ok
    assert SystemOwner.objects.get(system=world.system).deputy == world.deputy
    assert not commands.handle(owner, "대리 지정 @nobody:guardia.local").ok
    # Someone who owns no system changes nothing.
    refused = commands.handle(field, "부재 on")
    assert not refused.ok and "담당" in refused.text
    assert SystemOwner.objects.get(system=world.system).owner_is_active
    assert AuditEntry.objects.filter(action="owner.presence", actor=world.owner.username).count() == 3
    assert AuditEntry.objects.filter(action="messenger.refused", actor=world.requester.username).exists()


def test_global_stop_from_the_chat_for_permitted_users_only():
    world = governance_world()
    lead, pm = chat(world.owner, "owner"), chat(world.pm, "pm")
    refused = commands.handle(lead, "정지 전체 점검")
    assert not refused.ok and not GlobalStop.objects.filter(engaged=True).exists()
    assert commands.handle(pm, "정지 전체 보안 사고 대응").ok
    stop = GlobalStop.objects.get(engaged=True)
    assert stop.engaged_by == world.pm.username and stop.reason == "보안 사고 대응"


def test_a_decision_needs_the_plan_shown_in_the_chat_and_a_foreign_task_is_not_found():
    world = governance_world()
    lead, outsider = chat(world.owner, "owner"), chat(world.outsider, "outsider")
    task = file_task(world, "SERVICE_RESTART")
    OutboxMessage.objects.filter(user=world.owner).delete()  # the request never reached the chat
    refused = commands.handle(lead, f"승인 {task.task_id}")
    assert not refused.ok and f"상태 {task.task_id}" in refused.text
    task.refresh_from_db()
    assert task.status == Status.PENDING_APPROVAL
    # Another institution's lead learns nothing about the task.
    hidden = commands.handle(outsider, f"상태 {task.task_id}")
    assert not hidden.ok and task.title not in hidden.text and "PENDING" not in hidden.text
    assert not commands.handle(lead, "승인 OPS-").ok  # a malformed number names what is missing
    assert not commands.handle(lead, f"반려 {task.task_id}").ok  # a rejection needs its reason


def test_identity_changes_in_the_admin_are_audited(admin_client):
    world = governance_world()
    response = admin_client.post(
        "/admin/intake/messengeridentity/add/",
        {"user": world.owner.pk, "channel": "MATRIX", "matrix_id": "@owner:guardia.local", "enabled": "on"},
    )
    assert response.status_code == 302
    entry = AuditEntry.objects.get(action="messenger.identity", target=world.owner.username)
    assert entry.payload["changed"]["matrix_id"] == ["", "@owner:guardia.local"]
    bad = admin_client.post(
        "/admin/intake/messengeridentity/add/",
        {"user": world.pm.pk, "channel": "MATRIX", "matrix_id": "not a matrix id", "enabled": "on"},
    )
    assert bad.status_code == 200 and "matrix_id" in bad.context["adminform"].form.errors
    assert not MessengerIdentity.objects.filter(user=world.pm).exists()
