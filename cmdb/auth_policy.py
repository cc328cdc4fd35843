"""The public-sector password and session rules, each configurable (guardia/settings.py,
GUARDIA_PASSWORD_* and GUARDIA_SESSION_*) with a safe default:

* passwords: a minimum length and a minimum number of character classes (lower case,
  upper case, digits, symbols), none of the account's recent passwords again, an expiry
  with a warning beforehand, and a change at the first login after someone else set it;
* sessions: an idle timeout and an absolute lifetime, and one session per account (a new
  login ends the old one; both are told);
* after each login the person sees their previous successful login and the failed
  attempts since, so a stranger's use of the account is noticed by its owner.

Every event is written to the audit chain. Accounts without a usable password (directory
accounts, cmdb.ldap) follow their directory's password rules, not these.
"""

from __future__ import annotations

import contextvars
import datetime as dt
import secrets
from typing import Any

from django.conf import settings
from django.contrib import messages
from django.contrib.auth import get_user_model, logout
from django.contrib.auth import views as auth_views
from django.contrib.auth.hashers import check_password
from django.contrib.auth.signals import user_logged_in, user_logged_out, user_login_failed
from django.core.exceptions import ValidationError
from django.db.models.signals import post_save, pre_save
from django.shortcuts import redirect
from django.utils import timezone
from django.utils.translation import gettext as _
from django.utils.translation import ngettext

from . import account_audit, otp
from .models import AccountSecurity, PasswordHistory

CLASSES = (str.islower, str.isupper, str.isdigit, lambda c: not c.isalnum())
# A page a person who must change their password may still reach.
_OPEN_PATHS = ("/accounts/", "/static/", "/i18n/")
SESSION_TOKEN = "auth_policy_token"
_SEEN_WRITE_EVERY = dt.timedelta(seconds=30)
# True while a person changes their own password (the change page).
_BY_SELF: contextvars.ContextVar[bool] = contextvars.ContextVar("password_by_self", default=False)


def _setting(name: str, default: Any) -> Any:
    return getattr(settings, name, default)


# --- password validators (AUTH_PASSWORD_VALIDATORS) ------------------------------------------


class CharacterClassValidator:
    """At least `min_classes` of: lower case, upper case, digits, symbols."""

    def __init__(self, min_classes: int | None = None):
        self.min_classes = min_classes

    def _required(self) -> int:
        return self.min_classes if self.min_classes is not None else _setting("PASSWORD_MIN_CLASSES", 3)

    def validate(self, password: str, user=None) -> None:
        used = sum(any(test(c) for c in password) for test in CLASSES)
        if used < self._required():
            message = _("비밀번호에 영문 소문자, 대문자, 숫자, 특수문자 중 %(n)d종류 이상을 섞어야 합니다.")
            raise ValidationError(message % {"n": self._required()}, code="password_too_few_classes")

    def get_help_text(self) -> str:
        return _("영문 소문자, 대문자, 숫자, 특수문자 중 %(n)d종류 이상") % {"n": self._required()}


class PasswordHistoryValidator:
    """None of the account's last PASSWORD_HISTORY passwords (the current one included)."""

    def validate(self, password: str, user=None) -> None:
        keep = _setting("PASSWORD_HISTORY", 5)
        if user is None or user.pk is None or keep <= 0:
            return
        current = get_user_model().objects.filter(pk=user.pk).values_list("password", flat=True).first()
        recent = PasswordHistory.objects.filter(user_id=user.pk).values_list("password", flat=True)[:keep]
        hashes = [current or "", *recent]
        if any(h and check_password(password, h) for h in hashes):
            raise ValidationError(
                _("최근 %(n)d개 비밀번호는 다시 쓸 수 없습니다.") % {"n": keep}, code="password_reused"
            )

    def get_help_text(self) -> str:
        return _("최근 %(n)d개 비밀번호와 달라야 합니다.") % {"n": _setting("PASSWORD_HISTORY", 5)}


# --- password changes, wherever they are made ------------------------------------------------


def state_of(user) -> AccountSecurity:
    state, _created = AccountSecurity.objects.get_or_create(user=user, defaults={"password_changed_at": timezone.now()})
    return state


def _before_user_save(sender, instance, update_fields=None, **kwargs) -> None:
    if update_fields is not None and "password" not in update_fields:
        return
    instance._auth_policy_old_hash = (
        sender.objects.filter(pk=instance.pk).values_list("password", flat=True).first() if instance.pk else None
    )


def _user_saved(sender, instance, created, update_fields=None, **kwargs) -> None:
    if "_auth_policy_old_hash" not in instance.__dict__:
        return  # a save that leaves the password alone (last_login, profile fields)
    old = instance.__dict__.pop("_auth_policy_old_hash")
    # Django re-hashes on login (update_fields=["password"], no raw value): not a change.
    rehash = update_fields is not None and set(update_fields) == {"password"} and instance._password is None
    if rehash or instance.password == old or not instance.has_usable_password():
        return
    actor = account_audit._ACTOR.get()
    by_self = _BY_SELF.get() or (actor is not None and actor.pk == instance.pk)
    AccountSecurity.objects.update_or_create(
        user=instance,
        defaults={
            "password_changed_at": timezone.now(),
            "must_change_password": not by_self and _setting("PASSWORD_FIRST_LOGIN_CHANGE", True),
        },
    )
    PasswordHistory.objects.create(user=instance, password=instance.password)
    keep = max(_setting("PASSWORD_HISTORY", 5), 1)
    stale = PasswordHistory.objects.filter(user=instance).values_list("pk", flat=True)[keep:]
    PasswordHistory.objects.filter(pk__in=list(stale)).delete()


def password_expires_at(user, state: AccountSecurity) -> dt.datetime | None:
    days = _setting("PASSWORD_MAX_AGE_DAYS", 90)
    if not days or state.password_changed_at is None or not user.has_usable_password():
        return None
    return state.password_changed_at + dt.timedelta(days=days)


# --- logins ------------------------------------------------------------------------------------


def _address(request) -> str:
    return (getattr(request, "META", {}) or {}).get("REMOTE_ADDR", "")[:64] if request is not None else ""


def _when(moment: dt.datetime) -> str:
    return timezone.localtime(moment).strftime("%Y-%m-%d %H:%M")


def _logged_in(sender, request=None, user=None, **kwargs) -> None:
    state = state_of(user)
    now = timezone.now()
    if request is not None and hasattr(request, "session"):
        if _setting("LOGIN_NOTICE", True) and hasattr(request, "_messages"):
            if state.last_login_at:
                messages.info(
                    request,
                    _("마지막 로그인: %(when)s (%(ip)s)")
                    % {"when": _when(state.last_login_at), "ip": state.last_login_ip or "-"},
                )
            else:
                messages.info(request, _("이 계정의 첫 로그인입니다."))
            if state.failures_since_login:
                messages.warning(
                    request,
                    ngettext(
                        "마지막 로그인 이후 로그인 실패 %(n)d회 (마지막 실패: %(when)s, %(ip)s)",
                        "마지막 로그인 이후 로그인 실패 %(n)d회 (마지막 실패: %(when)s, %(ip)s)",
                        state.failures_since_login,
                    )
                    % {
                        "n": state.failures_since_login,
                        "when": _when(state.last_failed_at or now),
                        "ip": state.last_failed_ip or "-",
                    },
                )
        request.session["auth_policy_started"] = now.timestamp()
        request.session["auth_policy_seen"] = now.timestamp()
        # The session carries a token that survives Django's key rotation (password change);
        # the account keeps the token of its one current session.
        token = secrets.token_urlsafe(24)
        request.session[SESSION_TOKEN] = token
        previous_open = (
            bool(state.session_key)
            and state.last_login_at is not None
            and (now - state.last_login_at < dt.timedelta(hours=_setting("SESSION_MAX_HOURS", 12) or 24 * 365))
        )
        state.session_key = token
        if _setting("SESSION_SINGLE", True) and previous_open:
            account_audit.record(
                user, "auth.session_replaced", user.get_username(), {"source": "login"}, ip=_address(request)
            )
            if hasattr(request, "_messages"):
                messages.warning(
                    request,
                    _("이 계정으로 열려 있던 다른 세션을 종료했습니다. 한 계정은 한 곳에서만 로그인할 수 있습니다."),
                )
    state.last_login_at, state.last_login_ip = now, _address(request)
    state.failures_since_login = 0
    state.save()


def _logged_out(sender, request=None, user=None, **kwargs) -> None:
    if user is not None and request is not None and hasattr(request, "session"):
        # Only the current session's logout closes it; an old one ended elsewhere does not.
        AccountSecurity.objects.filter(user=user, session_key=request.session.get(SESSION_TOKEN, "-")).update(
            session_key=""
        )


def _login_failed(sender, credentials=None, request=None, **kwargs) -> None:
    username = str((credentials or {}).get("username", ""))[:150]
    user = get_user_model().objects.filter(username=username).first() if username else None
    if user is None:
        return
    state = state_of(user)
    state.last_failed_at, state.last_failed_ip = timezone.now(), _address(request)
    state.failures_since_login += 1
    state.save(update_fields=["last_failed_at", "last_failed_ip", "failures_since_login"])


# --- every request -------------------------------------------------------------------------------


def _end_session(request, action: str, message: str, **payload: Any):
    user = request.user
    account_audit.record(user, action, user.get_username(), {"source": "session"}, **payload)
    logout(request)
    messages.warning(request, message)
    return redirect(f"{settings.LOGIN_URL}?next={request.path}")


def idle_seconds() -> int:
    """The idle limit: SESSION_IDLE_SECONDS when set (a short limit for a demo or a test),
    else SESSION_IDLE_MINUTES; 0 turns it off."""
    return int(_setting("SESSION_IDLE_SECONDS", 0) or _setting("SESSION_IDLE_MINUTES", 30) * 60)


def _idle_message(seconds: int) -> str:
    if seconds % 60:
        return _("%(s)d초 동안 사용하지 않아 로그아웃되었습니다.") % {"s": seconds}
    return _("%(m)d분 동안 사용하지 않아 로그아웃되었습니다.") % {"m": seconds // 60}


class AccountPolicyMiddleware:
    """Session lifetime, single session, password expiry and the first-login change, for
    console and app pages (API token requests carry no session and are not affected)."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        user = getattr(request, "user", None)
        if user is not None and user.is_authenticated and hasattr(request, "session"):
            answer = self.check(request, user)
            if answer is not None:
                return answer
            token = otp.remember_request(request)
            try:
                return self.get_response(request)
            finally:
                otp.forget_request(token)
        return self.get_response(request)

    def check(self, request, user):
        now = timezone.now()
        session = request.session
        started = session.get("auth_policy_started")
        seen = session.get("auth_policy_seen")
        max_hours = _setting("SESSION_MAX_HOURS", 12)
        idle = idle_seconds()
        if max_hours and started and now.timestamp() - started > max_hours * 3600:
            return _end_session(
                request,
                "auth.session_expired",
                _("로그인 후 %(h)d시간이 지나 다시 로그인해야 합니다.") % {"h": max_hours},
                reason="lifetime",
            )
        if idle and seen and now.timestamp() - seen > idle:
            return _end_session(request, "auth.session_expired", _idle_message(idle), reason="idle")
        state = AccountSecurity.objects.filter(user=user).first()
        if (
            _setting("SESSION_SINGLE", True)
            and state is not None
            and state.session_key
            and state.session_key != session.get(SESSION_TOKEN)
        ):
            return _end_session(
                request,
                "auth.session_ended_elsewhere",
                _("같은 계정으로 다른 곳에서 로그인하여 이 세션이 종료되었습니다."),
            )
        # The last activity is written at most every 30 s (a session save per request costs a
        # database write), and often enough that a short idle limit still sees every click.
        if not seen or now.timestamp() - seen > min(_SEEN_WRITE_EVERY.total_seconds(), idle / 4 or 30):
            session["auth_policy_seen"] = now.timestamp()
        if request.path.startswith(_OPEN_PATHS):
            return None
        if otp.required_for(user) and not user.is_verified():
            return redirect(f"/accounts/otp/?next={request.path}")
        if state is None:
            return None
        if state.must_change_password and user.has_usable_password():
            messages.warning(request, _("처음 로그인했거나 다른 사람이 설정한 비밀번호입니다. 비밀번호를 바꾸세요."))
            return redirect("password_change")
        expires = password_expires_at(user, state)
        if expires is not None:
            if now >= expires:
                messages.warning(request, _("비밀번호 사용 기간이 끝났습니다. 비밀번호를 바꾸세요."))
                return redirect("password_change")
            warn = dt.timedelta(days=_setting("PASSWORD_WARN_DAYS", 14))
            if now >= expires - warn and not session.get("auth_policy_warned"):
                session["auth_policy_warned"] = True
                notice = _("비밀번호가 %(when)s에 만료됩니다. 미리 바꾸세요.")
                messages.warning(request, notice % {"when": _when(expires)})
        return None


class PasswordChangeView(auth_views.PasswordChangeView):
    """A person changes their own password (asked for the old one); the rules above apply."""

    template_name = "registration/password_change.html"

    def get_success_url(self) -> str:
        return settings.LOGIN_REDIRECT_URL

    def form_valid(self, form):
        token = _BY_SELF.set(True)
        try:
            with account_audit.acting_as(self.request.user):
                response = super().form_valid(form)
        finally:
            _BY_SELF.reset(token)
        self.request.session.pop("auth_policy_warned", None)
        messages.success(self.request, _("비밀번호를 바꿨습니다."))
        return response


def connect() -> None:
    """Connect the receivers (CmdbConfig.ready)."""
    User = get_user_model()
    uid = "cmdb.auth_policy."
    pre_save.connect(_before_user_save, sender=User, dispatch_uid=uid + "user_pre")
    post_save.connect(_user_saved, sender=User, dispatch_uid=uid + "user_post")
    user_logged_in.connect(_logged_in, dispatch_uid=uid + "login")
    user_login_failed.connect(_login_failed, dispatch_uid=uid + "login_failed")
    user_logged_out.connect(_logged_out, dispatch_uid=uid + "logout")
