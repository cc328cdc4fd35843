"""Typed request parameters: what a playbook or a health check accepts, and how a value is
cleaned and confined before any command is built from it.

``q()`` (shlex.quote) is the only way user text reaches a shell; ``Param`` cleans one value
and names the field when it refuses it; paths are confined under the server's CMDB roots;
``HEALTH_LIMITS`` are the health thresholds a request may only tighten.
"""

from __future__ import annotations

import posixpath
import re
import shlex
from dataclasses import dataclass
from typing import Any

from governance.attachments import SHA256_RE

from .errors import ParameterError


def q(value: Any) -> str:
    return shlex.quote(str(value))


# Control characters never belong in a path or a name a person typed (NUL, newline, ...).
CONTROL_RE = re.compile(r"[\x00-\x1f\x7f]")
ROOT_LABEL = {
    "app": "앱(app_path)",
    "deploy": "배포(deploy_path)",
    "backup": "백업(backup_path)",
    "scripts": "스크립트(script_path)",
    "log": "로그 디렉터리(log_path)",
}


def normalise_path(name: str, value: str) -> str:
    """A request's path, normalised without touching any server: absolute or relative to a
    root, no '..' component, no control character, and no leading '//' (POSIX normpath keeps
    one, and '//etc' would then compare as a root of its own). Repeated slashes inside are
    collapsed, so '/etc//shadow' is judged as '/etc/shadow'."""
    if CONTROL_RE.search(value):
        raise ParameterError({name: "경로에 제어 문자(NUL, 줄바꿈 등)를 쓸 수 없습니다"})
    if value.startswith("//"):
        raise ParameterError({name: "경로는 '//'로 시작할 수 없습니다"})
    if ".." in value.split("/"):
        raise ParameterError({name: "경로에 '..'를 쓸 수 없습니다"})
    absolute = value.startswith("/")
    normal = posixpath.normpath(re.sub(r"/+", "/", value))
    if absolute and normal == "/":
        raise ParameterError({name: "'/' 자체는 지정할 수 없습니다"})
    return normal


def within(path: str, root: str, *, strictly: bool = False) -> bool:
    """Is the normalised absolute ``path`` the root itself (unless ``strictly``) or below it?"""
    if path == root:
        return not strictly
    return path.startswith(root + "/")


def server_roots(server, log_file: str = "") -> dict[str, str]:
    """The CMDB roots a request's paths may live under, normalised; '/' or unset is no root.

    ``log_path`` in the CMDB names the service's main log file (catalina.out): its directory
    is the log root. ``log_file`` is that file when the server row leaves it to the system's
    health criteria.
    """
    log_file = server.log_path or log_file
    raw = {
        "app": server.app_path,
        "deploy": server.deploy_path,
        "backup": server.backup_path,
        "scripts": server.script_path,
        "log": log_file[:-1] if log_file.endswith("/") else posixpath.dirname(log_file) if log_file else "",
    }
    roots: dict[str, str] = {}
    for key, value in raw.items():
        value = (value or "").strip()
        if not value.startswith("/") or CONTROL_RE.search(value) or ".." in value.split("/"):
            continue
        normal = posixpath.normpath("/" + value.lstrip("/"))
        if normal != "/":
            roots[key] = normal
    return roots


@dataclass(frozen=True)
class Param:
    """One typed request parameter.

    kind "path" is a path confined under one of ``roots`` (keys of server_roots) on every
    target server: relative paths are taken relative to the first root, absolute ones must lie
    below one of them after normalisation. The syntax is checked when the request is filed
    (clean), the confinement per server when the plan is rendered (confine).
    """

    kind: str  # str, int, bool, path, sha256, choice, list, dict, version
    required: bool = False
    default: Any = None
    choices: tuple[str, ...] = ()
    pattern: str = ""
    min: int | None = None
    max: int | None = None
    max_length: int = 1000
    help: str = ""
    roots: tuple[str, ...] = ()
    strictly_below: bool = False  # a file (or a directory that is renamed): never the root itself
    suffixes: tuple[str, ...] = ()  # allowed file name endings, e.g. (".crt", ".pem")

    def __post_init__(self) -> None:
        if self.kind == "path" and not self.roots:
            raise TypeError("a path parameter names the CMDB roots it is confined under")

    def clean(self, name: str, value: Any) -> Any:
        if value is None or value == "":
            if self.required:
                raise ParameterError({name: "필수 항목입니다"})
            return self.default
        kind = self.kind
        if kind == "bool":
            if isinstance(value, bool):
                return value
            if str(value).lower() in {"true", "1", "yes"}:
                return True
            if str(value).lower() in {"false", "0", "no"}:
                return False
            raise ParameterError({name: "true 또는 false여야 합니다"})
        if kind == "int":
            if isinstance(value, bool) or isinstance(value, float) and not value.is_integer():
                raise ParameterError({name: "정수여야 합니다"})
            try:
                number = int(value)
            except (TypeError, ValueError):
                raise ParameterError({name: "정수여야 합니다"}) from None
            if self.min is not None and number < self.min:
                raise ParameterError({name: f"{self.min} 이상이어야 합니다"})
            if self.max is not None and number > self.max:
                raise ParameterError({name: f"{self.max} 이하여야 합니다"})
            return number
        if kind in {"list", "dict"}:
            expected = list if kind == "list" else dict
            if not isinstance(value, expected):
                raise ParameterError({name: "목록이어야 합니다" if kind == "list" else "객체(JSON)여야 합니다"})
            return value
        if not isinstance(value, str):
            raise ParameterError({name: "문자열이어야 합니다"})
        if "\x00" in value or len(value) > self.max_length:
            raise ParameterError({name: f"NUL 문자 없이 {self.max_length}자 이내여야 합니다"})
        if kind == "path":
            normal = normalise_path(name, value)
            if self.suffixes and not normal.endswith(self.suffixes):
                raise ParameterError({name: f"파일 이름은 {', '.join(self.suffixes)} 중 하나로 끝나야 합니다"})
            return normal
        if kind == "sha256":
            if not SHA256_RE.match(value.lower()):
                raise ParameterError({name: "16진수 64자(SHA-256)여야 합니다"})
            return value.lower()
        if kind == "choice" and value not in self.choices:
            raise ParameterError({name: f"{', '.join(self.choices)} 중 하나여야 합니다"})
        if kind == "version" and not re.match(r"^[0-9A-Za-z][0-9A-Za-z._+-]{0,63}$", value):
            raise ParameterError({name: "영문, 숫자, '.', '_', '+', '-'만 쓸 수 있습니다"})
        if self.pattern and not re.fullmatch(self.pattern, value):
            raise ParameterError({name: f"형식이 맞지 않습니다 ({self.pattern})"})
        return value

    def confine(self, name: str, value: str, roots: dict[str, str], server_id: str) -> str:
        """The absolute path ``value`` (already cleaned) stands for on this server, or a
        ParameterError naming the field when it is not under one of this parameter's roots."""
        allowed = [roots[key] for key in self.roots if roots.get(key)]
        if not allowed:
            labels = ", ".join(ROOT_LABEL.get(key, key) for key in self.roots)
            raise ParameterError({name: f"{server_id}: CMDB에 {labels} 경로가 없어 위치를 정할 수 없습니다"})
        path = value if value.startswith("/") else posixpath.normpath(posixpath.join(allowed[0], value or "."))
        if any(within(path, root, strictly=self.strictly_below) for root in allowed):
            return path
        where = ", ".join(f"{root}/" for root in allowed)
        raise ParameterError({name: f"{value}: {server_id}의 허용 경로({where}) 밖입니다"})


# What a request may say about health checks: thresholds only, and only tighter than the
# CMDB's (the URL, host and port always come from the CMDB). "lower": the request's value
# must not exceed the CMDB's; "higher": it must not be below it.
HEALTH_LIMITS: dict[str, tuple[Param, str]] = {
    "max_latency_ms": (Param("int", min=1, max=600_000), "lower"),
    "port_wait_seconds": (Param("int", min=1, max=3600), "lower"),
    "min_free_disk_mb": (Param("int", min=0, max=10_000_000), "higher"),
}


def clean_health_limits(value: Any) -> dict[str, int]:
    """``parameters.health``: thresholds to tighten; anything else is refused, naming the field."""
    if value in (None, ""):
        return {}
    if not isinstance(value, dict):
        raise ParameterError({"health": '객체(JSON)여야 합니다: 예 {"max_latency_ms": 1000}'})
    errors: dict[str, str] = {}
    cleaned: dict[str, int] = {}
    for key, item in value.items():
        field_name = f"health.{key}"
        if key not in HEALTH_LIMITS:
            errors[field_name] = (
                "요청으로 정할 수 없는 항목입니다: 헬스 체크의 주소·호스트·포트는 CMDB에서 오며, "
                f"요청은 {', '.join(HEALTH_LIMITS)} 기준을 더 엄격하게만 할 수 있습니다"
            )
            continue
        try:
            cleaned[key] = HEALTH_LIMITS[key][0].clean(field_name, item)
        except ParameterError as exc:
            errors.update(exc.errors)
    if errors:
        raise ParameterError(errors)
    return {k: v for k, v in cleaned.items() if v is not None}


def tighter(key: str, requested: float, configured: float | None) -> bool:
    if configured is None:
        return True
    return requested <= configured if HEALTH_LIMITS[key][1] == "lower" else requested >= configured
