"""Must-show: a team lead approves in one browser while a second browser on the task page
sees the status change live (Daphne + Channels over a real Redis, Debian chromium)."""

from __future__ import annotations

import re

import pytest

from tests.browser.demo_stack import login

pytestmark = pytest.mark.browser


def test_approval_in_one_browser_updates_task_page_in_another_live(live_stack, browser):
    from playwright.sync_api import expect

    base = live_stack.base_url
    # Korean browsers, as in the field; the assertions below read the Korean labels.
    watcher_context, lead_context = browser.new_context(locale="ko-KR"), browser.new_context(locale="ko-KR")
    try:
        # B: the requester watches the task page.
        watcher = login(watcher_context, base, "field", live_stack.password)
        watcher.goto(f"{base}/console/tasks/{live_stack.task_id}/")
        status = watcher.locator("#task-status")
        expect(status).to_have_text("승인 대기")
        # The socket must be open before the decision, or there is nothing to observe.
        expect(watcher.locator("#live-state.on").first).to_be_visible(timeout=30_000)
        watcher.evaluate("window.__loadedOnce = 'still-the-same-document'")
        timeline_before = watcher.locator("#timeline li").count()

        # A: the team lead approves on "내 승인".
        lead = login(lead_context, base, "lead", live_stack.password)
        dashboard = lead_context.new_page()  # the lead's dashboard stays open in another tab
        dashboard.goto(f"{base}/console/")
        expect(dashboard.locator("#tile-waiting")).to_have_text("1")
        expect(dashboard.locator("#live-state.on")).to_be_visible(timeout=30_000)
        lead.goto(f"{base}/console/approvals/")
        step = lead.locator(f"#step-{live_stack.step_id}")
        expect(step).to_contain_text(live_stack.task_id)
        step.locator("textarea[name=comments]").fill("확인했습니다")
        step.locator("button[value=APPROVED]").click()
        expect(lead.locator(".messages")).to_contain_text(live_stack.task_id)
        expect(lead.locator("#no-approvals")).to_be_visible()

        # B sees it without reloading: same document, new badge, new timeline entries.
        expect(status).to_have_text("승인 완료", timeout=30_000)
        expect(status).to_have_class(re.compile(r"\bs-APPROVED\b"))
        assert watcher.evaluate("window.__loadedOnce") == "still-the-same-document"
        assert watcher.locator("#timeline li.live").count() >= 1
        assert watcher.locator("#timeline li").count() > timeline_before

        # The dashboard tiles follow too (waiting -> in progress), also without a reload.
        expect(dashboard.locator("#tile-in_progress")).to_have_text("1", timeout=30_000)
        expect(dashboard.locator("#tile-waiting")).to_have_text("0")

        # And the server agrees after a reload: the step was really decided.
        watcher.reload()
        expect(watcher.locator("#task-status")).to_have_text("승인 완료")
        expect(watcher.locator("#timeline")).to_contain_text("확인했습니다")
    finally:
        watcher_context.close()
        lead_context.close()
