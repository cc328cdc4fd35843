"""Every console page on a phone (390×844, Debian chromium): nothing scrolls sideways,
touch targets are at least 44 px, fields use 16 px text (iOS zooms into smaller ones),
and server names such as srv-09 never break in the middle."""

from __future__ import annotations

from pathlib import Path

import pytest
from django.test import Client
from django.urls import reverse

from governance.models import Notification
from tests.browser.test_accessibility import every_roles_pages
from tests.factories import ServerFactory, SystemFactory, SystemOwnerFactory, file_task, governance_world

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

PHONE = {"width": 390, "height": 844}
SCREENSHOTS = Path(__file__).resolve().parents[2] / "docs" / "screenshots"
SHOTS: dict[tuple[str, str], str] = {}
TOUCH_MIN = 43.5  # 44 px, allowing sub-pixel rounding

# Elements a finger must hit: buttons, fields, selects, menu and list links, check labels.
MEASURE = r"""
() => {
  const visible = el => {
    const r = el.getBoundingClientRect(); const s = getComputedStyle(el);
    return r.width > 0 && r.height > 0 && s.visibility !== "hidden" && !el.closest("[hidden], details:not([open])");
  };
  const describe = el => el.tagName.toLowerCase() + (el.id ? "#" + el.id : "") +
    (el.name ? "[name=" + el.name + "]" : "") + " '" + (el.textContent || el.value || "").trim().slice(0, 30) + "'";
  const small = [];
  const selector = "button, .btn, select, textarea, input:not([type=hidden]):not([type=checkbox]):not([type=radio]), " +
    "nav a, table a, li a, label.check";
  for (const el of document.querySelectorAll(selector)) {
    if (!visible(el)) continue;
    const r = el.getBoundingClientRect();
    if (r.height < %(min)s) small.push(describe(el) + " h=" + r.height.toFixed(1));
  }
  // A checkbox or radio is hit through its label; the label is the target.
  for (const box of document.querySelectorAll("input[type=checkbox], input[type=radio]")) {
    if (!visible(box)) continue;
    const label = box.closest("label") || document.querySelector("label[for='" + box.id + "']");
    const r = (label || box).getBoundingClientRect();
    if (r.height < %(min)s) small.push("checkbox " + (box.id || box.name) + " target h=" + r.height.toFixed(1));
  }
  const tinyText = [];
  const fields = "input:not([type=hidden]):not([type=checkbox]):not([type=radio]), select, textarea";
  for (const el of document.querySelectorAll(fields)) {
    if (!visible(el)) continue;
    const size = parseFloat(getComputedStyle(el).fontSize);
    if (size < 16) tinyText.push(describe(el) + " " + size + "px");
  }
  const wide = [];
  for (const el of document.querySelectorAll("body *")) {
    const r = el.getBoundingClientRect();
    if (r.right > innerWidth + 0.5 && visible(el) && !el.closest(".table-wrap, pre, .subnav")) wide.push(describe(el));
  }
  return {scrollWidth: document.documentElement.scrollWidth, innerWidth: innerWidth, small, tinyText,
          wide: wide.slice(0, 5)};
}
""".replace("%(min)s", str(TOUCH_MIN))


@pytest.fixture
def phone_world():
    world = governance_world(owner_username="lead")
    # A dozen servers with ids like srv-09, and a system whose long name would stretch a select.
    world.servers += [ServerFactory(system=world.system, server_id=f"srv-{n:02d}") for n in range(1, 13)]
    long_system = SystemFactory(
        code="LONG-NAMED-SYSTEM",
        institution=world.inst,
        name="차세대 국가재정정보시스템 통합 예산 편성 및 집행 관리 서브시스템",
    )
    SystemOwnerFactory(system=long_system, owner=world.owner, deputy=world.deputy, supervisor=world.supervisor)
    world.task = file_task(
        world,
        title="예산시스템 메모리 점검 (현장 요청, 긴 제목이 줄바꿈되는지 확인)",
        targets=world.servers[:3],
        sr_number="SR-2026-0042",
    )
    Notification.objects.create(
        user=world.owner,
        task=world.task,
        kind="approval",
        message="승인 요청: " + world.task.task_id + " 예산시스템 메모리 점검",
    )
    return world


def shots_for(world) -> dict[tuple[str, str], str]:
    return {
        ("owner", reverse("console:dashboard")): "phone-dashboard-lead.png",
        ("owner", reverse("console:approvals")): "phone-approvals-lead.png",
        ("owner", reverse("console:statistics")): "phone-statistics.png",
        ("requester", reverse("console:new_request")): "phone-new-request.png",
        ("auditor", reverse("audit:entries")): "phone-audit-log.png",
    }


def pages_for(world) -> dict[str, list[str]]:
    task = world.task.task_id
    console = every_roles_pages(world)
    return {
        "owner": [
            *console,
            reverse("console:approvals"),
            reverse("console:owner_settings"),
            reverse("console:new_request") + f"?system={world.system.pk}&sub_type=APP_DEPLOY",
        ],
        "requester": [*console, reverse("console:new_request") + f"?system={world.system.pk}&sub_type=APP_DEPLOY"],
        "pm": [*console, reverse("console:validate", args=[task])],
        "auditor": [
            reverse("console:dashboard"),
            reverse("console:statistics"),
            reverse("audit:entries"),
            reverse("audit:verify"),
            reverse("audit:export") + "?format=csv&since=2026-02-01&until=2026-01-01",
        ],
    }


@pytest.fixture
def sessions(phone_world, live_server) -> dict[str, dict]:
    """A logged-in session cookie per role, made before Playwright starts: its sync API runs
    an event loop on this thread, under which Django refuses ORM calls."""
    cookies = {}
    for role in pages_for(phone_world):
        client = Client()
        client.force_login(getattr(phone_world, role))
        cookies[role] = {"name": "sessionid", "value": client.cookies["sessionid"].value, "url": live_server.url}
    return cookies


def test_console_pages_fit_a_phone(phone_world, live_server, sessions, browser):
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    SHOTS.update(shots_for(phone_world))
    problems: list[str] = []
    checked = 0
    for role, urls in pages_for(phone_world).items():
        context = browser.new_context(
            viewport=PHONE, device_scale_factor=2, is_mobile=True, has_touch=True, locale="ko-KR"
        )
        try:
            context.add_cookies([sessions[role]])
            page = context.new_page()
            for url in urls:
                response = page.goto(live_server.url + url)
                assert response.status in (200, 400), f"{role} {url}: {response.status}"
                page.wait_for_load_state("load")
                result = page.evaluate(MEASURE)
                checked += 1
                where = f"{role} {url}"
                if result["scrollWidth"] > result["innerWidth"]:
                    problems.append(
                        f"{where}: scrolls sideways ({result['scrollWidth']} > {result['innerWidth']}) {result['wide']}"
                    )
                problems += [f"{where}: small target {item}" for item in result["small"]]
                problems += [f"{where}: field text under 16 px {item}" for item in result["tinyText"]]
                if "new_request" in url or "requests/new" in url:
                    # Each server label stays on one line: "srv-09" never becomes "srv-/09".
                    heights = page.eval_on_selector_all(
                        "#targets label.check",
                        ("els => els.map(e => [e.textContent.trim(), e.getBoundingClientRect().height])"),
                    )
                    assert len(heights) >= 12, heights
                    problems += [f"{where}: label {name} wraps (h={h})" for name, h in heights if h > 50]
                    select = page.locator("#pick-system")
                    panel = page.locator("#system-picker")
                    if select.bounding_box()["width"] > panel.bounding_box()["width"] + 0.5:
                        problems.append(f"{where}: the system select is wider than its panel")
                shot = SHOTS.get((role, url.split("?")[0]))
                if shot:
                    # a long list is shown as the first screen; the rest is more of the same
                    page.screenshot(path=str(SCREENSHOTS / shot), full_page=role != "auditor")
        finally:
            context.close()
    assert checked >= 20
    assert not problems, "\n".join(problems)


def test_console_pages_fit_a_desktop_too(phone_world, live_server, sessions, browser):
    """The phone rules (16 px fields, 44 px targets) must not push a desktop page sideways."""
    problems = []
    for role in ("owner", "auditor"):
        context = browser.new_context(viewport={"width": 1280, "height": 800}, locale="ko-KR")
        try:
            context.add_cookies([sessions[role]])
            page = context.new_page()
            for url in pages_for(phone_world)[role]:
                page.goto(live_server.url + url)
                result = page.evaluate(MEASURE)
                if result["scrollWidth"] > result["innerWidth"]:
                    problems.append(f"{role} {url}: {result['scrollWidth']} > {result['innerWidth']} {result['wide']}")
                problems += [f"{role} {url}: field text under 16 px {item}" for item in result["tinyText"]]
        finally:
            context.close()
    assert not problems, "\n".join(problems)
