"""The session rules through the public login and console pages: idle timeout, absolute
lifetime, and one session per account (the new login ends the old one and both are
told); each end of a session is in the audit chain."""

from __future__ import annotations

import datetime as dt

import pytest
import time_machine
from django.test import Client
from django.utils import timezone

from audit.models import AuditEntry
from tests.factories import UserFactory

LOGIN, CONSOLE = "/accounts/login/", "/console/"
PASSWORD = "pw-Guardia-1"


@pytest.fixture
def rules(settings, db):
    settings.SESSION_IDLE_MINUTES = 30
    settings.SESSION_MAX_HOURS = 12
    settings.SESSION_SINGLE = True
    settings.LOGIN_NOTICE = True
    UserFactory(username="lead", role="team_lead")
    return settings


def login(client):
    response = client.post(LOGIN, {"username": "lead", "password": PASSWORD})
    assert response.status_code == 302
    return response


def test_idle_session_ends_and_says_why(client, rules):
    start = timezone.now()
    with time_machine.travel(start, tick=False) as clock:
        login(client)
        clock.move_to(start + dt.timedelta(minutes=29))
        assert client.get(CONSOLE).status_code == 200  # activity keeps it alive
        clock.move_to(start + dt.timedelta(minutes=29 + 29))
        assert client.get(CONSOLE).status_code == 200
        clock.move_to(start + dt.timedelta(minutes=58 + 31))
        response = client.get(CONSOLE)
        assert response.status_code == 302 and response["Location"].startswith(LOGIN)
        assert "30분 동안 사용하지 않아 로그아웃되었습니다" in client.get(response["Location"]).content.decode()
        assert client.get(CONSOLE).status_code == 302  # really logged out
    entry = AuditEntry.objects.get(action="auth.session_expired")
    assert entry.actor == "lead" and entry.payload["reason"] == "idle"


def test_absolute_lifetime_ends_even_an_active_session(client, rules):
    start = timezone.now()
    with time_machine.travel(start, tick=False) as clock:
        login(client)
        for minutes in range(20, 12 * 60, 20):
            clock.move_to(start + dt.timedelta(minutes=minutes))
            assert client.get(CONSOLE).status_code == 200, minutes
        clock.move_to(start + dt.timedelta(hours=12, minutes=1))
        response = client.get(CONSOLE)
        assert response.status_code == 302
        assert "12시간이 지나" in client.get(response["Location"]).content.decode()
    assert AuditEntry.objects.get(action="auth.session_expired").payload["reason"] == "lifetime"


def test_a_new_login_ends_the_old_session_and_both_are_told(rules):
    first, second = Client(), Client()
    login(first)
    assert first.get(CONSOLE).status_code == 200
    response = login(second)
    page = second.get(response["Location"]).content.decode()
    assert "다른 세션을 종료했습니다" in page
    answer = first.get(CONSOLE)
    assert answer.status_code == 302 and answer["Location"].startswith(LOGIN)
    assert "다른 곳에서 로그인하여 이 세션이 종료되었습니다" in first.get(answer["Location"]).content.decode()
    assert first.get(CONSOLE).status_code == 302
    assert second.get(CONSOLE).status_code == 200  # the new session carries on
    assert AuditEntry.objects.filter(action="auth.session_replaced", target="lead").count() == 1
    assert AuditEntry.objects.filter(action="auth.session_ended_elsewhere", target="lead").count() == 1


def test_logout_then_login_is_not_reported_as_a_second_session(client, rules):
    login(client)
    client.post("/accounts/logout/")
    response = login(client)
    assert "다른 세션을 종료했습니다" not in client.get(response["Location"]).content.decode()
    assert not AuditEntry.objects.filter(action="auth.session_replaced").exists()


def test_changing_ones_password_keeps_the_one_session(client, rules):
    from cmdb.models import AccountSecurity

    login(client)
    AccountSecurity.objects.filter(user__username="lead").update(must_change_password=False)
    changed = client.post(
        "/accounts/password/",
        {"old_password": PASSWORD, "new_password1": "New-Guardia-pw-26", "new_password2": "New-Guardia-pw-26"},
    )
    assert changed.status_code == 302
    assert client.get(CONSOLE).status_code == 200
