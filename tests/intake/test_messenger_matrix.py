"""The GUARDiA bot against a real Synapse started by the test (tests/synapse.py), the
real sshd testbed for the deploy that is stopped from the chat, and real people typing in
their direct rooms (over the client-server API)."""

from __future__ import annotations

import re
import threading

import pytest
from django.test import Client

from audit.models import AuditEntry
from cmdb.models import Institution, SystemOwner
from execution.services import run_task
from governance import services
from governance.models import ApprovalStep, OpsTask, Status
from governance.notify import Message, notify
from intake.messenger.accounts import save_identity
from intake.models import ChatChannel, MessengerIdentity, OutboxMessage
from tests.execution.conftest import clean_testbed, testbed, testbed_cmdb  # noqa: F401 - the session sshd testbed
from tests.execution.engine_helpers import deploy_parameters, fast_port_wait, startup_hanging
from tests.factories import UserFactory
from tests.synapse import BotThread, Person, synapse  # noqa: F401 - the session Synapse
from tests.waiting import wait_until

pytestmark = [pytest.mark.testbed, pytest.mark.slow, pytest.mark.django_db(transaction=True)]
LINK = re.compile(r"https?://\S+/messenger/decide/(\S+)/")


def on_chat(synapse, user, localpart: str) -> Person:  # noqa: F811 - a parameter, not the fixture
    person = Person(synapse, localpart)
    save_identity("test", MessengerIdentity(user=user, channel=ChatChannel.MATRIX, matrix_id=person.matrix_id))
    return person


def team(servers, synapse):  # noqa: F811
    system = servers[0].system
    Institution.objects.filter(pk=system.institution_id).update(tier=2)
    type(system).objects.filter(pk=system.pk).update(name="테스트베드 업무시스템")  # no "WAS" to read as a server
    field = UserFactory(username="mx-field", role="site_manager")
    system.institution.site_managers.add(field)
    lead = UserFactory(username="mx-lead", role="team_lead")
    pm = UserFactory(username="mx-pm", role="pm")
    Institution.objects.filter(pk=system.institution_id).update(pm=pm)
    SystemOwner.objects.create(system=system, owner=lead, supervisor=UserFactory(username="mx-sup", role="supervisor"))
    other = UserFactory(username="mx-other", role="team_lead")
    return {
        name: (user, on_chat(synapse, user, user.username))
        for name, user in {"field": field, "lead": lead, "pm": pm, "other": other}.items()
    }


def test_chat_request_approval_step_up_and_stop(synapse, testbed, testbed_cmdb):  # noqa: F811
    servers = sorted(testbed_cmdb, key=lambda s: s.server_id)
    fast_port_wait(servers, 5)
    people = team(servers, synapse)
    field, field_chat = people["field"]
    lead, lead_chat = people["lead"]
    pm, pm_chat = people["pm"]
    other, other_chat = people["other"]
    with BotThread(synapse) as bot:
        # A request in words from the site manager's identity; the clarification is
        # answered in the same room.
        field_chat.open_direct_room(bot.user_id)
        field_chat.say("테스트베드 업무시스템 좀 봐주세요")
        field_chat.wait_for("확인이 필요합니다")
        field_chat.say("srv-01 재시작해 주세요")
        filed = field_chat.wait_for("접수했습니다")
        task_id = re.search(r"OPS-[0-9-]+", filed["body"]).group(0)
        task = OpsTask.objects.get(task_id=task_id)
        assert task.requester == field and task.channel == "MESSENGER" and task.risk == "MEDIUM"
        assert task.status == Status.PENDING_APPROVAL and task.current_approver == lead

        # The team lead's identity receives the approval request with the plan.
        request = lead_chat.wait_for("승인 요청")
        assert task_id in request["body"] and f"실행 계획 {task.plan_sha256[:12]}" in request["body"]
        assert f"승인 {task_id}" in request["body"]

        # Another team lead's identity: refused, nothing decided.
        other_chat.open_direct_room(bot.user_id)
        other_chat.say(f"승인 {task_id}")
        assert "처리할 수 없습니다" in other_chat.wait_for(task_id)["body"]
        # Someone with no GUARDiA identity, let into the lead's room: refused as well.
        stranger = Person(synapse, "mx-stranger")
        lead_chat.invite(stranger.matrix_id)
        stranger.sync()
        stranger.say(f"승인 {task_id}", room_id=lead_chat.direct_room)
        assert "연결되지 않은" in stranger.wait_for("GUARDiA")["body"]
        step = ApprovalStep.objects.get(task=task, step_order=1)
        assert step.status == "P" and not AuditEntry.objects.filter(action="approval.decided", task=task_id).exists()
        assert AuditEntry.objects.filter(action="messenger.refused").count() >= 2

        # The assigned approver: accepted, and the decision records the plan it was shown.
        lead_chat.say(f"승인 {task_id}")
        assert "승인 처리했습니다" in lead_chat.wait_for("처리했습니다")["body"]
        task.refresh_from_db()
        assert task.status == Status.APPROVED
        decided = AuditEntry.objects.get(action="approval.decided", task=task_id)
        assert decided.payload["plan_sha256"] == task.plan_sha256 and decided.actor == "mx-lead"
        field_chat.wait_for(f"승인 완료, 실행 대기: {task_id}")

        # A high-risk deploy: the chat answers with a step-up link instead of deciding.
        deploy = services.submit_task(
            field,
            system=servers[0].system,
            sub_type="APP_DEPLOY",
            title="테스트베드 배포",
            targets=servers,
            parameters=deploy_parameters("2.0.0", script_timeout=60),
        )
        lead_chat.wait_for(f"[{deploy.task_id}]")
        lead_chat.say(f"승인 {deploy.task_id}")
        link = lead_chat.wait_for("/messenger/decide/")
        signed = LINK.search(link["body"]).group(1)
        deploy.refresh_from_db()
        assert deploy.status == Status.PENDING_APPROVAL and deploy.steps.get(step_order=1).status == "P"
        console = Client()
        console.force_login(lead)
        url = f"/messenger/decide/{signed}/"
        page = console.get(url)
        assert page.status_code == 200 and deploy.plan_sha256 in page.content.decode()
        form = {"decision": "APPROVED", "plan_sha256": deploy.plan_sha256}
        assert console.post(url, {**form, "password": "wrong"}).status_code == 400
        assert deploy.steps.get(step_order=1).status == "P"
        assert console.post(url, {**form, "password": "pw-Guardia-1"}).status_code == 200
        assert deploy.steps.get(step_order=1).status == "A"
        assert console.post(url, {**form, "password": "pw-Guardia-1"}).status_code == 403  # single use
        services.decide_step(pm, deploy.steps.get(step_order=2).pk, "APPROVED", plan_sha256=deploy.plan_sha256)

        # "정지 OPS-…" from the PM stops the running deploy on the sshd testbed; the site
        # manager is told the result.
        hung = servers[7]
        testbed.fault(hung.server_id, "hang")
        outcome: list[str] = []
        runner = threading.Thread(target=lambda: outcome.append(run_task(deploy.pk)))
        runner.start()
        try:
            wait_until(startup_hanging(testbed, hung), timeout=60)
            pm_chat.open_direct_room(bot.user_id)
            pm_chat.say(f"정지 {deploy.task_id} 현장 요청으로 중단")
            assert "정지 요청" in pm_chat.wait_for("정지 요청")["body"]
        finally:
            runner.join(90)
        assert outcome == ["ABORTED"]
        told = field_chat.wait_for(f"{deploy.task_id}: ")
        assert "현장 요청으로 중단" in told["body"] or "kill" in told["body"].lower()
        assert AuditEntry.objects.filter(action="killswitch.task", task=deploy.task_id, actor="mx-pm").exists()
        # Every notification was delivered once and audited.
        wait_until(lambda: not OutboxMessage.objects.backlog().exists(), 20, message="the outbox did not drain")
    delivered = AuditEntry.objects.filter(action="messenger.delivered").count()
    assert delivered == OutboxMessage.objects.count()


def test_homeserver_down_mid_way_every_notification_arrives_once(synapse, settings, admin_client):  # noqa: F811
    settings.MESSENGER_RETRY_BASE_SECONDS = 0.2
    settings.MESSENGER_RETRY_MAX_SECONDS = 1
    lead = UserFactory(username="mx-down", role="team_lead")
    chat = on_chat(synapse, lead, "mx-down")
    with BotThread(synapse) as bot:
        notify(lead, Message("연결 확인 알림", kind="info"))
        chat.open_direct_room(bot.user_id)
        chat.wait_for("연결 확인 알림")

        synapse.stop()
        texts = [f"중단 중 알림 {n}" for n in range(5)]
        for text in texts:
            notify(lead, Message(text, kind="reminder"))
        wait_until(lambda: OutboxMessage.objects.backlog().filter(attempts__gt=0).exists(), 20)
        assert OutboxMessage.objects.backlog().count() == 5  # kept, not dropped
        assert AuditEntry.objects.filter(action="messenger.failed").exists()
        backlog = admin_client.get("/admin/intake/outboxmessage/?backlog=waiting")
        assert backlog.status_code == 200 and "중단 중 알림 4" in backlog.content.decode()

        synapse.start()
        wait_until(lambda: not OutboxMessage.objects.backlog().exists(), 60, message="the backlog did not drain")
        for text in texts:
            chat.wait_for(text)
        # A send repeated after a crash (sent, but not yet recorded) carries the same
        # transaction id: the homeserver shows it once.
        again = OutboxMessage.objects.get(text=texts[0])
        OutboxMessage.objects.filter(pk=again.pk).update(
            status=OutboxMessage.Status.PENDING, next_attempt_at=again.created_at
        )
        wait_until(lambda: OutboxMessage.objects.get(pk=again.pk).status == OutboxMessage.Status.SENT, 20)
        chat.sync(timeout_ms=500)
    assert [len(chat.bodies(text)) for text in texts] == [1] * 5
    delivered = AuditEntry.objects.filter(action="messenger.delivered", target="mx-down")
    assert delivered.count() == 6 + 1  # six notifications, one of them sent again (deduplicated)
