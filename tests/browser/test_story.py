"""The demo's story end to end, in Debian chromium against the demo stack with six testbed
servers (the last three are 예산시스템 WAS1-3 of 기획재정부, real sshd and a WAS stand-in):

1. sitemgr, in the field app at a phone viewport, writes "기재부 예산시스템 WAS1번 배포" as
   free text; the parser maps it to 예산시스템 / moef-budget-was1 / APP_DEPLOY and asks for
   the artifact; the app shows the file (and version) inputs, hashes the WAR in the browser,
   shows the plan and files the request;
2. teamlead (the system's owner) gets the approval request with its plan in the messenger
   (a Mattermost-compatible webhook received by a local HTTP server, delivered by the
   `manage.py messenger_bot` process through the outbox) and sees it under "내 승인" in the
   console, where he approves; pm approves the second step;
3. the rolling deploy runs on the testbed; the requester's task page follows it live;
4. pm validates the result package (moef-budget-was1 serves 1.1.0);
5. the requester's "내 요청" shows 완료 without a reload;
6. auditor verifies the chain and exports the report for that task.

Screenshots of each step go to docs/screenshots/story-*.png (the README's story).
"""

from __future__ import annotations

import hashlib
import re
import signal
import subprocess
import sys

import pytest

from tests.browser import demo_stack as ui
from tests.browser.axe import install, violations
from tests.intake.test_messenger_webhooks import Receiver
from tests.live import ROOT
from tests.waiting import wait_until

pytestmark = [pytest.mark.browser, pytest.mark.testbed]

VERSION = "1.1.0"
TARGET = "moef-budget-was1"
REQUEST = "기재부 예산시스템 WAS1번 배포"


# The team lead's messenger: a Mattermost-compatible incoming webhook (the test's receiver).
MAP_TEAMLEAD = """
from django.contrib.auth import get_user_model
from intake.messenger.accounts import save_identity, save_webhook
from intake.models import ChatChannel, ChatWebhook, MessengerIdentity
hook = ChatWebhook(name="story-mattermost", kind=ChatChannel.MATTERMOST, url="{url}")
save_webhook("story", hook, ["name", "kind", "url"], True)
lead = get_user_model().objects.get(username="teamlead")
identity = MessengerIdentity(user=lead, channel=ChatChannel.MATTERMOST, chat_user_id="mm-teamlead", webhook=hook)
save_identity("story", identity)
"""


@pytest.fixture(scope="module")
def story(tmp_path_factory):
    with ui.demo_stack(tmp_path_factory.mktemp("story"), servers=6) as stack:
        yield stack


@pytest.fixture
def messenger(story, tmp_path):
    """The team lead mapped to a webhook on a local receiver, and the bot process delivering."""
    receiver = Receiver()
    ui.manage(story.env, "shell", "-c", MAP_TEAMLEAD.format(url=receiver.url))
    log = open(tmp_path / "messenger_bot.log", "w")
    bot = subprocess.Popen(
        [sys.executable, "manage.py", "messenger_bot"], cwd=ROOT, env=story.env, stdout=log, stderr=subprocess.STDOUT
    )
    try:
        yield receiver
    finally:
        bot.send_signal(signal.SIGTERM)
        bot.wait(timeout=30)
        log.close()
        receiver.close()


def test_the_story_end_to_end(story, messenger, browser, tmp_path):
    from playwright.sync_api import expect

    base = story.base_url
    war = tmp_path / "app.war"
    ui.manage(story.env, "demo_artifact", "--version", VERSION, "-o", str(war))
    phone = ui.new_context(browser, ui.PHONE)
    install(phone)  # axe-core, for the question and its inputs only a script shows
    desk = {name: ui.new_context(browser, ui.DESKTOP) for name in ("teamlead", "pm", "auditor")}
    try:
        # 1. The site manager's request, in words, from the field app.
        ui.login(phone, base, "sitemgr").close()
        field = phone.new_page()
        field.goto(f"{base}/app/new")
        field.check("input[name=mode][value=text]")
        field.fill("#f-raw_request", REQUEST)
        field.click("#preview-button")
        preview = field.locator("#preview")
        expect(preview).to_contain_text("예산시스템")
        expect(preview).to_contain_text(TARGET)
        expect(preview).to_contain_text("배포할 파일(WAR/JAR)을 첨부해 주세요.")
        expect(field.locator("#submit-button")).to_be_hidden()
        artifact = field.locator("#f-text-artifact")
        expect(artifact).to_be_visible()
        artifact.set_input_files(str(war))
        sha = hashlib.sha256(war.read_bytes()).hexdigest()
        expect(field.locator("#h-text-artifact")).to_contain_text(sha)
        assert violations(field) == []
        field.locator("#f-raw_request").scroll_into_view_if_needed()
        ui.screenshot(field, "story-1-field-artifact")
        version = field.locator("#f-text-version")
        if version.is_visible():  # asked only when the parse needs it
            version.fill(VERSION)
        field.click("#preview-button")
        expect(preview).to_contain_text("실행 계획")
        expect(preview).to_contain_text(TARGET)
        expect(field.locator("#submit-button")).to_be_visible()
        ui.screenshot(field, "story-2-field-plan")
        field.click("#submit-button")
        field.wait_for_url(re.compile(r"/app/#req-OPS-"))
        task_id = field.url.split("#req-")[1]
        row = field.locator(f"[data-task-row='{task_id}']")
        expect(row.locator(".badge")).to_have_text("승인 대기")
        ui.wait_live(field)
        ui.mark_document(field)

        # The requester's task page, open beside the list, follows the task live.
        task_page = phone.new_page()
        task_page.goto(f"{base}/console/tasks/{task_id}/")
        expect(task_page.locator("#task-status")).to_have_text("승인 대기")
        ui.wait_live(task_page)
        ui.mark_document(task_page)

        # 2. The owning team lead is asked in the messenger, with the plan's hash and a link;
        #    then he and the PM approve under "내 승인" with the plan in view.
        plan_sha = ui.manage(
            story.env, "shell", "-c",
            f"from governance.models import OpsTask; print(OpsTask.objects.get(task_id='{task_id}').plan_sha256)",
        ).strip().splitlines()[-1]  # fmt: skip
        asked = wait_until(
            lambda: [m["body"]["text"] for m in messenger.received if task_id in m["body"].get("text", "")],
            timeout=60,
            message="the team lead's messenger never got the approval request",
        )
        assert f"실행 계획 {plan_sha[:12]}" in asked[0] and "예산시스템" in asked[0]
        for approver in ("teamlead", "pm"):
            page, card = ui.open_approval(desk[approver], base, approver, task_id)
            expect(card).to_contain_text(TARGET)
            expect(card).to_contain_text("실행 계획")
            expect(card).to_contain_text(sha)  # the artifact the plan deploys, as the phone hashed it
            if approver == "teamlead":
                card.scroll_into_view_if_needed()
                ui.screenshot(page, "story-3-teamlead-approval")
            ui.approve_card(page, card, task_id, f"{approver} 확인")

        # 3. The rolling deploy on the testbed, followed live on the requester's task page.
        expect(task_page.locator("#task-status")).to_have_text("PM 검증 대기", timeout=90_000)
        expect(task_page.locator("#timeline li.live", has_text=TARGET).first).to_be_visible()
        assert ui.same_document(task_page)
        task_page.locator("#timeline").scroll_into_view_if_needed()
        ui.screenshot(task_page, "story-4-task-live")

        # 4. The PM validates the result package: WAS1 serves the new version.
        pm = desk["pm"].new_page()
        pm.goto(f"{base}/console/tasks/{task_id}/validate/")
        expect(pm.locator("#result-counts")).to_contain_text("대상 1대 · 성공 1대 · 실패 0대")
        expect(pm.locator(f"#server-{TARGET} .served-version")).to_have_text(VERSION)
        ui.screenshot(pm, "story-5-pm-validate")
        pm.fill("#id_comments", "결과 확인")
        pm.click("#validation-form button[value=approve]")
        expect(pm.locator("#task-status")).to_have_text("완료")

        # 5. The requester's list says it is done, without a reload.
        expect(row.locator(".badge")).to_have_text("완료", timeout=15_000)
        assert ui.same_document(field)
        ui.screenshot(field, "story-6-field-done")

        # 6. The auditor verifies the chain and exports the report for this task.
        auditor = ui.login(desk["auditor"], base, "auditor")
        auditor.goto(f"{base}/audit/verify/")
        auditor.click("#verify-button")
        expect(auditor.locator("#verify-result.ok")).to_contain_text("정상")
        ui.screenshot(auditor, "story-7-auditor-verify")
        auditor.goto(f"{base}/audit/export/")
        auditor.select_option("#id_format", "csv")
        auditor.fill("#id_task", task_id)
        with auditor.expect_download() as download:
            auditor.click("#export-form button[type=submit]")
        report = tmp_path / "report.csv"
        download.value.save_as(report)
        lines = report.read_text(encoding="utf-8-sig").splitlines()
        entries = [line for line in lines if line and not line.startswith("#")][1:]
        assert entries and all(task_id in line for line in entries), lines[:5]
        assert any("approve" in line or "승인" in line for line in entries), entries
    except Exception:
        ui.keep_failure_pages({"phone": phone, **desk}, story.logs, "story")
        raise
    finally:
        for context in (phone, *desk.values()):
            context.close()
