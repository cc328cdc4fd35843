"""The CMDB: institutions, systems, servers, credentials, owners and health criteria.

Table names follow the seed (TB_INSTITUTION, TB_SERVER_INFO, TB_SYSTEM_OWNER, ...), so a
DBA reading the planning document finds the tables it names.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Callable
from typing import TYPE_CHECKING, Self

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models
from django.db.models import Q
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from audit.tables import optional_ref, table_meta, user_ref

from . import vault

if TYPE_CHECKING:
    from django.utils.functional import _StrPromise

CODE_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
FINGERPRINT_RE = re.compile(r"^SHA256:[A-Za-z0-9+/]{43}$")


def validate_code(value: str) -> None:
    if not CODE_RE.match(value or ""):
        raise ValidationError(_("영문자, 숫자, '-', '_', '.'만 64자까지"))


def validate_abs_path(value: str) -> None:
    if value and (not value.startswith("/") or "\x00" in value or "\n" in value):
        raise ValidationError(_("절대 경로여야 합니다"))


class Tier(models.IntegerChoices):
    MISSION_CRITICAL = 1, _("1등급 (핵심 업무)")
    STANDARD = 2, _("2등급 (일반)")
    TEST = 3, _("3등급 (테스트/개발)")


def _assignment_q(user, prefix: str = "") -> Q:
    """Systems a user is tied to: owner, deputy, supervisor, institution PM or site manager."""
    return (
        Q(**{f"{prefix}ownership__owner": user})
        | Q(**{f"{prefix}ownership__deputy": user})
        | Q(**{f"{prefix}ownership__supervisor": user})
        | Q(**{f"{prefix}institution__pm": user})
        | Q(**{f"{prefix}institution__site_managers": user})
    )


def sees_all_systems(user) -> bool:
    return bool(user and user.is_active and (user.is_superuser or user.has_perm("cmdb.view_all_systems")))


class ScopedQuerySet(models.QuerySet):
    """Rows read on behalf of a user (RBAC scope): all of them for whoever sees every system,
    none for an anonymous or inactive account, else the rows the user is tied to."""

    def for_user(self, user) -> Self:
        if sees_all_systems(user):
            return self.all()
        if not (user and user.is_authenticated and user.is_active):
            return self.none()
        return self.tied_to(user)

    def tied_to(self, user) -> Self:
        raise NotImplementedError


class InstitutionQuerySet(ScopedQuerySet):
    def tied_to(self, user) -> Self:
        """Institutions with at least one system the user may see (or that they manage/PM)."""
        ids = System.objects.tied_to(user).values("institution_id")
        return self.filter(Q(pk__in=ids) | Q(pm=user) | Q(site_managers=user)).distinct()

    def matching(self, text: str) -> InstitutionQuerySet:
        """Institutions whose code, name or one of whose aliases equals text."""
        text = text.strip()
        return self.filter(Q(code__iexact=text) | Q(name=text) | Q(aliases__icontains=f"|{text}|"))


class Institution(models.Model):
    code = models.CharField(_("기관 코드"), max_length=64, unique=True, validators=[validate_code])
    name = models.CharField(_("기관명"), max_length=200, unique=True)
    # Stored as "|alias1|alias2|" so one contains-lookup finds an exact alias.
    aliases = models.CharField(_("별칭"), max_length=500, blank=True, help_text=_("comma separated, e.g. 기재부"))
    pm = user_ref(_("PM"), on_delete=models.SET_NULL, related_name="pm_institutions")
    contact = models.CharField(_("연락처"), max_length=200, blank=True)
    tier = models.PositiveSmallIntegerField(_("등급"), choices=Tier.choices, default=Tier.STANDARD)
    # Field staff who file requests for this site; their pickers and API reads are
    # limited to the institution's systems (System.objects.for_user).
    site_managers = models.ManyToManyField(
        settings.AUTH_USER_MODEL, blank=True, related_name="managed_institutions", verbose_name=_("현장 담당자")
    )
    # The site gateway whose worker cluster runs this institution's changes (none: the central one).
    gateway = optional_ref("Gateway", _("게이트웨이"), related_name="institutions")

    objects = InstitutionQuerySet.as_manager()

    Meta = table_meta("TB_INSTITUTION", _("기관 (TB_INSTITUTION)"), ordering=["code"])

    def __str__(self) -> str:
        return self.name

    @property
    def alias_list(self) -> list[str]:
        return [a for a in self.aliases.split("|") if a]

    def set_aliases(self, values) -> None:
        cleaned = [v.strip() for v in values if v and v.strip()]
        self.aliases = ("|" + "|".join(cleaned) + "|") if cleaned else ""


class SystemQuerySet(ScopedQuerySet):
    def tied_to(self, user) -> Self:
        """The systems a user is assigned to: every read of the CMDB on behalf of a user goes
        through their ``for_user``."""
        return self.filter(pk__in=System.objects.filter(_assignment_q(user)).values("pk"))

    def supervised_by(self, user) -> SystemQuerySet:
        return self.filter(ownership__supervisor=user)


class System(models.Model):
    code = models.CharField(_("시스템 코드"), max_length=64, unique=True, validators=[validate_code])
    name = models.CharField(_("시스템명"), max_length=200)
    institution = models.ForeignKey(
        Institution, verbose_name=_("기관"), on_delete=models.PROTECT, related_name="systems"
    )
    sensitive = models.BooleanField(_("민감 (항상 사람이 승인)"), default=False)
    # Deploy window in local time; start == end means "any time".
    window_start = models.TimeField(_("배포 가능 시작 시각"), default=dt.time(0, 0))
    window_end = models.TimeField(_("배포 가능 종료 시각"), default=dt.time(0, 0))
    expire_unanswered = models.BooleanField(
        _("상급자가 응답하지 않으면 반려로 만료"),
        default=False,
        help_text=_("그렇지 않으면 상급자에게 계속 알림이 갑니다. 시간 초과가 승인이 되는 일은 없습니다."),
    )

    class Recovery(models.TextChoices):
        """What the reaper does with a rollout whose worker died (blank: the site's setting)."""

        DEFAULT = "", _("기본 설정 따름")
        ROLLBACK = "rollback", _("롤백")
        RESUME = "resume", _("저널에서 재개")

    recovery_policy = models.CharField(
        _("작업자 유실 시 복구 방식"),
        max_length=16,
        choices=Recovery.choices,
        default=Recovery.DEFAULT,
        blank=True,
        help_text=_("재개: 완료된 단계는 건너뛰고 진행 중이던 단계는 서버에서 다시 확인한 뒤 롤아웃을 이어갑니다."),
    )

    objects = SystemQuerySet.as_manager()

    Meta = table_meta(
        "TB_SYSTEM",
        _("시스템 (TB_SYSTEM)"),
        ordering=["code"],
        permissions=[("view_all_systems", "Can see every system, not only those assigned")],
    )

    def __str__(self) -> str:
        return f"{self.name} ({self.code})"

    @property
    def tier(self) -> int:
        return self.institution.tier

    def in_window(self, when: dt.datetime | None = None) -> bool:
        if self.window_start == self.window_end:
            return True
        local = timezone.localtime(when or timezone.now()).time()
        if self.window_start < self.window_end:
            return self.window_start <= local < self.window_end
        return local >= self.window_start or local < self.window_end  # window spans midnight


class Credential(models.Model):
    class Kind(models.TextChoices):
        PASSWORD = "password", _("비밀번호")
        PRIVATE_KEY = "private_key", _("개인 키")

    name = models.CharField(_("이름"), max_length=100, unique=True)
    username = models.CharField(_("접속 계정"), max_length=64)
    kind = models.CharField(_("종류"), max_length=16, choices=Kind.choices, default=Kind.PRIVATE_KEY)
    # Ciphertext only (see cmdb/vault.py); the secret is write-only in every UI and API.
    secret_encrypted = models.TextField(_("암호화된 비밀값"), editable=False, default="")
    updated_at = models.DateTimeField(_("수정 시각"), auto_now=True)

    Meta = table_meta("TB_CREDENTIAL", _("자격 증명 (TB_CREDENTIAL)"), ordering=["name"])

    def __str__(self) -> str:
        return self.name

    def vault_context(self) -> str:
        # Bound to the name, not the pk, so the secret can be set before the first save.
        return f"credential:{self.name}"

    def set_secret(self, plaintext: str) -> None:
        if not plaintext:
            raise ValidationError({"secret": _("비밀값이 필요합니다")})
        self.secret_encrypted = vault.encrypt(plaintext, self.vault_context())

    def reveal(self) -> str:
        """Decrypt the secret. Call only where a connection is made (the SSH transport)."""
        return vault.decrypt(self.secret_encrypted, self.vault_context())

    @property
    def has_secret(self) -> bool:
        return bool(self.secret_encrypted)


# A server's host-key pin, paths, service and rollout settings: the columns the CSV import
# accepts after the connection ones and the fields the REST API lists after them.
SERVER_SETTINGS_FIELDS = [
    "host_key_fingerprint",
    "app_path",
    "deploy_path",
    "backup_path",
    "script_path",
    "log_path",
    "service_port",
    "health_url",
    "rolling_group",
    "canary",
    "active",
]


class ServerQuerySet(ScopedQuerySet):
    def with_related(self) -> Self:
        return self.select_related("system__institution", "credential")

    def tied_to(self, user) -> Self:
        return self.filter(system__in=System.objects.tied_to(user))


class Server(models.Model):
    class OsType(models.TextChoices):
        LINUX = "linux", "Linux"
        AIX = "aix", "AIX"
        HPUX = "hpux", "HP-UX"
        SOLARIS = "solaris", "Solaris"

    server_id = models.CharField(_("서버 ID"), max_length=64, unique=True, validators=[validate_code])
    system = models.ForeignKey(System, verbose_name=_("시스템"), on_delete=models.PROTECT, related_name="servers")
    hostname = models.CharField(_("호스트명"), max_length=255)
    ip = models.GenericIPAddressField(_("IP 주소"))
    os_type = models.CharField(_("운영체제"), max_length=16, choices=OsType.choices, default=OsType.LINUX)
    ssh_port = models.PositiveIntegerField(
        _("SSH 포트"), default=22, validators=[MinValueValidator(1), MaxValueValidator(65535)]
    )
    ssh_user = models.CharField(
        _("SSH 계정"), max_length=64, blank=True, help_text=_("비우면 자격 증명의 계정을 씁니다")
    )
    credential = optional_ref(Credential, _("자격 증명"), related_name="servers")
    host_key_fingerprint = models.CharField(
        _("호스트 키 지문"), max_length=80, blank=True, help_text=_("고정된 SHA256 지문; 다른 키의 접속은 거부됩니다")
    )
    app_path = models.CharField(_("애플리케이션 경로"), max_length=255, blank=True, validators=[validate_abs_path])
    deploy_path = models.CharField(_("배포 경로"), max_length=255, blank=True, validators=[validate_abs_path])
    backup_path = models.CharField(_("백업 경로"), max_length=255, blank=True, validators=[validate_abs_path])
    script_path = models.CharField(_("스크립트 경로"), max_length=255, blank=True, validators=[validate_abs_path])
    log_path = models.CharField(_("로그 경로"), max_length=255, blank=True, validators=[validate_abs_path])
    service_port = models.PositiveIntegerField(
        _("서비스 포트"), null=True, blank=True, validators=[MaxValueValidator(65535)]
    )
    health_url = models.CharField(_("헬스 체크 URL"), max_length=500, blank=True)
    rolling_group = models.PositiveSmallIntegerField(_("롤링 그룹"), default=1)
    canary = models.BooleanField(_("카나리"), default=False)
    active = models.BooleanField(_("사용 중"), default=True)
    # Only for a server on a network segment that another gateway reaches; else the institution's.
    gateway = optional_ref(
        "Gateway", _("게이트웨이 (네트워크 구간)"), related_name="servers", help_text=_("비우면 기관의 게이트웨이")
    )

    objects = ServerQuerySet.as_manager()

    Meta = table_meta(
        "TB_SERVER_INFO",
        _("서버 (TB_SERVER_INFO)"),
        ordering=["server_id"],
        indexes=[models.Index(fields=["system", "rolling_group"])],
    )

    def __str__(self) -> str:
        return self.server_id

    @property
    def login_user(self) -> str:
        return self.ssh_user or (self.credential.username if self.credential else "")

    def clean(self) -> None:
        if self.host_key_fingerprint and not FINGERPRINT_RE.match(self.host_key_fingerprint):
            raise ValidationError({"host_key_fingerprint": _("'SHA256:'과 base64 43자가 필요합니다")})
        if self.health_url and not self.health_url.startswith(("http://", "https://")):
            raise ValidationError({"health_url": _("http:// 또는 https://로 시작해야 합니다")})


class SystemOwner(models.Model):
    class AuthLevel(models.IntegerChoices):
        READ_ONLY = 1, _("점검만")
        STANDARD = 2, _("일반 변경")
        FULL = 3, _("모든 변경")

    system = models.OneToOneField(System, verbose_name=_("시스템"), on_delete=models.CASCADE, related_name="ownership")
    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL, verbose_name=_("담당자"), on_delete=models.PROTECT, related_name="owned_systems"
    )
    deputy = user_ref(_("대리 승인자"), on_delete=models.SET_NULL, related_name="deputy_systems")
    supervisor = models.ForeignKey(
        settings.AUTH_USER_MODEL, verbose_name=_("상급자"), on_delete=models.PROTECT, related_name="supervised_systems"
    )
    owner_is_active = models.BooleanField(_("담당자 재석 (부재 아님)"), default=True)
    sla_minutes = models.PositiveIntegerField(_("응답 기한(분)"), default=10, validators=[MinValueValidator(1)])
    auth_level = models.PositiveSmallIntegerField(
        _("승인 권한 수준"), choices=AuthLevel.choices, default=AuthLevel.FULL
    )
    updated_at = models.DateTimeField(_("수정 시각"), auto_now=True)

    # Supervisors hold change_systemowner but edit only rows of systems they supervise;
    # change_any_systemowner lifts that limit (admin role).
    Meta = table_meta(
        "TB_SYSTEM_OWNER",
        _("시스템 담당자 (TB_SYSTEM_OWNER)"),
        permissions=[("change_any_systemowner", "Can edit the owner table of every system")],
    )

    def __str__(self) -> str:
        return f"{self.system.code}: {self.owner}"

    def clean(self) -> None:
        if self.deputy_id and self.deputy_id == self.owner_id:
            raise ValidationError({"deputy": _("대리 승인자는 담당자와 다른 사람이어야 합니다")})
        if self.supervisor_id and self.supervisor_id == self.owner_id:
            raise ValidationError({"supervisor": _("상급자는 담당자와 다른 사람이어야 합니다")})


class HealthCriteria(models.Model):
    """EnvProfile: what "healthy" means for a system's servers after a change."""

    system = models.OneToOneField(System, verbose_name=_("시스템"), on_delete=models.CASCADE, related_name="health")
    service_port = models.PositiveIntegerField(_("서비스 포트"), null=True, blank=True)
    process_name = models.CharField(_("프로세스명"), max_length=100, blank=True)
    log_path = models.CharField(_("로그 경로"), max_length=255, blank=True, validators=[validate_abs_path])
    error_pattern = models.CharField(_("오류 패턴"), max_length=200, default="ERROR|Exception")
    max_latency_ms = models.PositiveIntegerField(_("최대 응답 시간(ms)"), default=3000)
    expected_status = models.PositiveSmallIntegerField(_("기대 HTTP 상태"), default=200)
    min_free_disk_mb = models.PositiveIntegerField(_("최소 여유 디스크(MB)"), default=512)
    port_wait_seconds = models.PositiveIntegerField(_("포트 대기 시간(초)"), default=30)

    Meta = table_meta("TB_HEALTH_CRITERIA", _("헬스 체크 기준 (TB_HEALTH_CRITERIA)"))

    def __str__(self) -> str:
        return f"health: {self.system.code}"

    def clean(self) -> None:
        if self.error_pattern:
            try:
                re.compile(self.error_pattern)
            except re.error as exc:
                raise ValidationError({"error_pattern": str(exc)}) from exc


# --- the command catalogue (RAW_COMMAND and CRON_MANAGE run only what it allows) -------------

PROGRAM_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._+-]{0,63}$")
PROGRAM_PATH_RE = re.compile(r"^(/[A-Za-z0-9._+-]+)+$")
# Programs that run other programs or arbitrary code. A rule for one of them is refused
# unless ``runs_programs`` is ticked on purpose, and none of them can be a pipe filter:
# ``awk 'BEGIN{system("…")}'``, ``sed 'e …'`` and ``find -exec`` run commands too.
PROGRAMS_THAT_RUN_PROGRAMS = frozenset(
    {
        "busybox",
        "toybox",
        "env",
        "sudo",
        "doas",
        "su",
        "runuser",
        "pkexec",
        "nohup",
        "timeout",
        "xargs",
        "nice",
        "ionice",
        "setsid",
        "stdbuf",
        "unbuffer",
        "chroot",
        "nsenter",
        "unshare",
        "exec",
        "eval",
        "command",
        "builtin",
        "time",
        "watch",
        "strace",
        "ltrace",
        "gdb",
        "script",
        "flock",
        "chrt",
        "taskset",
        "systemd-run",
        "at",
        "batch",
        "sh",
        "bash",
        "dash",
        "zsh",
        "ksh",
        "csh",
        "tcsh",
        "fish",
        "ash",
        "python",
        "python2",
        "python3",
        "perl",
        "ruby",
        "node",
        "nodejs",
        "php",
        "lua",
        "tclsh",
        "wish",
        "expect",
        "rscript",
        "jrunscript",
        "jshell",
        "groovy",
        "awk",
        "gawk",
        "mawk",
        "nawk",
        "sed",
        "find",
        "vi",
        "vim",
        "less",
        "more",
        "man",
        "ssh",
        "scp",
        "rsync",
        "tar",
        "zip",
        "git",
        "make",
        "crontab",
        "openssl",
        "socat",
        "nc",
        "ncat",
        "netcat",
        "telnet",
    }
)
CATALOGUE_ROOTS = ("app", "deploy", "backup", "scripts", "log")


def program_basename(program: str) -> str:
    name = program.rsplit("/", 1)[-1].lower()
    return re.sub(r"[\d.]+$", "", name) if name.startswith(("python", "perl", "ruby", "php", "lua")) else name


def validate_program(value: str) -> None:
    if PROGRAM_NAME_RE.match(value or ""):
        return
    if PROGRAM_PATH_RE.match(value or "") and "/../" not in value + "/" and "/./" not in value + "/":
        return
    raise ValidationError(_("프로그램 이름(서버의 PATH에서 찾음) 또는 절대 경로"))


def validate_account(value: str) -> None:
    if value and not re.fullmatch(r"[a-z_][a-z0-9_-]{0,31}", value):
        raise ValidationError(_("계정 이름: 영문 소문자, 숫자, '_', '-'"))


def validate_pattern(value: str) -> None:
    if not value:
        return
    try:
        re.compile(value)
    except re.error as exc:
        raise ValidationError(_("정규식이 아닙니다: %(error)s"), params={"error": exc}) from exc


def validate_roots(value: str) -> None:
    unknown = [v for v in split_roots(value) if v not in CATALOGUE_ROOTS]
    if unknown:
        raise ValidationError(
            _("알 수 없는 루트 %(roots)s (허용: %(allowed)s)"),
            params={"roots": ", ".join(unknown), "allowed": ", ".join(CATALOGUE_ROOTS)},
        )


def split_roots(value: str) -> list[str]:
    return [v.strip() for v in (value or "").split(",") if v.strip()]


def argument_rule(
    label: _StrPromise, max_length: int, validator: Callable[[str], None], help_text: _StrPromise | str = ""
) -> models.CharField:
    """One of a rule's argument shapes: checked when saved, empty when no such argument is allowed."""
    return models.CharField(label, max_length=max_length, blank=True, validators=[validator], help_text=help_text)


class CommandRuleQuerySet(models.QuerySet):
    def for_system(self, system) -> CommandRuleQuerySet:
        """The rules a system's commands are checked against: the global set plus its own."""
        system_id = getattr(system, "pk", system)
        return self.filter(Q(system__isnull=True) | Q(system_id=system_id), enabled=True)


class CommandRule(models.Model):
    """One allowed program and the shape of its arguments.

    An argument starting with ``-`` must match ``option_pattern``; an argument containing
    ``/`` is a path and must be absolute, normalised and under one of ``path_roots`` (the
    server's CMDB directories) on every target server; any other argument must match
    ``operand_pattern``. ``argv_pattern``, when set, must match the whole argument list
    joined by single spaces. An empty pattern allows no such argument.
    """

    system = optional_ref(
        System,
        _("시스템"),
        on_delete=models.CASCADE,
        related_name="command_rules",
        help_text=_("비우면 모든 시스템에 적용되는 기본 목록에 포함"),
    )
    program = models.CharField(_("프로그램"), max_length=255, validators=[validate_program])
    description = models.CharField(_("설명"), max_length=200, blank=True)
    option_pattern = argument_rule(_("옵션 패턴"), 300, validate_pattern)
    operand_pattern = argument_rule(_("피연산자 패턴"), 300, validate_pattern)
    argv_pattern = argument_rule(_("인자 목록 패턴"), 500, validate_pattern)
    path_roots = argument_rule(
        _("경로 루트"),
        100,
        validate_roots,
        help_text=_("쉼표로 구분: app, deploy, backup, scripts, log; 비우면 경로 인자 없음"),
    )
    max_args = models.PositiveSmallIntegerField(_("최대 인자 수"), default=12, validators=[MaxValueValidator(64)])
    is_filter = models.BooleanField(
        _("파이프 필터"), default=False, help_text=_("다른 목록 명령의 출력을 |로 받을 수 있음")
    )
    runs_programs = models.BooleanField(
        _("다른 프로그램 실행"),
        default=False,
        help_text=_("래퍼와 인터프리터(sudo, env, busybox, sh, awk, find ...)에 필요"),
    )
    run_as = models.CharField(
        _("실행 계정 (sudo)"),
        max_length=32,
        blank=True,
        validators=[validate_account],
        help_text=_(
            "비우면 SSH 계정 그대로 실행; 지정하면 sudo -n -u 계정으로 실행하며, 허용 규칙은 이 목록에서 "
            "생성한 sudoers 파일(manage.py catalogue_sudoers)이 정합니다"
        ),
    )
    enabled = models.BooleanField(_("사용"), default=True)
    updated_at = models.DateTimeField(_("수정 시각"), auto_now=True)

    objects = CommandRuleQuerySet.as_manager()

    Meta = table_meta(
        "TB_COMMAND_CATALOGUE",
        _("명령 규칙 (TB_COMMAND_CATALOGUE)"),
        plural=_("명령 목록 (TB_COMMAND_CATALOGUE)"),
        ordering=["system_id", "program", "pk"],
    )

    def __str__(self) -> str:
        scope = self.system.code if self.system is not None else "*"
        return f"{scope}: {self.program}"

    @property
    def roots(self) -> list[str]:
        return split_roots(self.path_roots)

    def clean(self) -> None:
        runs = program_basename(self.program or "") in PROGRAMS_THAT_RUN_PROGRAMS
        if runs and not self.runs_programs:
            raise ValidationError(
                {
                    "runs_programs": _("%(program)s은(는) 다른 프로그램을 실행합니다: 알고 선택하십시오")
                    % {"program": self.program}
                }
            )
        if self.is_filter and (runs or self.runs_programs):
            raise ValidationError({"is_filter": _("다른 프로그램을 실행하는 프로그램은 필터가 될 수 없습니다")})
        if self.run_as:
            # sudoers pins the program by its full path and the arguments by argv_pattern.
            if runs or self.runs_programs:
                raise ValidationError({"run_as": _("다른 프로그램을 실행하는 프로그램은 sudo로 실행할 수 없습니다")})
            if not (self.program or "").startswith("/"):
                raise ValidationError({"program": _("sudo로 실행하는 규칙은 프로그램을 절대 경로로 적어야 합니다")})
            if not self.argv_pattern:
                raise ValidationError(
                    {
                        "argv_pattern": _(
                            "sudo로 실행하는 규칙은 인자 목록 패턴으로 인자를 고정해야 합니다 (sudoers 규칙이 됩니다)"
                        )
                    }
                )


class DirectoryAccount(models.Model):
    """A user whose password and roles come from the site's directory (LDAP / AD).

    Only accounts linked here are updated by a directory login; every other account is
    local (break-glass administrators) and the directory can never take one over, even
    when a directory entry carries the same name.
    """

    user = models.OneToOneField(
        settings.AUTH_USER_MODEL, verbose_name=_("사용자"), on_delete=models.CASCADE, related_name="directory_account"
    )
    dn = models.CharField(_("디렉터리 DN"), max_length=500)
    synced_at = models.DateTimeField(_("마지막 동기화"), default=timezone.now)

    Meta = table_meta(None, _("디렉터리 계정"), plural=_("디렉터리 계정 목록"))

    def __str__(self) -> str:
        return self.dn


class AccountSecurity(models.Model):
    """Per-account state of the password and session rules (cmdb.auth_policy): when the
    password was set and whether its holder must change it, the one session allowed, and
    the last successful and failed logins shown after the next login."""

    user = models.OneToOneField(
        settings.AUTH_USER_MODEL, verbose_name=_("사용자"), on_delete=models.CASCADE, related_name="account_security"
    )
    password_changed_at = models.DateTimeField(_("비밀번호 변경 시각"), null=True, blank=True)
    must_change_password = models.BooleanField(_("다음 로그인 때 비밀번호 변경"), default=False)
    session_key = models.CharField(_("현재 세션"), max_length=64, blank=True)
    last_login_at = models.DateTimeField(_("마지막 로그인"), null=True, blank=True)
    last_login_ip = models.CharField(_("마지막 로그인 주소"), max_length=64, blank=True)
    last_failed_at = models.DateTimeField(_("마지막 로그인 실패"), null=True, blank=True)
    last_failed_ip = models.CharField(_("마지막 실패 주소"), max_length=64, blank=True)
    failures_since_login = models.PositiveIntegerField(_("마지막 로그인 이후 실패 횟수"), default=0)

    Meta = table_meta(None, _("계정 보안 상태"), plural=_("계정 보안 상태 목록"))

    def __str__(self) -> str:
        return str(self.user)


class PasswordHistory(models.Model):
    """Hashes of an account's recent passwords, so none of them is chosen again."""

    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, verbose_name=_("사용자"), on_delete=models.CASCADE, related_name="password_history"
    )
    password = models.CharField(_("비밀번호 해시"), max_length=128)
    created_at = models.DateTimeField(_("설정 시각"), default=timezone.now)

    Meta = table_meta(None, _("비밀번호 이력"), plural=_("비밀번호 이력 목록"), ordering=["-created_at", "-pk"])

    def __str__(self) -> str:
        return f"{self.user} {self.created_at:%Y-%m-%d}"


GATEWAY_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,31}$")


def validate_gateway_name(value: str) -> None:
    if not GATEWAY_NAME_RE.match(value or ""):
        raise ValidationError(_("영문자, 숫자, '-', '_'만 32자까지"))


class Gateway(models.Model):
    """A site gateway: a worker cluster (``GUARDIA_GATEWAY=<name> manage.py qcluster``) inside a
    network the central workers cannot reach, consuming only its own queue. Its workers write
    the heartbeat; ``silent_since`` is set once when the heartbeat stops (one alarm per outage)."""

    name = models.CharField(_("게이트웨이 이름"), max_length=32, unique=True, validators=[validate_gateway_name])
    description = models.CharField(_("설명"), max_length=200, blank=True)
    network_notes = models.TextField(_("네트워크 구간 메모"), blank=True)
    heartbeat_at = models.DateTimeField(_("마지막 하트비트"), null=True, blank=True)
    heartbeat_by = models.CharField(_("하트비트 보낸 워커"), max_length=128, blank=True)
    sweep_queued_at = models.DateTimeField(_("마지막 복구 점검 요청"), null=True, blank=True)
    silent_since = models.DateTimeField(_("응답 없음 경보 시각"), null=True, blank=True)

    Meta = table_meta("TB_GATEWAY", _("게이트웨이 (TB_GATEWAY)"), ordering=["name"])

    def __str__(self) -> str:
        return self.name


# Site profiles (the expected environment per server, its latest scan, the SSH policy per
# system) and the source repository of a system, for the AI work agent (own modules).
from .profiles import EnvScan, EnvSchema, SecurityPolicy  # noqa: E402, F401
from .sources import SystemSource  # noqa: E402, F401
