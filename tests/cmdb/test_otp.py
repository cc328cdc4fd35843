"""Second factor through the public pages: TOTP enrolment with a locally drawn QR code and
login for a role that requires it, single-use recovery codes, and the step-up asked
before a high-risk approval and a global-stop release."""

from __future__ import annotations

import datetime as dt

import pytest
import time_machine
from django.contrib.auth.models import Permission
from django.utils import timezone
from django_otp.oath import totp
from django_otp.plugins.otp_totp.models import TOTPDevice

from audit.models import AuditEntry
from cmdb.roles import ensure_roles
from governance import services
from governance.models import GlobalStop, StepStatus
from tests.factories import UserFactory, governance_world
from tests.task_parameters import valid_parameters

LOGIN, CONSOLE, VERIFY, SETUP = "/accounts/login/", "/console/", "/accounts/otp/", "/accounts/otp/setup/"
PASSWORD = "pw-Guardia-1"


@pytest.fixture
def otp_on(settings, db):
    settings.OTP_ENABLED = True
    settings.OTP_STEP_UP_MINUTES = 5
    settings.STEP_UP_CHECK = "cmdb.otp.has_fresh_second_factor"
    return settings


def login(client, username):
    assert client.post(LOGIN, {"username": username, "password": PASSWORD}).status_code == 302


def code(device: TOTPDevice) -> str:
    """The code an authenticator app shows now (the clock may be frozen by the test)."""
    return f"{totp(device.bin_key, step=device.step, t0=device.t0, digits=device.digits):0{device.digits}d}"


def test_totp_enrolment_and_login_for_a_role_that_requires_it(client, otp_on):
    UserFactory(username="so", role="security_officer")
    start = timezone.now()
    with time_machine.travel(start, tick=False) as clock:
        login(client, "so")
        first = client.get(CONSOLE)
        assert first.status_code == 302 and first["Location"] == f"{VERIFY}?next={CONSOLE}"
        assert client.get(first["Location"])["Location"].startswith(SETUP)  # nothing enrolled yet
        page = client.get(SETUP).content.decode()
        device = TOTPDevice.objects.get(user__username="so", confirmed=False)
        assert "<svg" in page and "http" not in page.split("<svg", 1)[1].split("</svg>")[0].replace(
            "http://www.w3.org/2000/svg", ""
        )  # drawn here, nothing fetched
        assert device.key in page
        wrong = client.post(SETUP, {"token": "000000" if code(device) != "000000" else "111111"})
        assert wrong.status_code == 400 and "인증 코드가 맞지 않습니다" in wrong.content.decode()
        assert client.get(CONSOLE).status_code == 302  # still not through
        clock.move_to(start + dt.timedelta(seconds=5))  # past the device's throttle after a wrong code
        enrolled = client.post(SETUP, {"token": code(device), "next": CONSOLE})
        assert enrolled.status_code == 200
        codes = enrolled.context["codes"]
        assert len(codes) == 10 and all(c in enrolled.content.decode() for c in codes)
        assert client.get(CONSOLE).status_code == 200
        client.post("/accounts/logout/")

        clock.move_to(start + dt.timedelta(minutes=2))
        login(client, "so")
        assert client.get(CONSOLE).status_code == 302
        assert client.post(VERIFY, {"token": "123", "next": CONSOLE}).status_code == 400
        clock.move_to(start + dt.timedelta(minutes=2, seconds=5))
        device.refresh_from_db()
        ok = client.post(VERIFY, {"token": code(device), "next": CONSOLE})
        assert ok.status_code == 302 and ok["Location"] == CONSOLE
        assert client.get(CONSOLE).status_code == 200
    assert AuditEntry.objects.filter(action="auth.otp_enrolled", target="so").count() == 1
    assert AuditEntry.objects.filter(action="auth.otp_verified", target="so").count() == 2
    assert AuditEntry.objects.filter(action="auth.otp_failed", target="so").count() == 1


def test_recovery_codes_work_once(client, otp_on):
    from cmdb.otp import new_recovery_codes

    user = UserFactory(username="adm", role="admin")
    TOTPDevice.objects.create(user=user, name="default", confirmed=True)
    codes = new_recovery_codes(user)
    login(client, "adm")
    assert client.post(VERIFY, {"token": codes[0], "next": CONSOLE}).status_code == 302
    assert client.get(CONSOLE).status_code == 200
    client.post("/accounts/logout/")
    login(client, "adm")
    reused = client.post(VERIFY, {"token": codes[0], "next": CONSOLE})
    assert reused.status_code == 400 and "이미 쓴 복구 코드" in reused.content.decode()
    assert client.get(CONSOLE).status_code == 302
    with time_machine.travel(timezone.now() + dt.timedelta(seconds=5)):  # past the throttle after a failure
        assert client.post(VERIFY, {"token": codes[1], "next": CONSOLE}).status_code == 302
    entries = AuditEntry.objects.filter(action="auth.otp_verified", target="adm")
    assert [e.payload["kind"] for e in entries] == ["recovery", "recovery"]


def test_a_team_lead_logs_in_without_a_second_factor(client, otp_on):
    UserFactory(username="lead", role="team_lead")
    login(client, "lead")
    assert client.get(CONSOLE).status_code == 200


def test_the_second_factor_follows_the_permission_not_the_role_name(client, otp_on):
    """A team lead given the permission on their own account must give the second factor;
    when the operator's GUARDIA_OTP_REQUIRED_ROLES leaves the supervisor out, the role table
    applied at migrate takes the permission away and a supervisor logs in with a password."""
    lead = UserFactory(username="lead", role="team_lead")
    lead.user_permissions.add(Permission.objects.get(codename="require_second_factor"))
    login(client, "lead")
    assert client.get(CONSOLE)["Location"] == f"{VERIFY}?next={CONSOLE}"

    UserFactory(username="sup", role="supervisor")
    client.logout()
    login(client, "sup")
    assert client.get(CONSOLE)["Location"] == f"{VERIFY}?next={CONSOLE}"
    otp_on.OTP_REQUIRED_ROLES = ["admin", "security_officer"]
    ensure_roles()
    client.logout()
    login(client, "sup")
    assert client.get(CONSOLE).status_code == 200


def test_high_risk_approval_needs_a_fresh_second_factor(client, otp_on, django_capture_on_commit_callbacks):
    world = governance_world()
    device = TOTPDevice.objects.create(user=world.owner, name="default", confirmed=True)
    with django_capture_on_commit_callbacks(execute=False):
        task = services.submit_task(
            world.requester,
            system=world.system,
            sub_type="APP_DEPLOY",
            title="배포",
            targets=world.servers,
            parameters=valid_parameters("APP_DEPLOY"),
        )
    assert task.risk == "HIGH"
    step = task.steps.get(status=StepStatus.PENDING, activated_at__isnull=False)
    decide = f"/console/approvals/{step.pk}/decide/"
    form = {"decision": "APPROVED", "comments": "", "plan_sha256": task.plan_sha256}
    start = timezone.now()
    with time_machine.travel(start, tick=False) as clock:
        login(client, "owner")
        refused = client.post(decide, form, follow=True)
        assert "2차 인증이 필요합니다" in refused.content.decode()
        step.refresh_from_db()
        assert step.status == StepStatus.PENDING and not AuditEntry.objects.filter(action="approval.decided").exists()

        assert client.post(VERIFY, {"token": code(device), "next": CONSOLE}).status_code == 302
        clock.move_to(start + dt.timedelta(minutes=6))  # no longer fresh
        client.post(decide, form)
        step.refresh_from_db()
        assert step.status == StepStatus.PENDING

        assert client.post(VERIFY, {"token": code(device), "next": CONSOLE}).status_code == 302
        with django_capture_on_commit_callbacks(execute=False):
            client.post(decide, form)
        step.refresh_from_db()
        assert step.status == StepStatus.APPROVED and step.actual_approver == world.owner


def test_global_stop_release_needs_a_fresh_second_factor(client, otp_on):
    world = governance_world()
    device = TOTPDevice.objects.create(user=world.pm, name="default", confirmed=True)
    login(client, "pm")
    client.post("/console/stop/", {"action": "engage", "reason": "점검"})
    assert GlobalStop.objects.get(id=1).engaged
    refused = client.post("/console/stop/", {"action": "release"}, follow=True)
    assert "2차 인증이 필요합니다" in refused.content.decode()
    assert GlobalStop.objects.get(id=1).engaged
    assert client.post(VERIFY, {"token": code(device), "next": CONSOLE}).status_code == 302
    client.post("/console/stop/", {"action": "release"})
    assert not GlobalStop.objects.get(id=1).engaged


def test_vault_key_rotation_at_the_shell_needs_the_admins_second_factor(otp_on, tmp_path):
    from django.core.management import CommandError, call_command

    from cmdb import vault
    from cmdb.models import Credential
    from tests.factories import CredentialFactory

    otp_on.VAULT_KEY, otp_on.VAULT_KEY_FILE = vault.generate_key(), ""
    CredentialFactory(name="c1", secret="rotate-Secret-1")
    before = Credential.objects.get(name="c1").secret_encrypted
    admin = UserFactory(username="adm", role="admin")
    lead = UserFactory(username="lead", role="team_lead")
    device = TOTPDevice.objects.create(user=admin, name="default", confirmed=True)
    TOTPDevice.objects.create(user=lead, name="default", confirmed=True)
    new_file = tmp_path / "new.key"
    new_file.write_text(vault.generate_key() + "\n")
    for options, refusal in [
        ({}, "--user"),
        ({"user": "lead", "otp": "123456"}, "--user"),
        ({"user": "adm", "otp": "000000" if code(device) != "000000" else "111111"}, "--otp"),
    ]:
        with pytest.raises(CommandError, match=f"rotation refused, nothing changed: {refusal}"):
            call_command("rotate_vault_key", new_key_file=new_file, **options)
        assert Credential.objects.get(name="c1").secret_encrypted == before
    assert not AuditEntry.objects.filter(action="cmdb.vault_rotate").exists()
    with time_machine.travel(timezone.now() + dt.timedelta(seconds=5)):  # past the throttle after a wrong code
        call_command("rotate_vault_key", new_key_file=new_file, user="adm", otp=code(device))
    assert Credential.objects.get(name="c1").secret_encrypted != before
    assert AuditEntry.objects.get(action="cmdb.vault_rotate").actor == "adm"
    assert AuditEntry.objects.filter(action="auth.otp_verified", target="adm", payload__source="shell").exists()
