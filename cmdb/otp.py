"""Second factor (django-otp): TOTP enrolment with a QR code drawn here (SVG, no outside
service on a closed network), single-use recovery codes, the second step of the login for
whoever holds the permission cmdb.roles.SECOND_FACTOR_PERMISSION (the roles that can change
production, by the role table; GUARDIA_OTP_REQUIRED_ROLES overrides which), and the step-up check
that governance asks before a high or critical-risk decision and a global-stop release
(settings.STEP_UP_CHECK, so governance never imports this module).

A second factor is "fresh" for GUARDIA_OTP_STEP_UP_MINUTES after it was entered; the
request's freshness is set by cmdb.auth_policy.AccountPolicyMiddleware for the service
that runs inside the request.
"""

from __future__ import annotations

import contextvars
import io

from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.db import transaction
from django.shortcuts import redirect, render
from django.utils import timezone
from django.utils.http import url_has_allowed_host_and_scheme
from django.utils.translation import gettext as _
from django.views.decorators.http import require_http_methods
from django_otp import login as otp_login
from django_otp import match_token, user_has_device
from django_otp.plugins.otp_static.models import StaticDevice, StaticToken
from django_otp.plugins.otp_totp.models import TOTPDevice

from . import account_audit, accounts
from .roles import SECOND_FACTOR_PERMISSION

RECOVERY_CODES = 10
VERIFIED_AT = "otp_verified_at"
# (user pk, when the second factor was last entered) for the request being served.
_FRESH: contextvars.ContextVar[tuple[int, float] | None] = contextvars.ContextVar("otp_fresh", default=None)


def enabled() -> bool:
    return bool(getattr(settings, "OTP_ENABLED", False))


def required_for(user) -> bool:
    if not enabled() or not user.is_authenticated:
        return False
    return bool(user.is_superuser or user.has_perm(SECOND_FACTOR_PERMISSION))


def remember_request(request) -> contextvars.Token:
    user = request.user
    at = request.session.get(VERIFIED_AT) if user.is_authenticated else None
    return _FRESH.set((user.pk, float(at)) if at else None)


def forget_request(token: contextvars.Token) -> None:
    _FRESH.reset(token)


def has_fresh_second_factor(user, action: str = "") -> bool:
    """STEP_UP_CHECK: was a second factor entered by this user within the step-up window?"""
    fresh = _FRESH.get()
    window = getattr(settings, "OTP_STEP_UP_MINUTES", 5) * 60
    return bool(fresh and fresh[0] == user.pk and timezone.now().timestamp() - fresh[1] <= window)


def qr_svg(text: str) -> str:
    import qrcode
    import qrcode.image.svg

    image = qrcode.make(text, image_factory=qrcode.image.svg.SvgPathImage, box_size=8)
    buffer = io.BytesIO()
    image.save(buffer)
    return buffer.getvalue().decode()


def _next(request, default: str) -> str:
    target = request.POST.get("next") or request.GET.get("next") or ""
    ok = url_has_allowed_host_and_scheme(target, allowed_hosts={request.get_host()}, require_https=request.is_secure())
    return target if ok else default


def _verified(request, device, kind: str) -> None:
    otp_login(request, device)
    request.session[VERIFIED_AT] = timezone.now().timestamp()
    account_audit.record(request.user, "auth.otp_verified", request.user.get_username(), {"source": "login"}, kind=kind)


def new_recovery_codes(user) -> list[str]:
    """Replace the user's recovery codes; each works once."""
    device, _created = StaticDevice.objects.get_or_create(user=user, name="recovery", defaults={"confirmed": True})
    device.token_set.all().delete()
    codes = [StaticToken.random_token() for _i in range(RECOVERY_CODES)]
    StaticToken.objects.bulk_create([StaticToken(device=device, token=code) for code in codes])
    return codes


@login_required
@require_http_methods(["GET", "POST"])
def setup(request):
    user = request.user
    if TOTPDevice.objects.filter(user=user, confirmed=True).exists():
        messages.info(request, _("이미 2차 인증 기기를 등록했습니다."))
        return redirect("otp_verify")
    device = TOTPDevice.objects.filter(user=user, confirmed=False).first()
    if device is None:
        device = TOTPDevice.objects.create(user=user, name="default", confirmed=False)
    error = ""
    if request.method == "POST":
        if device.verify_token((request.POST.get("token") or "").strip()):
            with transaction.atomic():
                device.confirmed = True
                device.save(update_fields=["confirmed"])
                codes = new_recovery_codes(user)
                account_audit.record(user, "auth.otp_enrolled", user.get_username(), {"source": "login"})
            _verified(request, device, "totp")
            return render(
                request,
                "registration/otp_recovery_codes.html",
                {"codes": codes, "next": _next(request, settings.LOGIN_REDIRECT_URL)},
            )
        error = _("인증 코드가 맞지 않습니다. 앱에 보이는 6자리 숫자를 입력하세요.")
    return render(
        request,
        "registration/otp_setup.html",
        {
            "qr": qr_svg(device.config_url),
            "secret": device.key,
            "error": error,
            "next": _next(request, settings.LOGIN_REDIRECT_URL),
        },
        status=400 if error else 200,
    )


@login_required
@require_http_methods(["GET", "POST"])
def verify(request):
    user = request.user
    if not user_has_device(user):
        return redirect(f"/accounts/otp/setup/?next={_next(request, settings.LOGIN_REDIRECT_URL)}")
    error = ""
    if request.method == "POST":
        device = match_token(user, (request.POST.get("token") or "").strip().replace(" ", ""))
        if device is not None:
            _verified(request, device, "recovery" if isinstance(device, StaticDevice) else "totp")
            return redirect(_next(request, settings.LOGIN_REDIRECT_URL))
        account_audit.record(user, "auth.otp_failed", user.get_username(), {"source": "login"})
        error = _("인증 코드가 맞지 않거나 이미 쓴 복구 코드입니다.")
    return render(
        request,
        "registration/otp_verify.html",
        {"error": error, "next": _next(request, settings.LOGIN_REDIRECT_URL)},
        status=400 if error else 200,
    )


def reset_second_factor(actor, user) -> bool:
    """Remove the user's TOTP devices and recovery codes (a lost or replaced phone), so the
    next login asks them to enrol again. Only someone who may manage the account (the admin
    for an ordinary account, the security officer for a privileged one; never one's own) may
    do it, with a second factor entered within the step-up window. Returns whether there was
    anything to remove."""
    if not accounts.may_manage(actor, user):
        raise accounts.AccountRefused(
            _("이 계정의 2차 인증을 초기화할 권한이 없습니다. 특권 계정은 보안책임자가 관리합니다.")
        )
    if enabled() and not has_fresh_second_factor(actor, "auth.otp_reset"):
        raise accounts.AccountRefused(
            _(
                "다른 사람의 2차 인증을 초기화하려면 방금 확인한 2차 인증이 필요합니다: "
                "/accounts/otp/ 에서 인증한 뒤 다시 하세요."
            )
        )
    with transaction.atomic():
        totp = TOTPDevice.objects.filter(user=user)
        static = StaticDevice.objects.filter(user=user)
        removed = {"totp_devices": totp.count(), "recovery_devices": static.count()}
        if not any(removed.values()):
            return False
        StaticToken.objects.filter(device__user=user).delete()
        static.delete()
        totp.delete()
        # A session left open on the lost phone or laptop must not be the one that enrols
        # the new device: every open session of the holder ends with the reset.
        removed["sessions_ended"] = end_sessions(user)
        account_audit.record(actor, "auth.otp_reset", user.get_username(), **removed)
    return True


def end_sessions(user) -> int:
    """End every open session of `user` (database sessions); returns how many."""
    from django.contrib.sessions.models import Session

    mine = [
        session.pk
        for session in Session.objects.filter(expire_date__gt=timezone.now()).iterator()
        if session.get_decoded().get("_auth_user_id") == str(user.pk)
    ]
    Session.objects.filter(pk__in=mine).delete()
    return len(mine)


class StepUpRefused(Exception):
    """A second factor asked at the shell was missing or wrong."""


def verify_at_shell(username: str | None, token: str | None, action: str, permission: str):
    """The step-up for work started at the server (the vault key rotation): the named
    person holds `permission` and gives a current code (or an unused recovery code) of
    their own device. Returns the person, who becomes the audited actor."""
    from django.contrib.auth import get_user_model

    user = get_user_model().objects.filter(username=username or "", is_active=True).first()
    if user is None or not user.has_perm(permission):
        raise StepUpRefused(f"--user: {username or '(none)'} is not an active account allowed to do this")
    device = match_token(user, (token or "").strip()) if token else None
    where = account_audit.outside_source()
    source = {"source": "shell", "command": where["source"], "os_user": where["os_user"]}
    if device is None:
        account_audit.record(user, "auth.otp_failed", user.get_username(), source, step_up=action)
        raise StepUpRefused("--otp: the second-factor code is missing, wrong or already used")
    account_audit.record(
        user,
        "auth.otp_verified",
        user.get_username(),
        source,
        step_up=action,
        kind="recovery" if isinstance(device, StaticDevice) else "totp",
    )
    return user
