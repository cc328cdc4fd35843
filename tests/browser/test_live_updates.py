"""Every live update of the console, each seen in Debian chromium without a reload (the same
document before and after), at a desktop and a phone viewport, on the demo stack (Daphne,
Redis, the django-q2 worker deploying to the real sshd testbed):

- "내 승인": a request assigned to me appears; a card I am typing into stays as it is;
- the dashboard: tiles, the approvals prompt and the recent-task list follow;
- the task page: the approval steps table and the decision, the status badge, timeline lines
  for decisions, notifications and every execution step; the same lines (Korean text and the
  server's time, Asia/Seoul, while the browser runs in New York) after a reload;
- the PM: the "검증 대기 N건" prompt and the validation queue when the deploy finishes.
"""

from __future__ import annotations

import datetime as dt
import json
import re
import zoneinfo

import pytest

from governance.demo_artifact import build_war
from tests.browser import demo_stack as ui

pytestmark = [pytest.mark.browser, pytest.mark.testbed]

TIME = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d$")
SEOUL = zoneinfo.ZoneInfo("Asia/Seoul")


def tile(page, name: str) -> int:
    return int(page.locator(f"#tile-{name}").inner_text())


@pytest.mark.parametrize("viewport", [ui.DESKTOP, ui.PHONE], ids=["desktop", "phone"])
def test_every_live_update_without_reload(demo, chromium, viewport):
    from playwright.sync_api import expect

    tag = "desktop" if viewport is ui.DESKTOP else "phone"
    base = demo.base_url
    lead_ctx, pm_ctx, field_ctx = (ui.new_context(chromium, viewport) for _ in range(3))
    try:
        # The pages that must follow, each opened once and never reloaded.
        approvals = ui.login(lead_ctx, base, "teamlead2")
        approvals.goto(f"{base}/console/approvals/")
        lead_dash = lead_ctx.new_page()
        lead_dash.goto(f"{base}/console/")
        pm_dash = ui.login(pm_ctx, base, "pm")
        queue = pm_ctx.new_page()
        queue.goto(f"{base}/console/validations/")
        pages = [approvals, lead_dash, pm_dash, queue]
        for page in pages:
            ui.wait_live(page)
            ui.mark_document(page)
        waiting = tile(lead_dash, "waiting")

        # 1. A new request assigned to teamlead2 appears on 내 승인 and on the dashboard.
        first = ui.file_deploy(
            demo,
            "sitemgr",
            title=f"실시간 확인 1 ({tag})",
            targets=["srv-01", "srv-02"],
            version="1.3.0",
            artifact=build_war("1.3.0"),
        )["task_id"]
        card = approvals.locator("article", has_text=first)
        expect(card).to_be_visible(timeout=15_000)
        expect(approvals.locator("#no-approvals")).to_have_count(0)
        expect(lead_dash.locator("#tile-waiting")).to_have_text(str(waiting + 1), timeout=15_000)
        expect(lead_dash.locator("#approvals-prompt")).to_be_visible()
        expect(lead_dash.locator("#recent-tasks")).to_contain_text(first)

        # 2. A second one arrives while a comment is being typed on the first: the typing survives.
        card.locator("textarea[name=comments]").fill("검토 중")
        second = ui.file_deploy(
            demo,
            "sitemgr",
            title=f"실시간 확인 2 ({tag})",
            targets=["srv-03"],
            version="1.3.0",
            artifact=build_war("1.3.0"),
        )["task_id"]
        expect(approvals.locator("article", has_text=second)).to_be_visible(timeout=15_000)
        expect(card.locator("textarea[name=comments]")).to_have_value("검토 중")
        expect(lead_dash.locator("#tile-waiting")).to_have_text(str(waiting + 2), timeout=15_000)
        ui.screenshot(approvals, f"teamlead2-approvals-live-{tag}")
        ui.screenshot(lead_dash, f"teamlead2-dashboard-{tag}")

        # 3. The requester watches the first task; teamlead2 decides on 내 승인.
        task_page = ui.login(field_ctx, base, "sitemgr")
        frames: list = []  # what the task page's socket received, frame by frame
        task_page.on("websocket", lambda socket: socket.on("framereceived", lambda payload: frames.append(payload)))
        task_page.goto(f"{base}/console/tasks/{first}/")
        ui.wait_live(task_page)
        ui.mark_document(task_page)
        steps = task_page.locator("#approval-steps tbody tr")
        expect(steps.nth(0)).to_contain_text("대기")
        assert ui.same_document(approvals)  # both cards arrived without a reload
        # The comment travels in the live line; markup in it must stay text.
        card.locator("textarea[name=comments]").fill("배포 승인합니다 <img src=x onerror=window.__xss=1>")
        card.locator("button[value=APPROVED]").click()
        expect(approvals.locator(".messages")).to_contain_text(first)

        # The decision, the next step and their timeline lines arrive on the task page.
        expect(steps.nth(0)).to_contain_text("승인", timeout=15_000)
        expect(steps.nth(0)).to_contain_text("배포 승인합니다")
        expect(steps.nth(1)).to_contain_text(re.compile(r"\bpm\b|최피엠"))  # the PM step is now assigned
        decided = task_page.locator("#timeline li.live", has_text="배포 승인합니다")
        expect(decided).to_have_count(1)
        expect(decided).to_contain_text("승인 결정")
        expect(decided).to_contain_text("<img src=x onerror=window.__xss=1>")
        assert decided.locator("img").count() == 0 and task_page.evaluate("window.__xss") is None
        assert TIME.match(decided.locator("time").inner_text())

        # 4. The PM approves over REST: the worker deploys; the page follows to PM validation.
        ui.approve(demo, "pm", first, "PM 확인")
        expect(task_page.locator("#task-status")).to_have_text("PM 검증 대기", timeout=90_000)
        expect(steps.nth(1)).to_contain_text("PM 확인")
        expect(task_page.locator("#timeline li.live", has_text="srv-02").first).to_be_visible()
        # A transition and its timeline line came in one frame (an array), and the page took both:
        # the badge above and the line below.
        batches = [json.loads(f) for f in frames if isinstance(f, str) and f.startswith("[")]
        together = [
            b for b in batches if any(e["kind"] == "transition" and e["status"] == "PENDING_PM_VALIDATION" for e in b)
        ]
        assert together, frames[-5:]
        line = next(e for e in together[0] if e["kind"] == "timeline")
        expect(task_page.locator("#timeline li.live", has_text=line["message"]).first).to_be_visible()

        # 5. The PM's prompt and queue follow, without a reload.
        expect(pm_dash.locator("#validation-prompt")).to_contain_text(re.compile(r"검증 대기 \d+건"), timeout=15_000)
        expect(queue.locator("#task-table")).to_contain_text(first, timeout=15_000)
        expect(lead_dash.locator(f'[data-task-row="{first}"] .badge')).to_have_text("PM 검증 대기")
        ui.screenshot(pm_dash, f"pm-dashboard-live-{tag}")
        ui.screenshot(queue, f"pm-validation-queue-{tag}")
        ui.screenshot(task_page, f"sitemgr-task-timeline-{tag}")
        for page in (lead_dash, pm_dash, queue, task_page):  # 내 승인 itself posted the decision
            assert ui.same_document(page), page.url

        # 6. The live lines are the saved lines: same Korean text, same server time (KST, not the
        #    browser's New York time), in the same markup.
        live_lines = task_page.locator("#timeline li.live").all_inner_texts()
        live_times = task_page.locator("#timeline li.live time").all_inner_texts()
        assert len(live_lines) >= 10 and all(TIME.match(t) for t in live_times)
        now_seoul = dt.datetime.now(SEOUL).replace(tzinfo=None)
        newest = dt.datetime.strptime(live_times[-1], "%Y-%m-%d %H:%M:%S")
        assert abs((now_seoul - newest).total_seconds()) < 600, (live_times[-1], now_seoul)
        assert not any(re.search(r"\b(rolling back|server\(s\)|group \d)", line) for line in live_lines)
        task_page.reload()
        saved = task_page.locator("#timeline li").all_inner_texts()
        missing = [line for line in live_lines if line not in saved]
        assert not missing, missing[:5]
    finally:
        for context in (lead_ctx, pm_ctx, field_ctx):
            context.close()
