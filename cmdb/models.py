"""The CMDB: institutions, systems, servers, credentials, owners and health criteria.

Table names follow the seed (TB_INSTITUTION, TB_SERVER_INFO, TB_SYSTEM_OWNER, ...), so a
DBA reading the planning document finds the tables it names.
"""

from __future__ import annotations

import datetime as dt
import re

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models
from django.db.models import Q
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from . import vault

CODE_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
FINGERPRINT_RE = re.compile(r"^SHA256:[A-Za-z0-9+/]{43}$")


def validate_code(value: str) -> None:
    if not CODE_RE.match(value or ""):
        raise ValidationError(_("letters, digits, '-', '_' or '.', at most 64 characters"))


def validate_abs_path(value: str) -> None:
    if value and (not value.startswith("/") or "\x00" in value or "\n" in value):
        raise ValidationError(_("must be an absolute path"))


class Tier(models.IntegerChoices):
    MISSION_CRITICAL = 1, _("Tier 1 (mission-critical)")
    STANDARD = 2, _("Tier 2 (standard)")
    TEST = 3, _("Tier 3 (test/dev)")


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


class InstitutionQuerySet(models.QuerySet):
    def for_user(self, user) -> InstitutionQuerySet:
        """Institutions with at least one system the user may see (or that they manage/PM)."""
        if sees_all_systems(user):
            return self.all()
        if not (user and user.is_authenticated and user.is_active):
            return self.none()
        ids = System.objects.for_user(user).values("institution_id")
        return self.filter(Q(pk__in=ids) | Q(pm=user) | Q(site_managers=user)).distinct()

    def matching(self, text: str) -> InstitutionQuerySet:
        """Institutions whose code, name or one of whose aliases equals text."""
        text = text.strip()
        return self.filter(Q(code__iexact=text) | Q(name=text) | Q(aliases__icontains=f"|{text}|"))


class Institution(models.Model):
    code = models.CharField(max_length=64, unique=True, validators=[validate_code])
    name = models.CharField(_("name"), max_length=200, unique=True)
    # Stored as "|alias1|alias2|" so one contains-lookup finds an exact alias.
    aliases = models.CharField(_("aliases"), max_length=500, blank=True, help_text=_("comma separated, e.g. 기재부"))
    pm = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="pm_institutions"
    )
    contact = models.CharField(max_length=200, blank=True)
    tier = models.PositiveSmallIntegerField(choices=Tier.choices, default=Tier.STANDARD)
    # Field staff who file requests for this site; their pickers and API reads are
    # limited to the institution's systems (System.objects.for_user).
    site_managers = models.ManyToManyField(
        settings.AUTH_USER_MODEL, blank=True, related_name="managed_institutions", verbose_name=_("site managers")
    )

    objects = InstitutionQuerySet.as_manager()

    class Meta:
        db_table = "TB_INSTITUTION"
        ordering = ["code"]
        verbose_name = _("institution (TB_INSTITUTION)")
        verbose_name_plural = _("institutions (TB_INSTITUTION)")

    def __str__(self) -> str:
        return self.name

    @property
    def alias_list(self) -> list[str]:
        return [a for a in self.aliases.split("|") if a]

    def set_aliases(self, values) -> None:
        cleaned = [v.strip() for v in values if v and v.strip()]
        self.aliases = ("|" + "|".join(cleaned) + "|") if cleaned else ""


class SystemQuerySet(models.QuerySet):
    def for_user(self, user) -> SystemQuerySet:
        """RBAC scope (SPEC §9): every read of the CMDB on behalf of a user goes through this."""
        if sees_all_systems(user):
            return self.all()
        if not (user and user.is_authenticated and user.is_active):
            return self.none()
        return self.filter(pk__in=System.objects.filter(_assignment_q(user)).values("pk"))

    def supervised_by(self, user) -> SystemQuerySet:
        return self.filter(ownership__supervisor=user)


class System(models.Model):
    code = models.CharField(max_length=64, unique=True, validators=[validate_code])
    name = models.CharField(_("name"), max_length=200)
    institution = models.ForeignKey(Institution, on_delete=models.PROTECT, related_name="systems")
    sensitive = models.BooleanField(_("sensitive (always human approval)"), default=False)
    # Deploy window in local time; start == end means "any time".
    window_start = models.TimeField(default=dt.time(0, 0))
    window_end = models.TimeField(default=dt.time(0, 0))
    expire_unanswered = models.BooleanField(
        _("expire as rejected when the supervisor stays silent"),
        default=False,
        help_text=_("Otherwise the supervisor keeps being paged. A timeout never approves."),
    )

    objects = SystemQuerySet.as_manager()

    class Meta:
        db_table = "TB_SYSTEM"
        ordering = ["code"]
        verbose_name = _("system (TB_SYSTEM)")
        verbose_name_plural = _("systems (TB_SYSTEM)")
        permissions = [("view_all_systems", "Can see every system, not only those assigned")]

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
        PASSWORD = "password", _("password")
        PRIVATE_KEY = "private_key", _("private key")

    name = models.CharField(max_length=100, unique=True)
    username = models.CharField(max_length=64)
    kind = models.CharField(max_length=16, choices=Kind.choices, default=Kind.PRIVATE_KEY)
    # Ciphertext only (see cmdb/vault.py); the secret is write-only in every UI and API.
    secret_encrypted = models.TextField(editable=False, default="")
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        db_table = "TB_CREDENTIAL"
        ordering = ["name"]
        verbose_name = _("credential (TB_CREDENTIAL)")
        verbose_name_plural = _("credentials (TB_CREDENTIAL)")

    def __str__(self) -> str:
        return self.name

    def vault_context(self) -> str:
        # Bound to the name, not the pk, so the secret can be set before the first save.
        return f"credential:{self.name}"

    def set_secret(self, plaintext: str) -> None:
        if not plaintext:
            raise ValidationError({"secret": _("a secret is required")})
        self.secret_encrypted = vault.encrypt(plaintext, self.vault_context())

    def reveal(self) -> str:
        """Decrypt the secret. Call only where a connection is made (the SSH transport)."""
        return vault.decrypt(self.secret_encrypted, self.vault_context())

    @property
    def has_secret(self) -> bool:
        return bool(self.secret_encrypted)


class ServerQuerySet(models.QuerySet):
    def with_related(self) -> ServerQuerySet:
        return self.select_related("system__institution", "credential")

    def for_user(self, user) -> ServerQuerySet:
        if sees_all_systems(user):
            return self.all()
        return self.filter(system__in=System.objects.for_user(user))


class Server(models.Model):
    class OsType(models.TextChoices):
        LINUX = "linux", "Linux"
        AIX = "aix", "AIX"
        HPUX = "hpux", "HP-UX"
        SOLARIS = "solaris", "Solaris"

    server_id = models.CharField(max_length=64, unique=True, validators=[validate_code])
    system = models.ForeignKey(System, on_delete=models.PROTECT, related_name="servers")
    hostname = models.CharField(max_length=255)
    ip = models.GenericIPAddressField()
    os_type = models.CharField(max_length=16, choices=OsType.choices, default=OsType.LINUX)
    ssh_port = models.PositiveIntegerField(default=22, validators=[MinValueValidator(1), MaxValueValidator(65535)])
    ssh_user = models.CharField(max_length=64, blank=True, help_text=_("defaults to the credential's user"))
    credential = models.ForeignKey(Credential, null=True, blank=True, on_delete=models.PROTECT, related_name="servers")
    host_key_fingerprint = models.CharField(
        max_length=80, blank=True, help_text=_("pinned SHA256 fingerprint; connections with another key are refused")
    )
    app_path = models.CharField(max_length=255, blank=True, validators=[validate_abs_path])
    deploy_path = models.CharField(max_length=255, blank=True, validators=[validate_abs_path])
    backup_path = models.CharField(max_length=255, blank=True, validators=[validate_abs_path])
    script_path = models.CharField(max_length=255, blank=True, validators=[validate_abs_path])
    log_path = models.CharField(max_length=255, blank=True, validators=[validate_abs_path])
    service_port = models.PositiveIntegerField(null=True, blank=True, validators=[MaxValueValidator(65535)])
    health_url = models.CharField(max_length=500, blank=True)
    rolling_group = models.PositiveSmallIntegerField(default=1)
    canary = models.BooleanField(default=False)
    active = models.BooleanField(default=True)

    objects = ServerQuerySet.as_manager()

    class Meta:
        db_table = "TB_SERVER_INFO"
        ordering = ["server_id"]
        verbose_name = _("server (TB_SERVER_INFO)")
        verbose_name_plural = _("servers (TB_SERVER_INFO)")
        indexes = [models.Index(fields=["system", "rolling_group"])]

    def __str__(self) -> str:
        return self.server_id

    @property
    def login_user(self) -> str:
        return self.ssh_user or (self.credential.username if self.credential else "")

    def clean(self) -> None:
        if self.host_key_fingerprint and not FINGERPRINT_RE.match(self.host_key_fingerprint):
            raise ValidationError({"host_key_fingerprint": _("expected 'SHA256:' and 43 base64 characters")})
        if self.health_url and not self.health_url.startswith(("http://", "https://")):
            raise ValidationError({"health_url": _("must start with http:// or https://")})


class SystemOwner(models.Model):
    class AuthLevel(models.IntegerChoices):
        READ_ONLY = 1, _("inspection only")
        STANDARD = 2, _("standard changes")
        FULL = 3, _("all changes")

    system = models.OneToOneField(System, on_delete=models.CASCADE, related_name="ownership")
    owner = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="owned_systems")
    deputy = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="deputy_systems"
    )
    supervisor = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="supervised_systems"
    )
    owner_is_active = models.BooleanField(_("owner present (not away)"), default=True)
    sla_minutes = models.PositiveIntegerField(default=10, validators=[MinValueValidator(1)])
    auth_level = models.PositiveSmallIntegerField(choices=AuthLevel.choices, default=AuthLevel.FULL)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        db_table = "TB_SYSTEM_OWNER"
        verbose_name = _("system owner (TB_SYSTEM_OWNER)")
        verbose_name_plural = _("system owners (TB_SYSTEM_OWNER)")
        # Supervisors hold change_systemowner but edit only rows of systems they supervise;
        # this permission lifts that limit (admin role).
        permissions = [("change_any_systemowner", "Can edit the owner table of every system")]

    def __str__(self) -> str:
        return f"{self.system.code}: {self.owner}"

    def clean(self) -> None:
        if self.deputy_id and self.deputy_id == self.owner_id:
            raise ValidationError({"deputy": _("the deputy must be someone other than the owner")})
        if self.supervisor_id and self.supervisor_id == self.owner_id:
            raise ValidationError({"supervisor": _("the supervisor must be someone other than the owner")})


class HealthCriteria(models.Model):
    """EnvProfile: what "healthy" means for a system's servers after a change."""

    system = models.OneToOneField(System, on_delete=models.CASCADE, related_name="health")
    service_port = models.PositiveIntegerField(null=True, blank=True)
    process_name = models.CharField(max_length=100, blank=True)
    log_path = models.CharField(max_length=255, blank=True, validators=[validate_abs_path])
    error_pattern = models.CharField(max_length=200, default="ERROR|Exception")
    max_latency_ms = models.PositiveIntegerField(default=3000)
    expected_status = models.PositiveSmallIntegerField(default=200)
    min_free_disk_mb = models.PositiveIntegerField(default=512)
    port_wait_seconds = models.PositiveIntegerField(default=30)

    class Meta:
        db_table = "TB_HEALTH_CRITERIA"
        verbose_name = _("health criteria (TB_HEALTH_CRITERIA)")
        verbose_name_plural = _("health criteria (TB_HEALTH_CRITERIA)")

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
PROGRAMS_THAT_RUN_PROGRAMS = frozenset({
    "busybox", "toybox", "env", "sudo", "doas", "su", "runuser", "pkexec", "nohup", "timeout", "xargs", "nice",
    "ionice", "setsid", "stdbuf", "unbuffer", "chroot", "nsenter", "unshare", "exec", "eval", "command", "builtin",
    "time", "watch", "strace", "ltrace", "gdb", "script", "flock", "chrt", "taskset", "systemd-run", "at", "batch",
    "sh", "bash", "dash", "zsh", "ksh", "csh", "tcsh", "fish", "ash", "python", "python2", "python3", "perl",
    "ruby", "node", "nodejs", "php", "lua", "tclsh", "wish", "expect", "rscript", "jrunscript", "jshell",
    "groovy", "awk", "gawk", "mawk", "nawk", "sed", "find", "vi", "vim", "less", "more", "man", "ssh", "scp",
    "rsync", "tar", "zip", "git", "make", "crontab", "openssl", "socat", "nc", "ncat", "netcat", "telnet",
})
CATALOGUE_ROOTS = ("app", "deploy", "backup", "scripts", "log")


def program_basename(program: str) -> str:
    name = program.rsplit("/", 1)[-1].lower()
    return re.sub(r"[\d.]+$", "", name) if name.startswith(("python", "perl", "ruby", "php", "lua")) else name


def validate_program(value: str) -> None:
    if PROGRAM_NAME_RE.match(value or ""):
        return
    if PROGRAM_PATH_RE.match(value or "") and "/../" not in value + "/" and "/./" not in value + "/":
        return
    raise ValidationError(_("a bare program name (looked up in the server's PATH) or an absolute path"))


def validate_pattern(value: str) -> None:
    if not value:
        return
    try:
        re.compile(value)
    except re.error as exc:
        raise ValidationError(_("not a regular expression: %(error)s"), params={"error": exc}) from exc


def validate_roots(value: str) -> None:
    unknown = [v for v in split_roots(value) if v not in CATALOGUE_ROOTS]
    if unknown:
        raise ValidationError(_("unknown root %(roots)s (allowed: %(allowed)s)"),
                              params={"roots": ", ".join(unknown), "allowed": ", ".join(CATALOGUE_ROOTS)})


def split_roots(value: str) -> list[str]:
    return [v.strip() for v in (value or "").split(",") if v.strip()]


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

    system = models.ForeignKey(
        System, null=True, blank=True, on_delete=models.CASCADE, related_name="command_rules",
        help_text=_("empty: part of the default set every system gets"),
    )
    program = models.CharField(_("program"), max_length=255, validators=[validate_program])
    description = models.CharField(_("description"), max_length=200, blank=True)
    option_pattern = models.CharField(_("option pattern"), max_length=300, blank=True,
                                      validators=[validate_pattern])
    operand_pattern = models.CharField(_("operand pattern"), max_length=300, blank=True,
                                       validators=[validate_pattern])
    argv_pattern = models.CharField(_("argument list pattern"), max_length=500, blank=True,
                                    validators=[validate_pattern])
    path_roots = models.CharField(
        _("path roots"), max_length=100, blank=True, validators=[validate_roots],
        help_text=_("comma separated: app, deploy, backup, scripts, log; empty: no path arguments"),
    )
    max_args = models.PositiveSmallIntegerField(_("maximum arguments"), default=12,
                                                validators=[MaxValueValidator(64)])
    is_filter = models.BooleanField(_("pipe filter"), default=False,
                                    help_text=_("may read another catalogue command's output through |"))
    runs_programs = models.BooleanField(
        _("runs other programs"), default=False,
        help_text=_("required for wrappers and interpreters (sudo, env, busybox, sh, awk, find ...)"),
    )
    enabled = models.BooleanField(_("enabled"), default=True)
    updated_at = models.DateTimeField(auto_now=True)

    objects = CommandRuleQuerySet.as_manager()

    class Meta:
        db_table = "TB_COMMAND_CATALOGUE"
        ordering = ["system_id", "program", "pk"]
        verbose_name = _("command rule (TB_COMMAND_CATALOGUE)")
        verbose_name_plural = _("command catalogue (TB_COMMAND_CATALOGUE)")

    def __str__(self) -> str:
        scope = self.system.code if self.system_id else "*"
        return f"{scope}: {self.program}"

    @property
    def roots(self) -> list[str]:
        return split_roots(self.path_roots)

    def clean(self) -> None:
        runs = program_basename(self.program or "") in PROGRAMS_THAT_RUN_PROGRAMS
        if runs and not self.runs_programs:
            raise ValidationError({"runs_programs": _("%(program)s can run other programs: tick this on purpose")
                                   % {"program": self.program}})
        if self.is_filter and (runs or self.runs_programs):
            raise ValidationError({"is_filter": _("a program that can run other programs is never a pipe filter")})
