"""Resetting a lost second factor from the admin: only someone who manages the account may,
with a fresh second factor of their own; the devices and recovery codes go, the reset is
audited, and the holder enrols again at the next login."""

from __future__ import annotations

import datetime as dt

import pytest
import time_machine
from django.test import Client
from django.utils import timezone
from django_otp.plugins.otp_static.models import StaticDevice, StaticToken
from django_otp.plugins.otp_totp.models import TOTPDevice

from audit.models import AuditEntry
from cmdb.otp import new_recovery_codes
from tests.cmdb.test_otp import CONSOLE, SETUP, VERIFY, code, login, otp_on  # noqa: F401 - fixture
from tests.factories import UserFactory

CHANGELIST = "/admin/auth/user/"


def enrolled(user) -> TOTPDevice:
    device = TOTPDevice.objects.create(user=user, name="default", confirmed=True)
    new_recovery_codes(user)
    return device


def devices_of(user) -> tuple[int, int, int]:
    return (
        TOTPDevice.objects.filter(user=user).count(),
        StaticDevice.objects.filter(user=user).count(),
        StaticToken.objects.filter(device__user=user).count(),
    )


def reset(client, *users):
    return client.post(
        CHANGELIST, {"action": "reset_second_factors", "_selected_action": [u.pk for u in users]}, follow=True
    )


@pytest.fixture
def people(otp_on):  # noqa: F811
    victim = UserFactory(username="sup-lost-phone", role="supervisor")
    officer = UserFactory(username="so-officer", role="security_officer")
    admin = UserFactory(username="adm-reset", role="admin", is_staff=True)
    attacker = UserFactory(username="sup-attacker", role="supervisor", is_staff=True)
    devices = {user: enrolled(user) for user in (victim, officer, admin, attacker)}
    return victim, officer, admin, attacker, devices


def test_no_one_without_the_right_resets_a_second_factor(client, people):
    victim, officer, admin, attacker, devices = people
    # A supervisor opens the admin (staff) with a verified second factor, and asks anyway.
    login(client, attacker.username)
    assert client.post(VERIFY, {"token": code(devices[attacker]), "next": CONSOLE}).status_code == 302
    reset(client, victim, admin)
    assert devices_of(victim) == (1, 1, 10) and devices_of(admin) == (1, 1, 10)
    client.post("/accounts/logout/")

    # The admin manages ordinary accounts only: the security officer's device is out of reach.
    login(client, admin.username)
    assert client.post(VERIFY, {"token": code(devices[admin]), "next": CONSOLE}).status_code == 302
    page = reset(client, officer).content.decode()
    assert "특권 계정은 보안책임자가 관리합니다" in page
    assert devices_of(officer) == (1, 1, 10)
    assert not AuditEntry.objects.filter(action="auth.otp_reset").exists()


def test_admin_resets_with_a_fresh_second_factor_and_the_holder_enrols_again(client, people):
    victim, _officer, admin, _attacker, devices = people
    start = timezone.now()
    with time_machine.travel(start, tick=False) as clock:
        # The holder's session still open on the lost phone, second factor verified.
        lost_phone = Client()
        login(lost_phone, victim.username)
        assert lost_phone.post(VERIFY, {"token": code(devices[victim]), "next": CONSOLE}).status_code == 302
        assert lost_phone.get(CONSOLE).status_code == 200
        login(client, admin.username)
        assert client.post(VERIFY, {"token": code(devices[admin]), "next": CONSOLE}).status_code == 302
        clock.move_to(start + dt.timedelta(minutes=6))  # still logged in, the factor no longer fresh
        page = reset(client, victim).content.decode()
        assert "방금 확인한 2차 인증이 필요합니다" in page
        assert devices_of(victim) == (1, 1, 10)

        clock.move_to(start + dt.timedelta(minutes=6, seconds=40))  # a new TOTP time step
        assert client.post(VERIFY, {"token": code(devices[admin]), "next": CONSOLE}).status_code == 302
        page = reset(client, victim).content.decode()
        assert "1개 계정의 2차 인증을 초기화했습니다" in page
        assert devices_of(victim) == (0, 0, 0)
        assert devices_of(admin) == (1, 1, 10)  # only the selected account
        entry = AuditEntry.objects.get(action="auth.otp_reset")
        assert entry.actor == admin.username and entry.target == victim.username
        assert entry.payload["totp_devices"] == 1 and entry.payload["recovery_devices"] == 1
        assert entry.payload["sessions_ended"] == 1
        # The phone's session ended with the reset: it cannot be the one that enrols again.
        assert lost_phone.get(CONSOLE)["Location"].startswith("/accounts/login/")
        client.post("/accounts/logout/")

        # The holder's next login goes to enrolment, not to the console.
        login(client, victim.username)
        first = client.get(CONSOLE)
        assert first["Location"] == f"{VERIFY}?next={CONSOLE}"
        assert client.get(first["Location"])["Location"].startswith(SETUP)
