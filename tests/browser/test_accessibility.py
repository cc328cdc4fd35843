"""Accessibility (KWCAG 2.2 / WCAG 2.1 AA) in Debian chromium.

- axe-core (pinned in package-lock.json, injected by Playwright) on every console, audit and
  admin page, for each role, including pages showing form errors: no violations.
- What a scan cannot see: selects change nothing until confirmed, the skip link moves focus
  to the content, a failed submit moves focus to an error summary that links to each field
  and the title says so, field errors are not part of the field's name, repeated buttons say
  which task they act on, full hashes open from the keyboard, and every page reflows at
  320 CSS px without scrolling sideways.

Live announcements need Channels across processes: tests/browser/test_accessibility_live.py.
"""

from __future__ import annotations

import re
from contextlib import contextmanager

import pytest
from django.contrib import admin
from django.test import Client
from django.urls import reverse

from governance.models import Notification
from tests.browser.axe import install, violations
from tests.factories import ServerFactory, file_task, governance_world

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

NARROW = {"width": 320, "height": 640}  # 1280 px at 400 % zoom
DESKTOP = {"width": 1280, "height": 860}


@pytest.fixture
def a11y_world():
    world = governance_world(owner_username="lead")
    world.servers += [ServerFactory(system=world.system, server_id=f"srv-{n:02d}") for n in range(1, 6)]
    world.task = file_task(world, title="예산시스템 메모리 점검", targets=world.servers[:2], sr_number="SR-2026-0042")
    world.other = file_task(world, "SERVICE_RESTART", title="예산시스템 WAS 재시작", targets=world.servers[2:4])
    for task in (world.task, world.other):
        Notification.objects.create(user=world.owner, task=task, kind="approval", message="승인 요청: " + task.task_id)
    for person in (world.admin, world.supervisor):
        person.is_staff = True
        person.save(update_fields=["is_staff"])
    return world


def every_roles_pages(world) -> list[str]:
    """The console pages every signed-in role opens: dashboard, a search, statistics, inbox, the task."""
    return [
        reverse("console:dashboard"),
        reverse("console:search") + "?q=SR-2026",
        reverse("console:statistics"),
        reverse("console:inbox"),
        reverse("console:task", args=[world.task.task_id]),
    ]


def console_pages(world) -> dict[str, list[str]]:
    task = world.task.task_id
    new = reverse("console:new_request")
    common = every_roles_pages(world)
    admin_pages = [reverse("admin:index")] + [
        reverse(f"admin:{model._meta.app_label}_{model._meta.model_name}_changelist") for model in admin.site._registry
    ]
    admin_pages += [
        reverse("admin:cmdb_server_change", args=[world.servers[0].pk]),
        reverse("admin:cmdb_server_add"),
        reverse("admin:cmdb_server_import"),
        reverse("admin:cmdb_system_change", args=[world.system.pk]),
    ]
    return {
        "anonymous": [reverse("login")],
        "owner": [
            *common,
            reverse("console:approvals"),
            reverse("console:owner_settings"),
            new,
            f"{new}?system={world.system.pk}",
        ],
        "requester": [
            *common,
            new,
            f"{new}?system={world.system.pk}",
            reverse("app:home"),
            reverse("app:new") + "?server=was-1",
        ],
        "pm": [*common, reverse("console:validate", args=[task]), reverse("console:validations")],
        "security": [reverse("console:dashboard"), reverse("console:task", args=[task])],
        "auditor": [
            reverse("console:dashboard"),
            reverse("audit:entries"),
            reverse("audit:verify"),
            reverse("audit:export"),
            reverse("audit:export") + "?format=csv&since=2026-02-01&until=2026-01-01",
        ],
        "supervisor": [reverse("console:dashboard"), reverse("admin:index")],
        "admin": admin_pages,
    }


@pytest.fixture
def sessions(a11y_world, live_server) -> dict[str, list[dict]]:
    """Session cookies per role, made before Playwright starts (its event loop on this thread
    makes Django refuse ORM calls)."""
    cookies: dict[str, list[dict]] = {"anonymous": []}
    for role in console_pages(a11y_world):
        if role == "anonymous":
            continue
        client = Client()
        client.force_login(getattr(a11y_world, role))
        cookies[role] = [{"name": "sessionid", "value": client.cookies["sessionid"].value, "url": live_server.url}]
    return cookies


@contextmanager
def page_as(browser, role_cookies, viewport=DESKTOP):
    """A page in a Korean browser context logged in with ``role_cookies``, axe installed; the
    context is closed on the way out."""
    context = browser.new_context(viewport=viewport, locale="ko-KR")
    try:
        install(context)
        context.add_cookies(role_cookies)
        yield context.new_page()
    finally:
        context.close()


def violations_after_submit(page, url: str, fills: dict[str, str], button: str) -> list[str]:
    """axe's findings on the form at ``url`` once ``fills`` are typed in, ``button`` is pressed
    and the error summary is shown."""
    page.goto(url)
    for selector, text in fills.items():
        page.fill(selector, text)
    page.click(button)
    page.wait_for_selector("#error-summary")
    return violations(page)


def test_axe_finds_nothing_on_any_page_for_any_role(a11y_world, sessions, live_server, browser):
    problems: list[str] = []
    checked = 0
    for role, urls in console_pages(a11y_world).items():
        with page_as(browser, sessions[role]) as page:
            for url in urls:
                response = page.goto(live_server.url + url)
                # The admin role does not see every registered model (the task queue's are the
                # superuser's); its refusal page is checked like any other.
                allowed = (200, 400, 403) if role == "admin" else (200, 400)
                assert response.status in allowed, f"{role} {url}: {response.status}"
                page.wait_for_load_state("load")
                problems += [f"{role} {url}: {line}" for line in violations(page)]
                checked += 1
            if role == "requester":
                # The error state of a form: an empty title (spaces pass the browser's own check).
                url = f"{live_server.url}{reverse('console:new_request')}?system={a11y_world.system.pk}"
                found = violations_after_submit(page, url, {"#id_title": "   "}, "#submit-request")
                problems += [f"{role} new request with errors: {line}" for line in found]
            if role == "anonymous":
                fills = {"#id_username": "nobody", "#id_password": "wrong-password"}
                found = violations_after_submit(
                    page, live_server.url + reverse("login"), fills, "main button[type=submit]"
                )
                problems += [f"login with errors: {line}" for line in found]
            if role == "auditor":
                page.goto(live_server.url + reverse("audit:verify"))
                page.click("#verify-button")
                page.wait_for_selector("#verify-result")
                problems += [f"{role} verify result: {line}" for line in violations(page)]
    assert checked >= 40, checked
    assert not problems, "\n".join(problems)


def test_selects_change_nothing_until_confirmed(a11y_world, sessions, live_server, browser):
    with page_as(browser, sessions["requester"]) as page:
        url = live_server.url + reverse("console:new_request")
        page.goto(url)
        # The system picker: arrow keys move the choice, nothing is submitted.
        page.focus("#pick-system")
        page.keyboard.press("ArrowDown")
        page.keyboard.press("ArrowDown")
        page.wait_for_timeout(500)
        assert page.url == url
        assert page.locator("#new-request-form").count() == 0
        assert page.eval_on_selector("#pick-system", "el => el.value") == str(a11y_world.system.pk)
        # ...until the button confirms it.
        page.click("#system-picker button[type=submit]")
        page.wait_for_selector("#new-request-form")
        assert f"system={a11y_world.system.pk}" in page.url

        # The language menu: ArrowDown selects English but the page stays Korean until confirmed.
        here = page.url
        page.focus("select[name=language]")
        page.keyboard.press("ArrowDown")
        page.wait_for_timeout(500)
        assert page.url == here
        assert page.locator("html").get_attribute("lang").startswith("ko")
        assert page.eval_on_selector("select[name=language]", "el => el.value") == "en"
        page.click("form[action$='setlang/'] button[type=submit]")
        page.wait_for_load_state("load")
        assert page.locator("html").get_attribute("lang") == "en"


def test_skip_link_moves_focus_to_the_content(a11y_world, sessions, live_server, browser):
    for role, url in (
        ("owner", reverse("console:dashboard")),
        ("auditor", reverse("audit:entries")),
        ("requester", reverse("console:new_request")),
    ):
        with page_as(browser, sessions[role]) as page:
            page.goto(live_server.url + url)
            page.evaluate("document.activeElement && document.activeElement.blur()")
            page.keyboard.press("Tab")
            focused = page.evaluate("[document.activeElement.className, document.activeElement.textContent.trim()]")
            assert focused == ["skip-link", "본문 바로가기"], (role, focused)
            assert page.locator(".skip-link").bounding_box()["y"] >= 0  # shown when focused
            page.keyboard.press("Enter")
            assert page.evaluate("document.activeElement.id") == "content", role
            # The next Tab goes into the page's content, not back to the menu.
            page.keyboard.press("Tab")
            assert page.evaluate("document.getElementById('content').contains(document.activeElement)"), role
    # The login page puts the caret in the id field; the skip link is still the first stop.
    with page_as(browser, sessions["anonymous"]) as page:
        page.goto(live_server.url + reverse("login"))
        first = page.evaluate("document.querySelector('a[href], button, input:not([type=hidden]), select').className")
        assert first == "skip-link"


def test_a_failed_submit_moves_focus_to_an_error_summary(a11y_world, sessions, live_server, browser):
    with page_as(browser, sessions["requester"]) as page:
        page.goto(f"{live_server.url}{reverse('console:new_request')}?system={a11y_world.system.pk}")
        title_before = page.title()
        assert not title_before.startswith("오류")
        page.fill("#id_title", "   ")
        page.click("#submit-request")
        page.wait_for_selector("#error-summary")
        assert page.evaluate("document.activeElement.id") == "error-summary"
        assert page.title() == "오류: " + title_before
        summary = page.locator("#error-summary")
        assert summary.get_attribute("role") == "alert"
        link = summary.locator("a[href='#id_title']")
        assert link.inner_text().startswith("제목:")
        # The field's name is only its label; the error is its description.
        title = page.locator("#id_title")
        assert title.get_attribute("aria-invalid") == "true"
        assert title.get_attribute("aria-describedby") == "id_title_error"
        assert page.locator("#id_title_error").inner_text().strip()
        assert page.locator("label[for=id_title] .errorlist").count() == 0
        snapshot = page.locator("#new-request-form").aria_snapshot()
        assert re.search(r'textbox "제목"', snapshot), snapshot
        # Following the link puts the caret in the field.
        link.focus()
        page.keyboard.press("Enter")
        assert page.evaluate("document.activeElement.id") == "id_title"

        # The audit export (a GET form) does the same.
        page.goto(live_server.url + reverse("audit:export") + "?format=csv&since=2026-02-01&until=2026-01-01")
        # the requester may not export: a refusal page, not a form
        assert page.locator("#export-form").count() == 0
    with page_as(browser, sessions["auditor"]) as page:
        page.goto(live_server.url + reverse("audit:export") + "?format=csv&since=2026-02-01&until=2026-01-01")
        assert page.evaluate("document.activeElement.id") == "error-summary"
        assert page.title().startswith("오류: ")
        assert page.locator("#error-summary a[href='#id_until']").count() == 1
        assert page.locator("#id_until").get_attribute("aria-describedby") == "id_until_error"


def test_repeated_controls_name_their_task_and_hashes_open_by_keyboard(a11y_world, sessions, live_server, browser):
    with page_as(browser, sessions["owner"]) as page:
        page.goto(live_server.url + reverse("console:approvals"))
        for task in (a11y_world.task, a11y_world.other):
            page.get_by_role("button", name=f"승인 {task.task_id}", exact=True).wait_for()
            page.get_by_role("button", name=f"반려 {task.task_id}", exact=True).wait_for()
            assert page.get_by_role("textbox", name=re.compile(rf"^의견 {task.task_id}")).count() == 1
        page.goto(live_server.url + reverse("console:inbox"))
        for task in (a11y_world.task, a11y_world.other):
            assert page.get_by_role("button", name=f"읽음 표시: 승인 요청: {task.task_id}").count() == 1
        assert page.evaluate("[...document.querySelectorAll('th')].filter(th => !th.textContent.trim()).length") == 0
        # The unread badge: hidden and silent at zero.
        page.click("form[action$='inbox/read/']:not(:has(input[name=id])) button")
        page.wait_for_load_state("load")
        assert page.locator("#unread-count").is_hidden()
        assert "알림 0" not in page.locator("nav").aria_snapshot()
    with page_as(browser, sessions["auditor"]) as page:
        page.goto(live_server.url + reverse("audit:entries"))
        first = page.locator("#audit-entries details.hash-full").first
        full = first.locator("code.hash").last
        assert not full.is_visible()
        first.locator("summary").focus()
        page.keyboard.press("Enter")
        assert full.is_visible()
        assert re.fullmatch(r"[0-9a-f]{64}", full.inner_text().strip())
        # Filters have real labels.
        for name in ("task", "institution", "action", "actor"):
            assert page.get_by_label(re.compile(".+")).and_(page.locator(f"[name={name}]")).count() == 1


def test_every_page_reflows_at_320_px(a11y_world, sessions, live_server, browser):
    problems = []
    for role, urls in console_pages(a11y_world).items():
        with page_as(browser, sessions[role], viewport=NARROW) as page:
            for url in urls:
                page.goto(live_server.url + url)
                page.wait_for_load_state("load")
                width = page.evaluate("[document.documentElement.scrollWidth, window.innerWidth]")
                if width[0] > width[1]:
                    wide = page.evaluate("""() => [...document.querySelectorAll('body *')]
                        .filter(el => el.getBoundingClientRect().right > innerWidth + 0.5)
                        .slice(0, 4).map(el => el.tagName.toLowerCase() + (el.id ? '#' + el.id : '')
                        + (typeof el.className === 'string' && el.className ? '.' + el.className.split(' ')[0] : ''))
                        """)
                    problems.append(f"{role} {url}: {width[0]} > {width[1]} {wide}")
    assert not problems, "\n".join(problems)


def test_admin_lists_read_as_name_and_list_in_korean(a11y_world, client):
    """Django's Korean "Select %s to view" reads "보기위한 1… 를(을) 선택"; the lists say "<name> 목록"."""
    client.force_login(a11y_world.admin)
    for url, name in (
        (reverse("admin:cmdb_server_changelist"), "서버 (TB_SERVER_INFO)"),
        (reverse("admin:audit_auditentry_changelist"), "감사 항목 (TB_AUDIT_LOG)"),
    ):
        html = client.get(url).content.decode()
        assert re.search(rf"<title>{re.escape(name)} 목록 \| GUARDiA</title>", html), url
        assert f"<h1>{name} 목록</h1>" in html, url
        assert "보기위한" not in html and "를(을)" not in html


CONTRAST = """
() => {
  const rgb = s => s.match(/[\\d.]+/g).slice(0, 3).map(Number);
  const channel = v => { v /= 255; return v <= 0.03928 ? v / 12.92 : ((v + 0.055) / 1.055) ** 2.4; };
  const lum = c => { const [r, g, b] = c.map(channel); return 0.2126 * r + 0.7152 * g + 0.0722 * b; };
  const ratio = (a, b) => { const [x, y] = [lum(a), lum(b)].sort((p, q) => q - p); return (x + 0.05) / (y + 0.05); };
  const background = el => {
    for (let node = el.parentElement; node; node = node.parentElement) {
      const c = getComputedStyle(node).backgroundColor;
      if (!c.startsWith("rgba(0, 0, 0, 0)") && c !== "transparent") return rgb(c);
    }
    return [255, 255, 255];
  };
  const out = [];
  for (const el of document.querySelectorAll("input:not([type=hidden]):not([type=checkbox]), select, textarea")) {
    if (!el.getClientRects().length) continue;
    const style = getComputedStyle(el);
    const value = ratio(rgb(style.borderTopColor), background(el));
    out.push([el.name || el.id, Math.round(value * 100) / 100]);
  }
  return out;
}
"""


def test_field_borders_have_three_to_one_contrast(a11y_world, sessions, live_server, browser):
    """A field's border is what shows where to type: at least 3:1 against what surrounds it."""
    with page_as(browser, sessions["requester"]) as page:
        measured = []
        for url in (f"{reverse('console:new_request')}?system={a11y_world.system.pk}", reverse("console:search")):
            page.goto(live_server.url + url)
            measured += page.evaluate(CONTRAST)
        assert len(measured) >= 6, measured
        low = [item for item in measured if item[1] < 3]
        assert not low, low
