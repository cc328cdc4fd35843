"""Must-show for the field app (/app/) in Debian chromium at a phone viewport (390×844), on
a real stack (Redis, Daphne, a migrated SQLite file; tests/browser/conftest.py live_stack):

- the web manifest and the service worker register (scope /app/);
- offline (context.set_offline), a request is queued as a draft in IndexedDB, the app
  shell opens from the worker's cache, and the draft is filed when the connection returns;
- free text is read by the intake parser and its plan shown;
- a site manager composes a request with the virtual keypad, sees the server's plan,
  and files it; a chosen file's SHA-256 is computed in the browser;
- in a second context the team lead approves, and the first context shows the new state
  without reloading (the /ws/live/ socket), and the worker showed it as a notification."""

from __future__ import annotations

import hashlib
import re
import time

import pytest

from tests.browser.axe import install, violations
from tests.browser.test_phone_layout import MEASURE, TOUCH_MIN
from tests.factories import war_bytes

pytestmark = pytest.mark.browser

PHONE = {"width": 390, "height": 844}


def phone_context(browser):
    context = browser.new_context(locale="ko-KR", viewport=PHONE, device_scale_factor=1, is_mobile=True, has_touch=True)
    install(context)  # axe-core, for the states only a script reaches (preview, question, queue)
    return context


def login_via_app(context, base: str, username: str, password: str):
    """The site login, reached from /app/ and sending the user back there."""
    page = context.new_page()
    page.goto(f"{base}/app/")
    page.wait_for_url(re.compile(r"/accounts/login/\?next=/app/"))
    page.fill("#id_username", username)
    page.fill("#id_password", password)
    page.click("form[action^='/accounts/login/'] button[type=submit]")
    page.wait_for_url(re.compile(r"/app/$"))
    return page


def fill_memory_check(page, title: str) -> None:
    page.select_option("#f-sub_type", "MEMORY_CHECK")
    page.fill("#f-title", title)


def test_field_app_offline_queue_keypad_and_live_approval(live_stack, browser):
    from playwright.sync_api import expect

    base, password = live_stack.base_url, live_stack.password
    field_context = phone_context(browser)
    lead_context = browser.new_context(locale="ko-KR")
    try:
        field_context.grant_permissions(["notifications"], origin=base)
        page = login_via_app(field_context, base, "field", password)

        # Installable: the manifest is linked and complete, its icons load, the worker controls /app/.
        manifest = page.evaluate("""async () => {
            const href = document.querySelector("link[rel=manifest]").href;
            const body = await (await fetch(href)).json();
            const icons = await Promise.all(body.icons.map(async i => {
                const r = await fetch(i.src); return [i.sizes, r.status, r.headers.get("content-type")]; }));
            return {body, icons};
        }""")
        assert manifest["body"]["display"] == "standalone"
        assert manifest["body"]["start_url"] == "/app/" and manifest["body"]["scope"] == "/app/"
        assert manifest["body"]["theme_color"] == "#1b4f9c" and manifest["body"]["lang"] == "ko"
        assert ["512x512", 200, "image/png"] in manifest["icons"]
        assert ["192x192", 200, "image/png"] in manifest["icons"]
        scope = page.evaluate("navigator.serviceWorker.ready.then(r => r.scope)")
        assert scope == f"{base}/app/"
        page.wait_for_function("navigator.serviceWorker.controller !== null", timeout=15_000)

        # Offline: the draft goes to IndexedDB instead of the network.
        page.goto(f"{base}/app/new?server=was-1")
        expect(page.locator("#f-system")).to_have_value("BUDGET")
        expect(page.locator("input[name=targets][value=was-1]")).to_be_checked()
        fill_memory_check(page, "오프라인에서 작성한 메모리 점검")
        field_context.set_offline(True)
        expect(page.locator("#queue-button")).to_be_visible()
        expect(page.locator("#preview-button")).to_be_hidden()
        page.click("#queue-button")
        expect(page.locator("html[data-queued='1']")).to_have_count(1)
        expect(page.locator("#net-state")).to_contain_text("전송 대기 중인 요청 1건")
        # The app shell opens offline, from the worker's cache.
        shell = field_context.new_page()
        shell.goto(f"{base}/app/")
        expect(shell.locator("h1")).to_have_text("내 요청")
        expect(shell.locator("#queued-list li")).to_have_text(["오프라인에서 작성한 메모리 점검"])
        shell.close()
        stored = page.evaluate("GuardiaDrafts.list().then(d => d.map(x => x.fields.title))")
        assert stored == ["오프라인에서 작성한 메모리 점검"]

        # The connection returns: the queue is filed and emptied without any action.
        field_context.set_offline(False)
        expect(page.locator("html[data-queued='0']")).to_have_count(1, timeout=15_000)
        expect(page.locator("#net-state")).to_contain_text(re.compile(r"OPS-\d{8}-\d{3}"))
        queued_task = re.search(r"OPS-\d{8}-\d{3}", page.locator("#net-state").inner_text()).group(0)

        # Free text: the intake parser reads it and the server shows the plan it would get.
        page.check("input[name=mode][value=text]")
        expect(page.locator("#f-system")).to_be_hidden()
        page.fill("#f-raw_request", "예산시스템 was-1 메모리 점검해 주세요")
        page.click("#preview-button")
        expect(page.locator("#preview")).to_contain_text("실행 계획")
        expect(page.locator("#preview")).to_contain_text("메모리 점검")
        expect(page.locator("#submit-button")).to_be_visible()
        assert violations(page) == []
        page.check("input[name=mode][value=template]")

        # The browser hashes a chosen file (SubtleCrypto) and shows it before anything is sent.
        war = war_bytes("3.1.0")
        page.select_option("#f-sub_type", "APP_DEPLOY")
        page.set_input_files(
            "#f-APP_DEPLOY-artifact", files=[{"name": "app.war", "mimeType": "application/java-archive", "buffer": war}]
        )
        expect(page.locator("#h-APP_DEPLOY-artifact")).to_contain_text(hashlib.sha256(war).hexdigest())

        # Compose with the keypad: each key lands at the cursor of the field, not at its end.
        fill_memory_check(page, "키패드로 작성한 메모리 점검")
        raw = page.locator("#f-raw_request")
        raw.fill("ps -ef  grep java  wc -l")
        raw.evaluate("el => el.setSelectionRange(7, 7)")
        page.click(".key[data-key='|']")
        raw.evaluate("el => el.setSelectionRange(19, 19)")
        page.click(".key[data-key='|']")
        page.click(".key[data-key='>']")
        assert raw.input_value() == "ps -ef | grep java |> wc -l"
        assert raw.evaluate("el => document.activeElement === el && el.selectionStart") == 21
        for box in page.locator(".keypad .key").all():
            assert box.bounding_box()["height"] >= TOUCH_MIN
        layout = page.evaluate(MEASURE)
        assert layout["small"] == [] and layout["tinyText"] == [] and layout["scrollWidth"] <= layout["innerWidth"]

        # The server's plan is shown for confirmation, then the request is filed.
        page.click("#preview-button")
        preview = page.locator("#preview")
        expect(preview).to_contain_text("실행 계획")
        expect(preview).to_contain_text("free -m")
        expect(preview).to_contain_text("was-1")
        assert violations(page) == []
        page.click("#submit-button")
        page.wait_for_url(re.compile(r"/app/#req-OPS-"))
        filed = page.url.split("#req-")[1]
        row = page.locator(f"[data-task-row='{filed}']")
        expect(row.locator(".badge")).to_have_text("승인 대기")
        expect(page.locator(f"[data-task-row='{queued_task}'] .badge")).to_have_text("승인 대기")
        layout = page.evaluate(MEASURE)
        assert layout["small"] == [] and layout["scrollWidth"] <= layout["innerWidth"], layout
        expect(page.locator("html[data-live=on]")).to_have_count(1, timeout=30_000)
        assert violations(page) == []
        page.evaluate("window.__sameDocument = 'not reloaded'")

        # The team lead approves in another browser context.
        lead = lead_context.new_page()
        lead.goto(f"{base}/accounts/login/")
        lead.fill("#id_username", "lead")
        lead.fill("#id_password", password)
        lead.click("form[action='/accounts/login/'] button[type=submit]")
        lead.wait_for_url(re.compile(r"/console/$"))
        lead.goto(f"{base}/console/approvals/")
        step = lead.locator("[id^=step-]", has_text=filed)
        step.locator("textarea[name=comments]").fill("현장 요청 확인")
        step.locator("button[value=APPROVED]").click()
        expect(lead.locator(".messages")).to_contain_text(filed)

        # The phone shows it without reloading.
        expect(row.locator(".badge")).to_have_text("승인 완료", timeout=15_000)
        expect(row.locator(".badge")).to_have_class(re.compile(r"\bs-APPROVED\b"))
        assert page.evaluate("window.__sameDocument") == "not reloaded"
        expect(page.locator(f"[data-task-row='{queued_task}'] .badge")).to_have_text("승인 대기")
        # The status change was also shown as a notification by the service worker.
        shown: list[dict] = []
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and not any(n["tag"] == filed and "승인 완료" in n["body"] for n in shown):
            shown = page.evaluate(
                "navigator.serviceWorker.ready.then(r => r.getNotifications())"
                ".then(list => list.map(n => ({tag: n.tag, body: n.body})))"
            )
            time.sleep(0.2)
        assert any(n["tag"] == filed and "승인 완료" in n["body"] for n in shown), shown

        # A draft someone else wrote on this phone is never sent with this session, and a
        # draft sent after the session ended (redirect to the login page) stays queued.
        rows_before = page.locator("#my-requests [data-task-row]").count()
        page.evaluate("""() => GuardiaDrafts.add({title: "다른 사람의 초안", user: "-1", csrf: "", files: {},
            hashes: {}, fields: {system: "BUDGET", sub_type: "MEMORY_CHECK", title: "다른 사람의 초안",
                                 targets: ["was-1"], parameters: "{}"}})""")
        flushed = page.evaluate("document.documentElement.dataset.flushed")
        page.evaluate("window.dispatchEvent(new Event('online'))")
        page.wait_for_function("old => document.documentElement.dataset.flushed !== old", arg=flushed)
        assert page.evaluate("GuardiaDrafts.list().then(d => d.map(x => x.title))") == ["다른 사람의 초안"]
        field_context.clear_cookies(name="sessionid")  # the CSRF cookie stays: the view itself redirects
        page.evaluate("""() => GuardiaDrafts.add({title: "세션이 끝난 뒤", user: document.body.dataset.user,
            csrf: "", files: {}, hashes: {}, fields: {system: "BUDGET", sub_type: "MEMORY_CHECK",
            title: "세션이 끝난 뒤", targets: ["was-1"], parameters: "{}"}})""")
        flushed = page.evaluate("document.documentElement.dataset.flushed")
        page.evaluate("window.dispatchEvent(new Event('online'))")
        page.wait_for_function("old => document.documentElement.dataset.flushed !== old", arg=flushed)
        assert sorted(page.evaluate("GuardiaDrafts.list().then(d => d.map(x => x.title))")) == [
            "다른 사람의 초안",
            "세션이 끝난 뒤",
        ]
        assert page.locator("#my-requests [data-task-row]").count() == rows_before
    finally:
        field_context.close()
        lead_context.close()
