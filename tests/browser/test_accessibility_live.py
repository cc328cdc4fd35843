"""Live changes reach screen readers: a decision made in one browser appears as one polite
summary in the task page's aria-live region in another (Daphne + Channels over a real Redis,
Debian chromium), the connection indicator is a status outside the heading, and the tiles
on the dashboard are announced once when their counts change."""

from __future__ import annotations

import re

import pytest

from tests.browser.axe import install, violations
from tests.browser.demo_stack import login

pytestmark = pytest.mark.browser


def test_a_live_status_change_is_announced_politely(live_stack, browser):
    from playwright.sync_api import expect

    base = live_stack.base_url
    watcher_context, lead_context = browser.new_context(locale="ko-KR"), browser.new_context(locale="ko-KR")
    install(watcher_context)
    try:
        watcher = login(watcher_context, base, "field", live_stack.password)
        watcher.goto(f"{base}/console/tasks/{live_stack.task_id}/")
        expect(watcher.locator("#live-state.on")).to_be_visible(timeout=30_000)
        # The indicator is a status of its own, not part of the page heading.
        assert watcher.locator("h1 #live-state").count() == 0
        assert watcher.locator("#live-state").get_attribute("role") == "status"
        assert "실시간" not in watcher.locator("h1").inner_text()
        announcer = watcher.locator("#live-announcer")
        assert announcer.get_attribute("aria-live") == "polite"
        assert announcer.inner_text().strip() == ""
        timeline_before = watcher.locator("#timeline li").count()

        dashboard = login(lead_context, base, "lead", live_stack.password)
        install(lead_context)
        dashboard.reload()
        expect(dashboard.locator("#live-state.on")).to_be_visible(timeout=30_000)
        lead = lead_context.new_page()
        lead.goto(f"{base}/console/approvals/")
        step = lead.locator(f"#step-{live_stack.step_id}")
        step.get_by_role("textbox", name=re.compile(rf"^의견 {live_stack.task_id}")).fill("확인했습니다")
        step.get_by_role("button", name=f"승인 {live_stack.task_id}", exact=True).click()
        expect(lead.locator(".messages")).to_contain_text(live_stack.task_id)

        # One polite sentence with the new status, not every timeline line read out.
        expect(announcer).to_contain_text(f"{live_stack.task_id} 상태: 승인 완료", timeout=30_000)
        assert watcher.locator("#timeline li").count() > timeline_before
        text = announcer.inner_text()
        # Heard on both the task's socket and the user's, it is still one task's change.
        assert text.count("승인 완료") == 1 and "상태가 바뀌었습니다" not in text, text
        assert watcher.locator("#timeline").evaluate("el => el.parentElement.getAttribute('role')") == "log"

        # The dashboard says its new counts once.
        dashboard_announcer = dashboard.locator("#live-announcer")
        expect(dashboard_announcer).to_contain_text("작업 현황", timeout=30_000)
        expect(dashboard_announcer).to_contain_text(re.compile(r"진행 1"))

        # And the live pages are still clean for axe after the updates.
        assert not violations(watcher), violations(watcher)
        assert not violations(dashboard), violations(dashboard)
    finally:
        watcher_context.close()
        lead_context.close()
