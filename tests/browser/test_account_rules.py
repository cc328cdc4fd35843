"""The password and session rules in a real browser against a real Daphne stack: the
first-login change with a refused weak password, then one session per account (the new
login says it ended the other session; the old one finds itself logged out and is told), and the
idle timeout (activity keeps a session, idleness ends it with a reason)."""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.browser

NEW_PASSWORD = "Browser-Own-pw-2026"
IDLE_SECONDS = 10


@pytest.fixture
def account_rules_env(monkeypatch):
    # Read by the live stack's processes (they inherit this environment).
    monkeypatch.setenv("GUARDIA_PASSWORD_FIRST_LOGIN_CHANGE", "true")
    monkeypatch.setenv("GUARDIA_SESSION_SINGLE", "true")
    monkeypatch.setenv("GUARDIA_LOGIN_NOTICE", "true")
    # Instead of 30 minutes: long enough for each step below, short enough to wait out.
    monkeypatch.setenv("GUARDIA_SESSION_IDLE_SECONDS", str(IDLE_SECONDS))


def login(context, base_url: str, password: str):
    page = context.new_page()
    page.goto(f"{base_url}/accounts/login/")
    page.fill("#id_username", "lead")
    page.fill("#id_password", password)
    page.click("form[action='/accounts/login/'] button[type=submit]")
    page.wait_for_load_state()
    return page


def test_first_login_change_one_session_per_account_and_idle_timeout(account_rules_env, live_stack, browser):
    base = live_stack.base_url
    first_context, second_context = browser.new_context(), browser.new_context()
    try:
        first = login(first_context, base, live_stack.password)
        # The seeded password was set by someone else: the console sends the person to change it.
        assert first.url.endswith("/accounts/password/")
        assert "비밀번호를 바꾸세요" in first.inner_text("body")
        first.fill("#id_old_password", live_stack.password)
        first.fill("#id_new_password1", "short1!")
        first.fill("#id_new_password2", "short1!")
        first.click("main form button[type=submit]")
        summary = first.locator("#error-summary")
        assert "비밀번호를 바꾸지 못했습니다" in summary.inner_text() and "짧습니다" in summary.inner_text()
        first.fill("#id_old_password", live_stack.password)
        first.fill("#id_new_password1", NEW_PASSWORD)
        first.fill("#id_new_password2", NEW_PASSWORD)
        first.click("main form button[type=submit]")
        first.wait_for_url(f"{base}/console/")
        assert "비밀번호를 바꿨습니다" in first.inner_text("body")

        second = login(second_context, base, NEW_PASSWORD)
        assert second.url == f"{base}/console/"
        text = second.inner_text("body")
        assert "다른 세션을 종료했습니다" in text and "마지막 로그인:" in text

        first.goto(f"{base}/console/")
        assert "/accounts/login/" in first.url
        assert "다른 곳에서 로그인하여 이 세션이 종료되었습니다" in first.inner_text("body")
        second.goto(f"{base}/console/")
        assert second.url == f"{base}/console/"  # the new session carries on
        idle_session_ends(second, base)
    finally:
        first_context.close()
        second_context.close()


def idle_session_ends(page, base: str) -> None:
    """Clicking around for longer than the idle limit keeps the session; leaving it alone for
    longer than the limit ends it, and the login page says why."""
    for _click in range(IDLE_SECONDS + 2):  # active past the limit, one page a second
        page.wait_for_timeout(1000)
        page.goto(f"{base}/console/approvals/")
        assert page.url == f"{base}/console/approvals/", "an active session was ended"
    page.wait_for_timeout((IDLE_SECONDS + 2) * 1000)  # idle past the limit: the clock is the point
    page.goto(f"{base}/console/")
    assert page.url.startswith(f"{base}/accounts/login/")
    assert f"{IDLE_SECONDS}초 동안 사용하지 않아 로그아웃되었습니다" in page.inner_text("body")
    page.goto(f"{base}/console/")
    assert "/accounts/login/" in page.url  # really logged out, not only told
