"""The password rules through the public pages: length and character classes, no reuse of
recent passwords, the first-login change, expiry with a warning, and the last successful
and failed logins shown after a login."""

from __future__ import annotations

import datetime as dt

import pytest
from django.contrib.auth import get_user_model
from django.utils import timezone

from audit.models import AuditEntry
from cmdb.models import AccountSecurity, PasswordHistory
from tests.factories import UserFactory

User = get_user_model()
LOGIN, CHANGE, CONSOLE = "/accounts/login/", "/accounts/password/", "/console/"
START = "pw-Guardia-1"  # UserFactory's


@pytest.fixture
def rules(settings):
    settings.PASSWORD_MIN_LENGTH = 10
    settings.PASSWORD_MIN_CLASSES = 3
    settings.PASSWORD_HISTORY = 3
    settings.PASSWORD_MAX_AGE_DAYS = 90
    settings.PASSWORD_WARN_DAYS = 14
    settings.PASSWORD_FIRST_LOGIN_CHANGE = True
    settings.LOGIN_NOTICE = True
    for validator in settings.AUTH_PASSWORD_VALIDATORS:
        if validator["NAME"].endswith("MinimumLengthValidator"):
            validator["OPTIONS"] = {"min_length": 10}
    return settings


def change(client, old, new):
    return client.post(CHANGE, {"old_password": old, "new_password1": new, "new_password2": new})


def login(client, username, password, **extra):
    return client.post(LOGIN, {"username": username, "password": password}, **extra)


def test_weak_or_reused_passwords_are_refused_naming_the_rule(client, rules, db):
    user = UserFactory(username="lee", role="team_lead")
    AccountSecurity.objects.filter(user=user).update(must_change_password=False)
    assert login(client, "lee", START).status_code == 302
    hash_before = User.objects.get(pk=user.pk).password
    for weak, text in [
        ("Ab1!x", "짧습니다"),
        ("abcdefghijkl", "3종류 이상"),
        ("abcdefgh1234", "3종류 이상"),
        (START, "최근 3개 비밀번호"),
    ]:
        response = change(client, START, weak)
        assert response.status_code == 200, weak
        page = response.content.decode()
        assert "비밀번호를 바꾸지 못했습니다" in page and text in page, weak
        assert 'href="#id_new_password2"' in page or 'href="#id_new_password1"' in page
    assert User.objects.get(pk=user.pk).password == hash_before  # nothing changed

    assert change(client, START, "Second-pass-2026").status_code == 302
    assert change(client, "Second-pass-2026", "Third-pass-2026x").status_code == 302
    reused = change(client, "Third-pass-2026x", "Second-pass-2026")  # two changes ago
    assert reused.status_code == 200 and "최근 3개 비밀번호" in reused.content.decode()
    assert PasswordHistory.objects.filter(user=user).count() == 3  # start, second, third
    entries = AuditEntry.objects.filter(action="auth.password_set", target="lee", actor="lee")
    assert entries.count() == 2 and all(e.payload["by"] == "self" for e in entries)
    assert "Second-pass-2026" not in "".join(AuditEntry.objects.values_list("canonical", flat=True))


def test_first_login_after_someone_else_set_the_password_must_change_it(client, rules, db):
    UserFactory(username="new", role="team_lead")  # password set by the admin (outside the person)
    assert AccountSecurity.objects.get(user__username="new").must_change_password
    assert login(client, "new", START).status_code == 302
    response = client.get(CONSOLE)
    assert response.status_code == 302 and response["Location"] == CHANGE
    page = client.get(CHANGE).content.decode()
    assert "비밀번호를 바꾸세요" in page
    assert change(client, START, "My-own-pass-2026").status_code == 302
    assert client.get(CONSOLE).status_code == 200
    assert not AccountSecurity.objects.get(user__username="new").must_change_password


def test_expiry_warns_then_forces_a_change(client, rules, db):
    user = UserFactory(username="old", role="team_lead")
    state = AccountSecurity.objects.get(user=user)
    state.must_change_password = False
    state.password_changed_at = timezone.now() - dt.timedelta(days=80)
    state.save()
    assert login(client, "old", START).status_code == 302
    response = client.get(CONSOLE)
    assert response.status_code == 200, response.get("Location")
    page = response.content.decode()
    assert "만료됩니다" in page
    assert "만료됩니다" not in client.get(CONSOLE).content.decode()  # warned once per session
    AccountSecurity.objects.filter(user=user).update(password_changed_at=timezone.now() - dt.timedelta(days=91))
    response = client.get(CONSOLE)
    assert response.status_code == 302 and response["Location"] == CHANGE
    assert "사용 기간이 끝났습니다" in client.get(CHANGE).content.decode()
    assert change(client, START, "Renewed-pass-2026").status_code == 302
    assert client.get(CONSOLE).status_code == 200


def test_last_login_and_failures_since_are_shown_after_login(client, rules, db):
    user = UserFactory(username="kim", role="team_lead")
    AccountSecurity.objects.filter(user=user).update(must_change_password=False)
    first = login(client, "kim", START, REMOTE_ADDR="10.1.1.1")
    assert "이 계정의 첫 로그인입니다" in client.get(first["Location"]).content.decode()
    client.logout()
    for _ in range(2):
        assert login(client, "kim", "Wrong-guess-1", REMOTE_ADDR="10.9.9.9").status_code == 200
    response = login(client, "kim", START, REMOTE_ADDR="10.1.1.2")
    page = client.get(response["Location"]).content.decode()
    assert "마지막 로그인:" in page and "(10.1.1.1)" in page
    assert "로그인 실패 2회" in page and "10.9.9.9" in page
    client.logout()
    assert login(client, "kim", START, REMOTE_ADDR="10.1.1.3").status_code == 302
    page = client.get(CONSOLE).content.decode()
    assert "(10.1.1.2)" in page and "로그인 실패" not in page  # the count starts again
