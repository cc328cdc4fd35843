"""Site profiles: what each server is expected to look like, and the SSH policy of each system.

A thousand sites do not share one environment. TB_ENV_SCHEMA records, per server, the OS,
kernel, init system, middleware layout and runtime the CMDB expects; TB_ENV_SCAN keeps the
latest read-only scan of what the server really runs (execution/profiles.py writes it);
TB_SECURITY_POLICY records a system's SSH policy. A scan that differs from the schema in a
field named in ``must_match`` stops that server before any change (docs/profiles.md).
Imported by cmdb/models.py so Django registers it.
"""

from __future__ import annotations

import re

from django.core.exceptions import ValidationError
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models
from django.utils.translation import gettext_lazy as _

# The fields a scan reports and a schema may expect, in the order reports show them.
SCANNED_FIELDS = (
    "os_type",
    "os_version",
    "kernel",
    "init_system",
    "middleware",
    "was_home",
    "start_script",
    "stop_script",
    "log_path",
    "jdk_path",
    "jdk_version",
)
UNIT_HELP = _("systemd 유닛 이름 (예: tomcat.service); systemd 서버의 기동과 종료에 씁니다")
DEFAULT_MUST_MATCH = "os_type,init_system,middleware,was_home,start_script,stop_script,jdk_path"


# A path that reaches a command: absolute, plain characters only (no quotes, spaces, shell
# metacharacters or glob), no "." or ".." segment. It is shell-quoted as well; this is the type.
SAFE_PATH = re.compile(r"/(?:[A-Za-z0-9_+@-][A-Za-z0-9._+@-]*/?)*")
# A systemd unit or init script name: letters, digits and ._@- (an optional .service suffix).
SERVICE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_@.-]{0,99}")


def _abs_path(value: str) -> None:
    if value and (not SAFE_PATH.fullmatch(value) or any(part in (".", "..") for part in value.split("/"))):
        raise ValidationError(_("절대 경로여야 합니다 (영문, 숫자, '._+@-'와 '/'만; '.', '..' 구간 불가)"))


def _service_name(value: str) -> None:
    if value and not SERVICE_NAME.fullmatch(value):
        raise ValidationError(_("서비스 이름은 영문, 숫자, '._@-'만 쓸 수 있습니다"))


def cmdb_meta(table: str, label, **options) -> type:
    """The Meta of a CMDB table: its TB_ name and one label for singular and plural."""
    return type("Meta", (), {"db_table": table, "verbose_name": label, "verbose_name_plural": label, **options})


class SshAuth(models.TextChoices):
    """How a system's policy lets GUARDiA log in (checked against the server's credential)."""

    KEY = "key", _("키")
    PASSWORD = "password", _("비밀번호")
    KEY_AND_OTP = "key_otp", _("키 + OTP")


def split_fields(value: str) -> list[str]:
    return [name.strip() for name in (value or "").split(",") if name.strip()]


class EnvSchema(models.Model):
    """The environment the CMDB expects on one server; an empty field is not checked."""

    class Init(models.TextChoices):
        SYSTEMD = "systemd", "systemd"
        SYSV = "sysv", _("init 스크립트 (SysV)")
        WAS = "was", _("WAS 자체 스크립트")

    class Middleware(models.TextChoices):
        TOMCAT = "tomcat", "Tomcat"
        JEUS = "jeus", "JEUS"
        WEBTOB = "webtob", "WebtoB"
        OTHER = "other", _("기타")

    server = models.OneToOneField(
        "cmdb.Server", verbose_name=_("서버"), on_delete=models.CASCADE, related_name="env_schema"
    )
    os_type = models.CharField(_("운영체제 종류"), max_length=32, blank=True, help_text=_("예: linux, aix"))
    os_version = models.CharField(_("운영체제 버전"), max_length=64, blank=True, help_text=_("예: rhel 8.6"))
    kernel = models.CharField(_("커널"), max_length=100, blank=True)
    init_system = models.CharField(_("init 방식"), max_length=16, choices=Init.choices, blank=True)
    service_name = models.CharField(
        _("서비스 이름"), max_length=100, blank=True, validators=[_service_name], help_text=UNIT_HELP
    )
    middleware = models.CharField(_("미들웨어"), max_length=16, choices=Middleware.choices, blank=True)
    was_home = models.CharField(_("WAS 홈"), max_length=255, blank=True, validators=[_abs_path])
    start_script = models.CharField(_("기동 스크립트"), max_length=255, blank=True, validators=[_abs_path])
    stop_script = models.CharField(_("종료 스크립트"), max_length=255, blank=True, validators=[_abs_path])
    log_path = models.CharField(_("로그 경로"), max_length=255, blank=True, validators=[_abs_path])
    jdk_path = models.CharField(_("JDK 경로"), max_length=255, blank=True, validators=[_abs_path])
    jdk_version = models.CharField(_("JDK 버전"), max_length=64, blank=True)
    must_match = models.CharField(
        _("일치해야 하는 항목"),
        max_length=255,
        default=DEFAULT_MUST_MATCH,
        blank=True,
        help_text=_("쉼표로 구분; 스캔 결과가 이 항목에서 다르면 변경 전에 그 서버를 멈춥니다"),
    )
    updated_at = models.DateTimeField(_("수정 시각"), auto_now=True)

    Meta = cmdb_meta("TB_ENV_SCHEMA", _("환경 스키마 (TB_ENV_SCHEMA)"), ordering=["server__server_id"])

    def __str__(self) -> str:
        return f"env: {self.server.server_id}"

    def clean(self) -> None:
        unknown = [name for name in split_fields(self.must_match) if name not in SCANNED_FIELDS]
        if unknown:
            raise ValidationError(
                {
                    "must_match": _("알 수 없는 항목: %(names)s (가능: %(allowed)s)")
                    % {"names": ", ".join(unknown), "allowed": ", ".join(SCANNED_FIELDS)}
                }
            )

    def expected(self) -> dict[str, str]:
        return {name: str(getattr(self, name) or "") for name in SCANNED_FIELDS}

    @property
    def strict(self) -> set[str]:
        return set(split_fields(self.must_match))


class EnvScan(models.Model):
    """The latest scan of one server: what it reported and when (one row per server)."""

    server = models.OneToOneField(
        "cmdb.Server", verbose_name=_("서버"), on_delete=models.CASCADE, related_name="env_scan"
    )
    facts = models.JSONField(_("스캔 결과"), default=dict, blank=True)
    error = models.CharField(_("스캔 오류"), max_length=500, blank=True)
    scanned_at = models.DateTimeField(_("스캔 시각"))

    Meta = cmdb_meta("TB_ENV_SCAN", _("환경 스캔 (TB_ENV_SCAN)"))

    def __str__(self) -> str:
        return f"scan: {self.server.server_id}"


class SecurityPolicy(models.Model):
    """A system's SSH policy: how GUARDiA may log in and which ports its servers may use."""

    Auth = SshAuth
    system = models.OneToOneField(
        "cmdb.System", verbose_name=_("시스템"), on_delete=models.CASCADE, related_name="security_policy"
    )
    ssh_auth = models.CharField(_("SSH 인증 방식"), max_length=16, choices=Auth.choices, default=Auth.KEY)
    port_min = models.PositiveIntegerField(
        _("허용 포트 (시작)"), default=1, validators=[MinValueValidator(1), MaxValueValidator(65535)]
    )
    port_max = models.PositiveIntegerField(
        _("허용 포트 (끝)"), default=65535, validators=[MinValueValidator(1), MaxValueValidator(65535)]
    )
    firewall_notes = models.TextField(_("방화벽 메모"), blank=True)

    Meta = cmdb_meta("TB_SECURITY_POLICY", _("보안 정책 (TB_SECURITY_POLICY)"))

    def __str__(self) -> str:
        return f"policy: {self.system.code}"

    def clean(self) -> None:
        if self.port_min and self.port_max and self.port_min > self.port_max:
            raise ValidationError({"port_max": _("끝 포트는 시작 포트보다 작을 수 없습니다")})

    def allows_port(self, port: int) -> bool:
        return self.port_min <= port <= self.port_max
