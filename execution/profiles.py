"""The runtime scan: what a server really runs, compared with its CMDB environment schema.

One short read-only command per server (``scan_command``: a fixed script; the only values in
it are the CMDB's own paths, validated absolute paths passed through ``q()``) reports the OS
release, kernel, init system, the middleware and runtime found at the expected paths, free
disk and whether the SSH account can sudo without a password. It goes through the transport
and its sanitizer like every other command.

Where it runs:
- ``scan_servers`` (the management command and the daily django-q2 schedule) stores the latest
  result per server in TB_ENV_SCAN; the plan shown before approval lists the differences of
  the stored scan (``plan_notes``), and the console's drift report lists every server whose
  stored scan differs (``drift_rows``), with an audited action that accepts the scan into the
  schema (``accept_scan``);
- at execution, a server with a schema is scanned again as its first step (``gate``, called
  by the server context before anything else runs there): a difference in a field the schema
  names in ``must_match`` refuses that server before any change, with the reason in Korean.
"""

from __future__ import annotations

import datetime as dt
import logging
import posixpath
import time
from dataclasses import dataclass

from django.conf import settings
from django.db import transaction
from django.utils import timezone

import audit
from cmdb.models import EnvScan, EnvSchema, SecurityPolicy, Server, System
from cmdb.profiles import SCANNED_FIELDS

from .errors import Refused
from .parameters import q

log = logging.getLogger(__name__)

SCAN_STEP = "env-scan"
SCAN_TIMEOUT = 30
FIELD_LABELS = {
    "os_type": "운영체제 종류",
    "os_version": "운영체제 버전",
    "kernel": "커널",
    "init_system": "init 방식",
    "middleware": "미들웨어",
    "was_home": "WAS 홈",
    "start_script": "기동 스크립트",
    "stop_script": "종료 스크립트",
    "log_path": "로그 경로",
    "jdk_path": "JDK 경로",
    "jdk_version": "JDK 버전",
}
# Every line is key=value; nothing here comes from a request.
_SCRIPT = """\
printf 'os_type=%s\\n' "$(uname -s | tr 'A-Z' 'a-z')"
printf 'os_id=%s\\n' "$(grep -m1 '^ID=' /etc/os-release 2>/dev/null | cut -d= -f2 | tr -d '\\042')"
printf 'os_version_id=%s\\n' "$(grep -m1 '^VERSION_ID=' /etc/os-release 2>/dev/null | cut -d= -f2 | tr -d '\\042')"
printf 'kernel=%s\\n' "$(uname -r)"
printf 'pid1=%s\\n' "$(cat /proc/1/comm 2>/dev/null)"
case "$(systemctl is-system-running 2>/dev/null)" in running|degraded|starting|maintenance) s=yes;; *) s=no;; esac
if [ -d /run/systemd/system ]; then s=yes; fi
echo "systemd=$s"
if [ -d /etc/init.d ]; then echo initd=yes; else echo initd=no; fi
case {start_script} in */init.d/*) if [ -x {start_script} ]; then echo initscript=yes; fi;; esac
W={was_home}
if [ -z "$W" ]; then m=; elif [ -x "$W/bin/catalina.sh" ]; then m=tomcat; elif [ -e "$W/bin/jeusadmin" ]; then m=jeus; \
elif [ -e "$W/bin/wsboot" ]; then m=webtob; elif [ -d "$W" ]; then m=other; else m=; fi
echo "middleware=$m"
if [ -n "$W" ] && [ -d "$W" ]; then echo "was_home=$W"; fi
if [ -x {start_script} ]; then echo start_script={start_script}; fi
if [ -x {stop_script} ]; then echo stop_script={stop_script}; fi
if [ -e {log_path} ]; then echo log_path={log_path}; fi
J={jdk_path}
if [ -n "$J" ] && [ -x "$J/bin/java" ]; then echo "jdk_path=$J"; \
printf 'jdk_version=%s\\n' "$("$J/bin/java" -version 2>&1 | head -n 1 | cut -d '"' -f 2)"; fi
printf 'free_disk_mb=%s\\n' "$(df -Pk {disk_path} | awk 'NR==2 {{print int($4/1024)}}')"
if sudo -n true 2>/dev/null; then echo sudo=yes; else echo sudo=no; fi
printf 'user=%s\\n' "$(id -un)"
"""


def expected_paths(server, schema: EnvSchema | None) -> dict[str, str]:
    """Where the scan looks: the schema's paths, else where the server's CMDB paths point."""
    root = posixpath.dirname(server.app_path.rstrip("/")) if server.app_path else ""
    scripts = server.script_path or ""
    defaults = {
        "was_home": root,
        "start_script": posixpath.join(scripts, "startup.sh") if scripts else "",
        "stop_script": posixpath.join(scripts, "shutdown.sh") if scripts else "",
        "log_path": server.log_path or "",
        "jdk_path": "",
    }
    if schema is not None:
        for name in defaults:
            defaults[name] = getattr(schema, name) or defaults[name]
    return defaults


def scan_command(server, schema: EnvSchema | None) -> str:
    paths = expected_paths(server, schema)
    disk = server.app_path or "/"
    return _SCRIPT.format(**{k: q(v) for k, v in paths.items()}, disk_path=q(disk))


def parse(output: str) -> dict[str, str]:
    """The scan's lines as facts, with os_version and init_system derived."""
    raw: dict[str, str] = {}
    for line in (output or "").splitlines():
        key, sep, value = line.partition("=")
        if sep and key.isidentifier() and len(value) <= 500:
            raw[key] = value.strip()
    facts = {name: raw.get(name, "") for name in SCANNED_FIELDS}
    facts["os_version"] = " ".join(v for v in (raw.get("os_id", ""), raw.get("os_version_id", "")) if v)
    if raw.get("systemd") == "yes" or raw.get("pid1") == "systemd":
        facts["init_system"] = "systemd"
    elif (raw.get("initd") == "yes" and raw.get("pid1") == "init") or raw.get("initscript") == "yes":
        facts["init_system"] = "sysv"  # SysV is PID 1, or the service's start script is an init script
    else:
        facts["init_system"] = "was"  # no init system manages services: the WAS's own scripts do
    facts["free_disk_mb"] = raw.get("free_disk_mb", "")
    facts["sudo"] = raw.get("sudo", "")
    facts["user"] = raw.get("user", "")
    return facts


@dataclass(frozen=True)
class Drift:
    field: str
    expected: str
    found: str
    strict: bool

    def describe(self) -> str:
        found = self.found or "없음"
        return f"{FIELD_LABELS.get(self.field, self.field)}: CMDB {self.expected}, 스캔 {found}"


def compare(schema: EnvSchema, facts: dict) -> list[Drift]:
    """Fields the schema sets that the scan reports differently (an empty schema field is not checked)."""
    strict = schema.strict
    drifts = []
    for name, expected in schema.expected().items():
        found = str(facts.get(name) or "")
        if expected and expected != found:
            drifts.append(Drift(name, expected, found, name in strict))
    return drifts


# --- scans outside a run (the management command and the schedule) ----------------------------


def scan_server(server: Server) -> EnvScan:
    """Scan one server now and store the result (its error, when it could not be scanned)."""
    from .transport import SSHTransport, TransportError

    schema = EnvSchema.objects.filter(server=server).first()
    facts: dict = {}
    error = policy_problem(server, SecurityPolicy.objects.filter(system_id=server.system_id).first())
    if error:  # the system's SSH policy forbids connecting: no connection, the reason is stored
        return EnvScan.objects.update_or_create(
            server=server, defaults={"facts": {}, "error": error[:500], "scanned_at": timezone.now()}
        )[0]
    try:
        with SSHTransport(server) as transport:
            result = transport.run(scan_command(server, schema), timeout=SCAN_TIMEOUT)
        if result.exit_code != 0:
            error = f"스캔 명령이 종료 코드 {result.exit_code}로 끝났습니다"
        facts = parse(result.stdout)
    except (TransportError, OSError) as exc:
        error = f"스캔할 수 없습니다: {exc}"[:500]
    scan, _ = EnvScan.objects.update_or_create(
        server=server, defaults={"facts": facts, "error": error, "scanned_at": timezone.now()}
    )
    return scan


def scan_servers(system_code: str = "") -> dict:
    """Scan every active server (of one system) and record one audit entry for the run."""
    servers = Server.objects.filter(active=True).select_related("credential").order_by("server_id")
    if system_code:
        servers = servers.filter(system__code=system_code)
    scanned = failed = drifted = 0
    refused: list[str] = []
    for server in servers:
        scan = scan_server(server)
        scanned += 1
        failed += bool(scan.error)
        if scan.error and not scan.facts and "접속하지 않았습니다" in scan.error:
            refused.append(scan.error)
        schema = EnvSchema.objects.filter(server=server).first()
        drifted += bool(schema and not scan.error and compare(schema, scan.facts))
    summary = {"system": system_code or "*", "scanned": scanned, "failed": failed, "drifted": drifted}
    if refused:
        summary["refused_by_policy"] = refused[:50]
    audit.record("system", "execution.env_scan", target=system_code or "*", payload=summary)
    return summary


def scheduled_scan() -> dict:
    """The django-q2 entry point of the daily scan (PROFILE_SCAN_SCHEDULE)."""
    return scan_servers()


def ensure_schedule() -> None:
    """Keep one django-q2 schedule for the scan, every PROFILE_SCAN_INTERVAL_MINUTES (0: none)."""
    from django_q.models import Schedule

    minutes = int(getattr(settings, "PROFILE_SCAN_INTERVAL_MINUTES", 1440))
    name = "guardia-env-scan"
    if minutes <= 0:
        Schedule.objects.filter(name=name).delete()
        return
    Schedule.objects.update_or_create(
        name=name,
        defaults={
            "func": "execution.profiles.scheduled_scan",
            "schedule_type": Schedule.MINUTES,
            "minutes": minutes,
        },
    )


# --- the plan and the drift report -------------------------------------------------------------


def plan_notes(servers: list) -> list[str]:
    """The differences of each server's stored scan, for the plan's warnings. Deterministic: no
    scan times, so a re-scan that finds the same changes the plan's hash only when the
    differences change (then the approved plan no longer describes the servers)."""
    ids = [s.pk for s in servers]
    schemas = {s.server_id: s for s in EnvSchema.objects.filter(server_id__in=ids)}
    scans = {s.server_id: s for s in EnvScan.objects.filter(server_id__in=ids)}
    notes = []
    for server in sorted(servers, key=lambda s: s.server_id):
        schema, scan = schemas.get(server.pk), scans.get(server.pk)
        if schema is None or scan is None or scan.error:
            continue
        drifts = compare(schema, scan.facts)
        if drifts:
            stop = any(d.strict for d in drifts)
            notes.append(
                f"환경 차이 {server.server_id}{' (실행 시 중지)' if stop else ''}: "
                + "; ".join(d.describe() for d in drifts)
            )
    return notes


def drift_rows(user, max_age_hours: int | None = None) -> list[dict]:
    """Servers in the user's scope whose stored scan differs from their schema, newest first."""
    max_age = max_age_hours if max_age_hours is not None else int(getattr(settings, "PROFILE_SCAN_MAX_AGE_HOURS", 48))
    since = timezone.now() - dt.timedelta(hours=max_age)
    schemas = (
        EnvSchema.objects.filter(server__system__in=System.objects.for_user(user), server__env_scan__isnull=False)
        .select_related("server__system", "server__env_scan")
        .order_by("server__server_id")
    )
    rows = []
    for schema in schemas:
        scan = schema.server.env_scan
        if scan.error:
            continue
        drifts = compare(schema, scan.facts)
        if drifts:
            rows.append(
                {
                    "schema": schema,
                    "server": schema.server,
                    "scan": scan,
                    "drifts": drifts,
                    "stale": scan.scanned_at < since,
                }
            )
    return rows


def accept_scan(user, schema: EnvSchema) -> list[str]:
    """Write the stored scan's values into the schema (the CMDB follows the server); audited."""
    with transaction.atomic():
        schema = EnvSchema.objects.select_for_update().get(pk=schema.pk)
        scan = EnvScan.objects.filter(server_id=schema.server_id).first()
        if scan is None or scan.error:
            raise Refused(f"{schema.server.server_id}: 반영할 스캔 결과가 없습니다")
        drifts = compare(schema, scan.facts)
        for drift in drifts:
            setattr(schema, drift.field, drift.found)
        schema.full_clean()
        schema.save()
        changed = {d.field: {"from": d.expected, "to": d.found} for d in drifts}
        audit.record(
            user,
            "cmdb.env_scan_accepted",
            target=schema.server.server_id,
            payload={"changed": changed, "scanned_at": scan.scanned_at.isoformat()},
        )
    return sorted(changed)


# --- at execution -----------------------------------------------------------------------------


def gate(ctx) -> None:
    """The first step on a server with a schema: scan, compare, refuse a disallowed drift.

    Runs through the context (so the scan is a recorded, audited step of the run) before any
    other command; the facts go into the server's findings. A read-only playbook (an
    inspection) is not refused: it changes nothing, and its findings show the differences."""
    schema = getattr(ctx, "env_schema", None)
    if schema is None:
        return
    problem = policy_problem(ctx.server, policies_for(ctx.engine).get(ctx.server.system_id))
    if problem:  # before the scan opens a connection
        record_refusal(ctx, POLICY_STEP, problem)
        raise Refused(problem)
    result = ctx.run(SCAN_STEP, scan_command(ctx.server, schema), timeout=SCAN_TIMEOUT)
    facts = parse(result.stdout)
    drifts = compare(schema, facts)
    ctx.data["env_scan"] = {"facts": facts, "drifts": [d.describe() for d in drifts]}
    strict = [d for d in drifts if d.strict]
    if getattr(ctx.playbook, "READ_ONLY", False):
        return  # a read-only run changes nothing
    if strict:
        raise Refused(
            f"{ctx.server.server_id}: 서버 환경이 CMDB 환경 스키마와 달라 변경 전에 중지했습니다 ("
            + "; ".join(d.describe() for d in strict)
            + ")"
        )
    # The command set this scan calls for (service_variant records it as the playbook's first
    # step); a playbook that stops or starts the service is refused here when none fits.
    try:
        ctx.env_variant = select_variant(ctx.server, schema, facts)
        ctx.data["env_variant"] = ctx.env_variant.name
        if getattr(ctx.playbook, "SERVICE", False):
            check_approved_variant(ctx, ctx.env_variant)
    except NoVariant as exc:
        if getattr(ctx.playbook, "SERVICE", False):
            record_refusal(ctx, VARIANT_STEP, str(exc))
            raise  # before anything else runs there (not even a drain flag)
        ctx.env_variant = exc


def approved_variant(ctx) -> dict | None:
    """The env-variant step of this server in the run's approved plan (None: no approved plan,
    e.g. a run started without one; {} when the plan lists no variant for the server)."""
    plan = getattr(getattr(ctx.engine, "task", None), "plan", None)
    if not isinstance(plan, dict):
        return None
    for step_set in plan.get("step_sets") or []:
        if ctx.server.server_id in (step_set.get("servers") or []):
            steps = [s for s in step_set.get("steps") or [] if s.get("name") == VARIANT_STEP]
            return dict(steps[0].get("check") or {}) if steps else {}
    return None


def check_approved_variant(ctx, variant: Variant) -> None:
    """What the approver saw is what runs: the commands the scan calls for now must be the ones
    the approved plan listed for this server (a schema that leaves a choosing field out of
    must_match lets the environment change without a drift refusal)."""
    planned = approved_variant(ctx)
    if planned is None:
        return
    sid = ctx.server.server_id
    if planned.get("refused"):
        raise NoVariant(f"{sid}: 승인된 계획에서 이 서버는 맞는 환경 변형이 없어 중지로 표시되었습니다")
    if (planned.get("stop"), planned.get("start")) != (variant.stop, variant.start):
        raise NoVariant(
            f"{sid}: 실행 시 스캔한 환경의 변형({variant.describe()})이 승인된 계획의 변형"
            f"({planned.get('variant') or '없음'}: 종료 {planned.get('stop') or '-'})과 달라 변경 전에 중지했습니다"
        )


def service_variant(ctx) -> Variant | None:
    """The variant for this server's service commands, recorded as the step ``env-variant``
    (in the plan: with its commands; in the run: the chosen one in the step's output). None
    for a server without a schema: the CMDB's script_path scripts, as always."""
    if getattr(ctx, "planning", False):
        chosen = getattr(ctx, "env_variant", None)
        if chosen is None:
            return None
        if isinstance(chosen, NoVariant):
            ctx.note(VARIANT_STEP, {"kind": "env-variant", "refused": str(chosen)})
            raise chosen
        ctx.note(VARIANT_STEP, chosen.plan())  # listed with the steps (execution.plan.PlanContext)
        return chosen
    if getattr(ctx, "env_schema", None) is None:
        return None
    picked: list[Variant] = []

    def choose() -> str:
        chosen = getattr(ctx, "env_variant", None)  # set by gate(), which check() runs first
        if not isinstance(chosen, Variant):
            raise chosen or NoVariant(f"{ctx.server.server_id}: 환경 스캔 없이 플레이북 변형을 고를 수 없습니다")
        picked.append(chosen)
        return chosen.describe()

    ctx.check(VARIANT_STEP, choose)
    return picked[0]


# --- the SSH security policy (TB_SECURITY_POLICY) ----------------------------------------------

POLICY_STEP = "ssh-policy"
# Which credential kind each policy's login method needs; GUARDiA holds no OTP generator, so a
# policy that asks for key + OTP refuses every automatic login.
AUTH_KINDS = {"key": "private_key", "password": "password"}


def policy_problem(server, policy, kind: str | None = None) -> str:
    """Why the system's SSH policy forbids connecting to this server ("" when it allows it).
    ``kind``: the server's credential kind when the caller read it already."""
    if policy is None:
        return ""
    sid = server.server_id
    if not policy.allows_port(int(server.ssh_port or 22)):
        return (
            f"{sid}: SSH 포트 {server.ssh_port}이(가) 보안 정책의 허용 범위({policy.port_min}-{policy.port_max}) "
            "밖이라 접속하지 않았습니다"
        )
    kind = getattr(server.credential, "kind", "") if kind is None else kind
    if AUTH_KINDS.get(policy.ssh_auth) != kind:
        return (
            f"{sid}: 보안 정책의 SSH 인증 방식({policy.get_ssh_auth_display()})과 "
            f"자격 증명({kind or '없음'})이 맞지 않아 접속하지 않았습니다"
        )
    return ""


def record_refusal(ctx, name: str, reason: str) -> None:
    """The refusal as the server's step, recorded and audited (``execution.step``) by the run's
    recorder like any command that failed; nothing was sent to the server."""
    emit = getattr(ctx, "_emit", None)  # the server context's record of a step (execution.rolling)
    if emit is not None:
        emit(name, command="", state="FAILED", output=reason, started=time.time(), duration=0, audit=True)


def policies_for(engine) -> dict:
    """The security policies of the run's systems, read once per run (like its schemas)."""
    cached = getattr(engine, "security_policies", None)
    if cached is None:
        systems = {s.system_id for s in getattr(engine, "servers", None) or []}
        cached = {p.system_id: p for p in SecurityPolicy.objects.filter(system_id__in=systems)}
        engine.security_policies = cached
    return cached


def policy_problems(servers: list) -> dict[str, str]:
    """Per server whose system's policy forbids connecting: the reason."""
    policies = {p.system_id: p for p in SecurityPolicy.objects.filter(system_id__in={s.system_id for s in servers})}
    governed = [s for s in servers if s.system_id in policies]
    # One query for the credential kinds, however many servers a plan covers.
    kinds = dict(Server.objects.filter(pk__in=[s.pk for s in governed]).values_list("pk", "credential__kind"))
    found = {s.server_id: policy_problem(s, policies[s.system_id], kinds.get(s.pk) or "") for s in governed}
    return {sid: problem for sid, problem in found.items() if problem}


# --- playbook variants: how this server's service is stopped and started ------------------------

VARIANT_STEP = "env-variant"
# Where a service's scripts and a JDK may live, besides the server's own CMDB roots and the
# schema's WAS home: the init script directories, and the usual JDK homes.
INIT_DIRS = ("/etc/init.d", "/etc/rc.d/init.d")
JDK_ROOTS = ("/usr/lib/jvm", "/usr/java", "/opt")
VARIANT_LABELS = {
    "systemd": "systemd 유닛",
    "sysv": "init 스크립트 (SysV)",
    "was-tomcat": "Tomcat 자체 스크립트",
    "was-jeus": "JEUS 자체 스크립트",
    "was-webtob": "WebtoB 자체 스크립트",
    "was-scripts": "WAS 자체 스크립트",
}


class NoVariant(Refused):
    """No command set fits the scanned environment: the server stops before any change."""


@dataclass(frozen=True)
class Variant:
    """One typed command set for stopping and starting a server's service."""

    name: str
    stop: str
    start: str
    jdk_path: str = ""

    @property
    def label(self) -> str:
        return VARIANT_LABELS[self.name]

    def describe(self) -> str:
        jdk = f", JDK {self.jdk_path}" if self.jdk_path else ""
        return f"환경 변형 {self.name} ({self.label}{jdk}): 종료 {self.stop} / 기동 {self.start}"

    def plan(self) -> dict:
        return {
            "kind": "env-variant",
            "variant": self.name,
            "label": self.label,
            "stop": self.stop,
            "start": self.start,
        }

    def as_state(self) -> dict:
        return {"name": self.name, "stop": self.stop, "start": self.start, "jdk_path": self.jdk_path}


def _confined(server, value: str, roots, what: str) -> str:
    """A schema path typed (SAFE_PATH) and under one of ``roots``, or NoVariant naming it."""
    from cmdb.profiles import SAFE_PATH

    sid = server.server_id
    if not value:
        raise NoVariant(f"{sid}: CMDB 환경 스키마에 {what}이(가) 없어 명령을 고를 수 없습니다")
    segments = value.split("/")
    if not SAFE_PATH.fullmatch(value) or "." in segments or ".." in segments:
        raise NoVariant(f"{sid}: {what} 경로를 명령에 쓸 수 없습니다 ({value!r})")
    for root in roots:
        base = root.rstrip("/")
        if base and (value == base or value.startswith(base + "/")):
            return value
    raise NoVariant(f"{sid}: {what} {value}이(가) 허용된 경로 밖에 있습니다 ({', '.join(r for r in roots if r)})")


def select_variant(server, schema: EnvSchema, facts: dict) -> Variant:
    """The command set the scanned environment calls for, or NoVariant with the reason.

    Only enums of the scan (init system, middleware) and what it confirmed (a script or JDK
    found at the expected path) choose; every value put into a command is the CMDB's own,
    typed and confined under the server's roots, the schema's WAS home or the init and JDK
    directories, and shell-quoted. Nothing is guessed: a missing piece stops the server."""
    sid = server.server_id
    paths = expected_paths(server, schema)
    init, middleware = str(facts.get("init_system") or ""), str(facts.get("middleware") or "")
    server_root = posixpath.dirname(server.app_path.rstrip("/")) if server.app_path else ""
    own = [r for r in (server_root, server.script_path or "", paths["was_home"]) if r and r != "/"]
    jdk = ""
    if paths["jdk_path"] and facts.get("jdk_path") == paths["jdk_path"]:
        jdk = _confined(server, paths["jdk_path"], [*own, *JDK_ROOTS], "JDK 경로")
    if init == "systemd":
        unit = schema.service_name
        if not unit:
            raise NoVariant(f"{sid}: systemd 서버인데 CMDB 환경 스키마에 서비스 이름이 없습니다")
        return Variant("systemd", f"systemctl stop {q(unit)}", f"systemctl start {q(unit)}", jdk)
    if init == "sysv":
        script = _confined(server, paths["start_script"], [*INIT_DIRS, *own], "init 스크립트")
        if posixpath.basename(posixpath.dirname(script)) != "init.d" or facts.get("start_script") != script:
            raise NoVariant(f"{sid}: init 방식이 SysV인데 실행할 수 있는 init.d 스크립트가 없습니다 ({script})")
        return Variant("sysv", f"{q(script)} stop", f"{q(script)} start", jdk)
    if init == "was":
        # The WAS's own scripts: under its home for JEUS/WebtoB, where the CMDB says otherwise.
        roots = [paths["was_home"]] if middleware in ("jeus", "webtob") else own
        stop = _confined(server, paths["stop_script"], roots, "종료 스크립트")
        start = _confined(server, paths["start_script"], roots, "기동 스크립트")
        if facts.get("stop_script") != stop or facts.get("start_script") != start:
            raise NoVariant(f"{sid}: 스캔에서 실행할 수 있는 기동/종료 스크립트를 찾지 못했습니다 ({start}, {stop})")
        env = f"JAVA_HOME={q(jdk)} " if jdk else ""
        name = f"was-{middleware}" if middleware in ("tomcat", "jeus", "webtob") else "was-scripts"
        return Variant(name, f"{env}{q(stop)}", f"{env}{q(start)}", jdk)
    raise NoVariant(f"{sid}: 스캔한 init 방식({init or '없음'})에 맞는 플레이북 변형이 없습니다")


def planned_variants(servers: list) -> dict[str, Variant | NoVariant]:
    """Per server with a schema, the variant its stored scan calls for (the schema's own
    expectation where it was never scanned), for the plan shown before approval."""
    ids = [s.pk for s in servers]
    schemas = {s.server_id: s for s in EnvSchema.objects.filter(server_id__in=ids)}
    scans = {s.server_id: s for s in EnvScan.objects.filter(server_id__in=ids)}
    chosen: dict[str, Variant | NoVariant] = {}
    for server in servers:
        schema = schemas.get(server.pk)
        if schema is None:
            continue
        scan = scans.get(server.pk)
        facts = (
            scan.facts
            if scan is not None and not scan.error
            else {**schema.expected(), **expected_paths(server, schema)}
        )
        try:
            chosen[server.server_id] = select_variant(server, schema, facts)
        except NoVariant as exc:
            chosen[server.server_id] = exc
    return chosen


# --- the drift report's second action: open a task -----------------------------------------------

# What the report files directly: request types that need nothing but the server (others go
# through the console's new request, prefilled with the system).
DRIFT_TASK_TYPES = ("SERVICE_RESTART", "MEMORY_CHECK")


def open_task(user, schema: EnvSchema, sub_type: str):
    """File a governed request for the drifted server through the usual submission path, so
    it gets its plan (with the scan's differences) and its approvals like any other."""
    from governance import submission
    from governance.errors import Invalid

    if sub_type not in DRIFT_TASK_TYPES:
        raise Invalid(f"환경 차이에서 바로 열 수 없는 작업 유형입니다: {sub_type!r}", field="sub_type")
    server = schema.server
    scan = EnvScan.objects.filter(server=server).first()
    drifts = compare(schema, scan.facts) if scan is not None and not scan.error else []
    details = "; ".join(d.describe() for d in drifts) or "스캔 결과 없음"
    return submission.file_request(
        user,
        system=server.system,
        sub_type=sub_type,
        targets=[server.server_id],
        title=f"환경 차이 조치: {server.server_id}",
        raw_request=f"환경 차이 보고서에서 연 작업 ({server.server_id}): {details}",
        channel="WEB",
    )
