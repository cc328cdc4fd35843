"""Mattermost/Slack-compatible webhooks against a real HTTP receiver started by the test:
notifications out with decision buttons (through the outbox), callbacks and commands in
through the public URLs, each refusal shown to change nothing."""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import json
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import time_machine
from django.test import Client
from django.utils import timezone
from django_otp.oath import totp
from django_otp.plugins.otp_totp.models import TOTPDevice

from audit.models import AuditEntry
from governance.models import ApprovalStep, Status
from governance.notify import Message, notify
from intake.messenger import outbox
from intake.messenger.accounts import save_identity, save_webhook
from intake.models import ActionToken, ChatChannel, ChatWebhook, MessengerIdentity, OutboxMessage
from tests.factories import file_task, governance_world
from tests.live import ROOT
from tests.waiting import wait_until

pytestmark = pytest.mark.django_db
ACTION = "/messenger/hooks/action/"
COMMAND = "/messenger/hooks/command/"
SECRET = "slack-signing-secret-for-tests"


class Receiver:
    """An incoming-webhook endpoint on loopback that keeps what it was sent."""

    def __init__(self, port: int = 0):
        received = self.received = []

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers["Content-Length"]))
                received.append({"headers": dict(self.headers), "body": json.loads(body)})
                self.send_response(200)
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self.port = self.server.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}/hooks/guardia"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver():
    server = Receiver()
    yield server
    server.close()


def map_person(user, kind: str, chat_user_id: str, hook: ChatWebhook) -> MessengerIdentity:
    return save_identity("test", MessengerIdentity(user=user, channel=kind, chat_user_id=chat_user_id, webhook=hook))


def webhook(name: str, kind: str, url: str) -> ChatWebhook:
    hook = ChatWebhook(name=name, kind=kind, url=url)
    save_webhook("test", hook, ["url"], created=True)
    return hook


def slack_signed(body: bytes, stamp: int | None = None, secret: str = SECRET) -> dict:
    stamp = int(time.time()) if stamp is None else stamp
    digest = hmac.new(secret.encode(), b"v0:%d:" % stamp + body, hashlib.sha256).hexdigest()
    return {"HTTP_X_SLACK_REQUEST_TIMESTAMP": str(stamp), "HTTP_X_SLACK_SIGNATURE": f"v0={digest}"}


def post_json(path: str, data: dict, **headers):
    return Client().post(path, json.dumps(data), content_type="application/json", **headers)


def test_mattermost_buttons_only_the_assigned_approver_once(receiver):
    world = governance_world()
    hook = webhook("mm-budget", ChatChannel.MATTERMOST, receiver.url)
    map_person(world.owner, ChatChannel.MATTERMOST, "mm-owner", hook)
    map_person(world.outsider, ChatChannel.MATTERMOST, "mm-outsider", hook)
    task = file_task(world, "SERVICE_RESTART")
    step = ApprovalStep.objects.get(task=task, step_order=1)
    assert task.risk == "MEDIUM" and step.assigned_to == world.owner

    assert outbox.deliver_webhooks() == 1
    (sent,) = receiver.received
    row = OutboxMessage.objects.get(user=world.owner)
    assert sent["headers"]["Idempotency-Key"] == str(row.key) and row.status == OutboxMessage.Status.SENT
    assert task.task_id in sent["body"]["text"] and f"실행 계획 {task.plan_sha256[:12]}" in sent["body"]["text"]
    approve, reject = sent["body"]["attachments"][0]["actions"]
    assert approve["integration"]["url"].endswith(ACTION) and approve["name"] == "승인" and reject["name"] == "반려"
    token = approve["integration"]["context"]["token"]
    callback = {"user_id": "mm-owner", "context": {"token": token}}

    def unchanged():
        step.refresh_from_db()
        return step.status == "P" and not AuditEntry.objects.filter(action="approval.decided").exists()

    # Another person on the chat server clicks the owner's button; an unknown sender; a forged token.
    assert post_json(ACTION, {**callback, "user_id": "mm-outsider"}).status_code == 403
    assert post_json(ACTION, {**callback, "user_id": "mm-nobody"}).status_code == 403
    forged = token[:-4] + ("AAAA" if not token.endswith("AAAA") else "BBBB")
    assert post_json(ACTION, {**callback, "context": {"token": forged}}).status_code == 403
    assert unchanged() and ActionToken.objects.filter(used_at__isnull=False).count() == 0
    assert AuditEntry.objects.filter(action="messenger.webhook_refused").count() == 3

    # The assigned approver: accepted, recording the plan hash the message showed.
    answer = post_json(ACTION, callback)
    assert answer.status_code == 200 and task.task_id in answer.json()["update"]["message"]
    task.refresh_from_db()
    assert task.status == Status.APPROVED
    decided = AuditEntry.objects.get(action="approval.decided", task=task.task_id)
    assert decided.actor == world.owner.username and decided.payload["plan_sha256"] == task.plan_sha256

    # Replayed, or the other button of the same message: both spent.
    assert post_json(ACTION, callback).status_code == 403
    reject_callback = {"user_id": "mm-owner", "context": reject["integration"]["context"]}
    assert post_json(ACTION, reject_callback).status_code == 403
    assert AuditEntry.objects.filter(action="approval.decided").count() == 1


def test_an_expired_button_is_refused(receiver, settings):
    world = governance_world()
    hook = webhook("mm-budget", ChatChannel.MATTERMOST, receiver.url)
    map_person(world.owner, ChatChannel.MATTERMOST, "mm-owner", hook)
    task = file_task(world, "SERVICE_RESTART")
    outbox.deliver_webhooks()
    token = receiver.received[0]["body"]["attachments"][0]["actions"][0]["integration"]["context"]["token"]
    ActionToken.objects.update(expires_at=task.created_at)
    assert post_json(ACTION, {"user_id": "mm-owner", "context": {"token": token}}).status_code == 403
    assert ApprovalStep.objects.get(task=task, step_order=1).status == "P"


def test_high_risk_message_carries_a_step_up_link_not_buttons(receiver):
    world = governance_world()
    hook = webhook("generic", ChatChannel.WEBHOOK, receiver.url)
    map_person(world.owner, ChatChannel.WEBHOOK, "owner", hook)
    task = file_task(world, "RAW_COMMAND")
    assert task.risk in ("HIGH", "CRITICAL")
    outbox.deliver_webhooks()
    body = receiver.received[0]["body"]
    assert body["task"] == task.task_id and body["callback"] == ""
    (link,) = body["actions"]
    assert "/messenger/decide/" in link["url"] and "token" not in link
    signed = link["url"].rstrip("/").rsplit("/", 1)[1]
    # The link is the owner's: someone else signed in is refused; a button callback cannot use it.
    outsider = Client()
    outsider.force_login(world.outsider)
    assert outsider.get(f"/messenger/decide/{signed}/").status_code == 403
    assert post_json(ACTION, {"user_id": "owner", "token": signed}).status_code == 403
    assert ApprovalStep.objects.get(task=task, step_order=1).status == "P"


def test_slack_signed_commands_and_callbacks(receiver, settings):
    settings.MESSENGER_SLACK_SIGNING_SECRET = SECRET
    world = governance_world()
    hook = webhook("slack", ChatChannel.SLACK, receiver.url)
    map_person(world.owner, ChatChannel.SLACK, "U0OWNER", hook)
    task = file_task(world, "SERVICE_RESTART")
    outbox.deliver_webhooks()
    blocks = receiver.received[0]["body"]["blocks"]
    approve = blocks[1]["elements"][0]
    assert approve["action_id"] == "approved" and approve["text"]["text"] == "승인"

    # A slash command: signed, inside the window, seen once.
    body = urllib.parse.urlencode(
        {"user_id": "U0OWNER", "command": "/guardia", "text": f"상태 {task.task_id}"}
    ).encode()
    form = "application/x-www-form-urlencoded"
    answer = Client().post(COMMAND, body, content_type=form, **slack_signed(body))
    assert answer.status_code == 200 and "승인 대기" in answer.json()["text"]
    old = slack_signed(body, stamp=int(time.time()) - 3600)
    assert Client().post(COMMAND, body, content_type=form, **old).status_code == 401
    forged = slack_signed(body, secret="not-the-secret")
    assert Client().post(COMMAND, body, content_type=form, **forged).status_code == 401
    replayed = slack_signed(body, stamp=int(time.time()) - 5)
    assert Client().post(COMMAND, body, content_type=form, **replayed).status_code == 200
    assert Client().post(COMMAND, body, content_type=form, **replayed).status_code == 401  # the same signature again

    # The approve button's callback, as Slack posts it (form field "payload", signed).
    payload = {
        "type": "block_actions",
        "user": {"id": "U0OWNER"},
        "actions": [{"action_id": "approved", "value": approve["value"]}],
    }
    callback = urllib.parse.urlencode({"payload": json.dumps(payload)}).encode()
    assert Client().post(ACTION, callback, content_type=form, **slack_signed(callback, secret="x")).status_code == 401
    assert ApprovalStep.objects.get(task=task, step_order=1).status == "P"
    assert Client().post(ACTION, callback, content_type=form, **slack_signed(callback)).status_code == 200
    assert ApprovalStep.objects.get(task=task, step_order=1).status == "A"


def test_mattermost_slash_command_needs_the_token(settings):
    settings.MESSENGER_WEBHOOK_TOKEN = "mm-command-token"
    world = governance_world()
    hook = webhook("mm", ChatChannel.MATTERMOST, "http://127.0.0.1:9/unused")
    map_person(world.requester, ChatChannel.MATTERMOST, "mm-field", hook)
    task = file_task(world, "SERVICE_RESTART")
    command = {"user_id": "mm-field", "text": f"상태 {task.task_id}"}
    assert Client().post(COMMAND, {**command, "token": "wrong"}).status_code == 401
    assert Client().post(COMMAND, command).status_code == 401
    answer = Client().post(COMMAND, {**command, "token": "mm-command-token"})
    assert answer.status_code == 200 and task.task_id in answer.json()["text"]
    # A stop from someone without the kill switch: refused in words, nothing stopped.
    answer = Client().post(
        COMMAND, {"user_id": "mm-field", "text": f"정지 {task.task_id}", "token": "mm-command-token"}
    )
    assert "처리할 수 없습니다" in answer.json()["text"]
    task.refresh_from_db()
    assert not task.stop_requested and task.status == Status.PENDING_APPROVAL


def test_receiver_down_the_message_waits_and_goes_once(receiver, settings):
    settings.MESSENGER_RETRY_BASE_SECONDS = 0
    world = governance_world()
    hook = webhook("mm", ChatChannel.MATTERMOST, receiver.url)
    map_person(world.owner, ChatChannel.MATTERMOST, "mm-owner", hook)
    port = receiver.port
    receiver.close()
    notify(world.owner, Message("수신 서버 중단 중 알림", kind="reminder"))
    assert outbox.deliver_webhooks() == 0
    row = OutboxMessage.objects.get(user=world.owner)
    assert row.status == OutboxMessage.Status.PENDING and row.attempts == 1 and row.last_error
    assert AuditEntry.objects.filter(action="messenger.failed", target=world.owner.username).count() == 1
    again = Receiver(port)
    try:
        assert outbox.deliver_webhooks() == 1
        assert outbox.deliver_webhooks() == 0
        assert [r["body"]["text"] for r in again.received] == ["수신 서버 중단 중 알림"]
    finally:
        again.close()
    assert AuditEntry.objects.filter(action="messenger.delivered", target=world.owner.username).count() == 1


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_the_bot_process_delivers_and_stops_cleanly(receiver, settings, tmp_path):
    """`manage.py messenger_bot` as its own process (a site with webhooks only: no Matrix
    homeserver configured) sends what notify() queued, and exits 0 on SIGTERM."""
    world = governance_world()
    hook = webhook("mm", ChatChannel.MATTERMOST, receiver.url)
    map_person(world.owner, ChatChannel.MATTERMOST, "mm-owner", hook)
    notify(world.owner, Message("봇 프로세스가 보낸 알림", kind="info"))
    env = {**os.environ, "GUARDIA_DATABASE_URL": f"sqlite:///{settings.DATABASES['default']['NAME']}"}
    env.pop("GUARDIA_MATRIX_HOMESERVER", None)
    with open(tmp_path / "bot.log", "wb") as log:
        bot = subprocess.Popen(
            [sys.executable, "manage.py", "messenger_bot"], cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT
        )
    try:
        wait_until(lambda: receiver.received, 60, message="the bot process sent nothing")
        wait_until(lambda: not OutboxMessage.objects.backlog().exists(), 20)
    finally:
        bot.send_signal(signal.SIGTERM)
        assert bot.wait(30) == 0, (tmp_path / "bot.log").read_text()
    assert [r["body"]["text"] for r in receiver.received] == ["봇 프로세스가 보낸 알림"]


def test_step_up_page_asks_the_second_factor_when_factors_are_on(receiver, settings):
    settings.OTP_ENABLED = True
    settings.STEP_UP_CHECK = "cmdb.otp.has_fresh_second_factor"
    world = governance_world()
    device = TOTPDevice.objects.create(user=world.owner, name="default", confirmed=True)
    map_person(world.owner, ChatChannel.WEBHOOK, "owner", webhook("generic", ChatChannel.WEBHOOK, receiver.url))
    task = file_task(world, "RAW_COMMAND")
    outbox.deliver_webhooks()
    url = receiver.received[0]["body"]["actions"][0]["url"].split("127.0.0.1:8000", 1)[-1]
    owner = Client()
    owner.force_login(world.owner)
    assert 'name="otp_token"' in owner.get(url).content.decode()
    form = {"decision": "APPROVED", "plan_sha256": task.plan_sha256, "password": "pw-Guardia-1"}
    assert owner.post(url, {**form, "otp_token": "000000"}).status_code == 400
    step = ApprovalStep.objects.get(task=task, step_order=1)
    assert step.status == "P" and AuditEntry.objects.filter(action="messenger.step_up_failed").count() == 1
    # The device throttles after a wrong code: the right one a few seconds later.
    with time_machine.travel(timezone.now() + dt.timedelta(seconds=5), tick=False):
        now = f"{totp(device.bin_key, step=device.step, t0=device.t0, digits=device.digits):0{device.digits}d}"
        assert owner.post(url, {**form, "otp_token": now}).status_code == 200
    step.refresh_from_db()
    assert step.status == "A" and step.actual_approver == world.owner
