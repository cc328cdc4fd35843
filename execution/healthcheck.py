"""Health checks seen from the worker: port wait, HTTP status, and the shared WAS restart.

The port and the health URL are probed from the worker, like a load balancer would: no
agent, no remote tool assumed on the server. Reasons are written for people
("port 18080 not answering within 30 s on srv-07").

Where a check goes comes from the CMDB only (the server's address, service port and health
URL); a request may tighten thresholds, nothing else. The HTTP client speaks http(s) to the
target server's own address and nothing else: no redirects, no other scheme (urllib's
generic opener would read file:// and ftp:// URLs), and a bounded body.
"""

from __future__ import annotations

import http.client
import ipaddress
import re
import ssl
import time
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass
from urllib.parse import urlsplit

from . import staging
from .errors import ParameterError, StepFailed
from .parameters import HEALTH_LIMITS, clean_health_limits, q, tighter
from .probe import port_open, wait_open
from .rolling import Chained

MAX_BODY = 64 * 1024
LOG_OFFSET_PLACEHOLDER = "<log-size-before-startup+1>"

# The commands built here are POSIX; /bin/sh starts in half the time of bash (see transport).
SH = "/bin/sh"
# The port wait (probe.wait_open) resolves the address once and connects again after 10 ms,
# then 1.5 times longer each time up to 40 ms: a service that opens its port soon after
# startup.sh is seen within a few ms, one that takes seconds costs 25 connects a second.


@dataclass
class Health:
    """HealthCriteria (TB_HEALTH_CRITERIA) resolved for one server."""

    host: str
    port: int | None
    url: str
    expected_status: int = 200
    error_pattern: str = "ERROR|Exception"
    min_free_disk_mb: int = 512
    port_wait_seconds: float = 30
    max_latency_ms: int = 3000
    log_path: str = ""

    @classmethod
    def for_server(cls, server, criteria=None, overrides: dict | None = None) -> Health:
        """The server's CMDB row, then its system's criteria, then the request's tighter limits.

        ``overrides`` (a request's ``parameters.health``) may only lower max_latency_ms and
        port_wait_seconds or raise min_free_disk_mb; any other key, or a looser value, is
        ignored here (the plan refuses it at filing, naming the field)."""
        url = server.health_url or ""
        parts = urlsplit(url) if url else None
        # The server's own row is the more specific fact; the system's criteria are defaults.
        port = server.service_port or (criteria.service_port if criteria and criteria.service_port else None)
        if not port and parts:
            try:
                port = parts.port
            except ValueError:
                port = None
        # Port probes go where the health URL points when that is the server's own host (a name
        # or address of it), else to its CMDB address: never to a host named elsewhere.
        host = parts.hostname if parts and parts.hostname and not url_problem(url, server) else server.ip
        health = cls(host=host, port=port, url=url, log_path=server.log_path)
        if criteria is not None:
            health.expected_status = criteria.expected_status
            health.error_pattern = criteria.error_pattern
            health.min_free_disk_mb = criteria.min_free_disk_mb
            health.port_wait_seconds = criteria.port_wait_seconds
            health.max_latency_ms = criteria.max_latency_ms
            health.log_path = server.log_path or criteria.log_path
        try:
            limits = clean_health_limits(overrides)
        except ParameterError:
            limits = {
                key: value
                for key, value in (overrides or {}).items()
                if key in HEALTH_LIMITS and isinstance(value, int) and not isinstance(value, bool) and value >= 0
            }
        for key, value in limits.items():
            if tighter(key, value, getattr(health, key)):
                setattr(health, key, value)
        return health


def own_hosts(server) -> set[str]:
    return {h.lower() for h in (str(server.ip or ""), str(server.hostname or "")) if h}


def _loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def is_own_host(host: str, server) -> bool:
    """``host`` names ``server`` itself: its CMDB address or host name. A server whose CMDB
    address is a loopback address is this machine, and so is every other loopback address
    (the testbed's sshd listens on 127.0.0.x, its WAS on 127.0.0.1)."""
    host = (host or "").lower()
    if not host:
        return False
    return host in own_hosts(server) or (_loopback(host) and _loopback(str(server.ip or "")))


def url_problem(url: str, server) -> str:
    """Why ``url`` may not be fetched as ``server``'s health check ("" when it may)."""
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises ValueError on a bad port
    except ValueError:
        return f"{server.server_id}의 헬스 URL 형식이 잘못되었습니다"
    if parts.scheme not in ("http", "https"):
        return f"{server.server_id}의 헬스 URL은 http 또는 https여야 합니다 (현재 {parts.scheme or '없음'})"
    if parts.username or parts.password:
        return f"{server.server_id}의 헬스 URL에 자격 증명을 넣을 수 없습니다"
    if not is_own_host(parts.hostname or "", server):
        return (
            f"{server.server_id}의 헬스 URL 호스트 {parts.hostname or '-'}이(가) "
            f"서버 자신의 주소({server.ip})가 아닙니다"
        )
    return ""


def wait_port(ctx, name: str = "post-port") -> None:
    health = ctx.health
    if not health.port:
        return

    def probe():
        # The address resolved once for the whole wait (probe.wait_open), the pauses between
        # connects growing to probe.WAIT_MAX; ctx.sleep ends the wait when the kill switch is pulled.
        if wait_open(health.host, health.port, health.port_wait_seconds, sleep=ctx.sleep):
            return f"포트 {health.port} 응답"
        raise StepFailed(
            name,
            f"포트 {health.port}이(가) {health.port_wait_seconds:g}초 안에 응답하지 않습니다 ({ctx.server.server_id})",
        )

    ctx.check(
        name,
        probe,
        plan={"kind": "port", "host": health.host, "port": health.port, "wait_seconds": health.port_wait_seconds},
    )


def http_get(url: str, timeout: float, *, server) -> tuple[int, str, int]:
    """GET ``url`` on ``server``'s own address: (status, body, latency ms).

    http.client, not urllib: it follows no redirect (a 3xx is just a status that is not the
    expected one) and knows no scheme but the one asked for. At most MAX_BODY bytes are read.
    """
    problem = url_problem(url, server)
    parts = urlsplit(url)
    host = parts.hostname
    if problem or not host:
        raise ConnectionError(problem or f"no host in {url!r}")
    target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    if parts.scheme == "https":
        connection: http.client.HTTPConnection = http.client.HTTPSConnection(
            host, parts.port, timeout=timeout, context=ssl.create_default_context()
        )
    else:
        connection = http.client.HTTPConnection(host, parts.port, timeout=timeout)
    started = time.monotonic()
    try:
        connection.request("GET", target, headers={"User-Agent": "GUARDiA-health", "Connection": "close"})
        response = connection.getresponse()
        status = response.status
        body = response.read(MAX_BODY).decode("utf-8", "replace")
    except (OSError, http.client.HTTPException) as exc:
        raise ConnectionError(str(exc) or type(exc).__name__) from exc
    finally:
        connection.close()
    return status, body, int((time.monotonic() - started) * 1000)


def running_version_later(health: Health, server, *, fetch_version: bool) -> Future:
    """Is the service's port open, and (``fetch_version``) which version does its health URL
    report? Asked on a pool thread, so the caller's next remote step runs meanwhile; the
    future's result is (port open, version or None when it was not read)."""

    def look() -> tuple[bool, str | None]:
        running = port_open(health.host, health.port) if health.port else False
        if not (running and fetch_version and health.url):
            return running, None
        try:
            _status, body, _ms = http_get(health.url, timeout=5, server=server)
        except ConnectionError:
            return running, None
        return running, served_version(body)

    return staging.submit(look)


def check_http(ctx, name: str = "post-http", *, expect_version: str = "") -> None:
    if ctx.health.url:
        ctx.check(name, *http_probe(ctx, name, expect_version))


def http_probe(ctx, name: str, expect_version: str):
    """The HTTP health check of ``check_http``: (the probe, what the plan shows of it)."""
    health = ctx.health

    def probe():
        try:
            status, body, latency = http_get(
                health.url, timeout=max(1.0, health.max_latency_ms / 1000), server=ctx.server
            )
        except ConnectionError as exc:
            raise StepFailed(name, f"{health.url}에 연결할 수 없습니다 ({ctx.server.server_id}): {exc}") from exc
        ctx.data.setdefault("health", {})[name] = {"status": status, "latency_ms": latency, "body": body[:200]}
        if status != health.expected_status:
            raise StepFailed(
                name,
                f"{health.url}이(가) HTTP {status}을(를) 반환했습니다 "
                f"({ctx.server.server_id}, 기대 {health.expected_status})",
            )
        if latency > health.max_latency_ms:
            raise StepFailed(
                name, f"헬스 응답 {latency} ms가 한도 {health.max_latency_ms} ms를 넘었습니다 ({ctx.server.server_id})"
            )
        if expect_version and f"version={expect_version}" not in body:
            raise StepFailed(
                name,
                f"{ctx.server.server_id}이(가) {served_version(body) or '버전 없음'} 버전을 제공합니다 "
                f"(기대 {expect_version})",
            )
        return f"HTTP {status} in {latency} ms: {body.strip()[:80]}"

    return probe, {
        "kind": "http",
        "url": health.url,
        "expect_status": health.expected_status,
        "max_latency_ms": health.max_latency_ms,
        "expect_version": expect_version,
    }


def served_version(body: str) -> str:
    match = re.search(r"version=(\S+)", body or "")
    return match.group(1) if match else ""


def read_pid(ctx, name: str, pid_file: str) -> str:
    result = ctx.run(name, f"cat {q(pid_file)} 2>/dev/null || true", timeout=15, shell=SH)
    return result.stdout.strip()


def offset_command(ctx) -> str:
    """Prints the log size in bytes as the last line: where "since the restart" begins."""
    if not ctx.health.log_path:
        return "echo 0"
    return f"(wc -c < {q(ctx.health.log_path)} 2>/dev/null || echo 0)"


def _offset_read(ctx) -> None:
    ctx.state["offset_step_done"] = True


def last_int(text: str) -> int:
    try:
        return int(text.strip().splitlines()[-1])
    except (ValueError, IndexError):
        return 0


def post_check(ctx, name: str, pid_file: str, old_pid: str, offset: int) -> None:
    """One command for the new PID and the log since the restart (no ERROR pattern).

    Where the log stood before startup is only known when the offset step has run: the plan
    shows that one number as LOG_OFFSET_PLACEHOLDER (a plain integer when it runs)."""
    health = ctx.health
    # The shell's own read for the PID and no command substitution: fewer processes per check.
    parts = [f"pid=; {{ read -r pid < {q(pid_file)}; }} 2>/dev/null; printf 'pid=%s\\n' \"$pid\""] if pid_file else []
    if health.log_path and health.error_pattern:
        start = LOG_OFFSET_PLACEHOLDER if ctx.planning else str(int(offset) + 1)
        parts.append(
            f"printf 'errors='; tail -c +{start} {q(health.log_path)} | grep -E -c -- {q(health.error_pattern)} || true"
        )
    if not parts:
        return
    result = ctx.run(name, "; ".join(parts), timeout=30, shell=SH)
    if ctx.planning:
        if pid_file:
            ctx.expect({"kind": "process", "pid_file": pid_file, "expect": "new pid"})
        if health.log_path and health.error_pattern:
            ctx.expect(
                {"kind": "log", "path": health.log_path, "error_pattern": health.error_pattern, "since": "restart"}
            )
        return
    found = dict(line.split("=", 1) for line in result.stdout.splitlines() if "=" in line)
    new_pid = found.get("pid", "").strip()
    if pid_file and (not new_pid or new_pid == old_pid):
        raise StepFailed(
            name,
            f"startup.sh 실행 후 새 프로세스가 없습니다 ({ctx.server.server_id}, "
            f"이전 pid {old_pid or '-'}, 이후 {new_pid or '-'})",
        )
    errors = last_int(found.get("errors", "0") or "0")
    if errors:
        raise StepFailed(
            name,
            f"재시작 후 {health.log_path}에서 /{health.error_pattern}/에 맞는 줄 {errors}개 ({ctx.server.server_id})",
        )


@dataclass(frozen=True)
class BeforeStart:
    """A step that runs just before startup.sh and is known before the restart begins (a
    deploy's swap): the shutdown, it and the startup go to the server as one chain.
    ``on_start`` is called before the server may start it, ``on_done`` once it ended well."""

    name: str
    command: str
    on_start: Callable[[], None] | None = None
    on_done: Callable[[], None] | None = None


def restart_was(
    ctx,
    paths: dict,
    *,
    phase_prefix: str = "",
    script_timeout: float = 120,
    tolerate_shutdown_failure: bool = False,
    before_start: BeforeStart | Callable[[], tuple[str, str] | None] | None = None,
    expect_version: str = "",
    old_pid: str | None = None,
) -> None:
    """shutdown.sh → (swap) → startup.sh → port, new PID, log, HTTP. Shared by every restart.

    ``before_start`` runs just before startup.sh, together with the log-size read, so a
    deploy's swap costs no extra round trip. Forward, with no step before the start or a
    BeforeStart, the three go to the server as one chain (ServerContext.run_chain: no round
    trip between them, the next started only when the one before ended well); a callable
    (which may upload files first) keeps them one at a time, as the rollback's restart does.
    """
    p = phase_prefix
    if old_pid is None and paths.get("pid"):
        old_pid = read_pid(ctx, f"{p}pid-before", paths["pid"])
    ok = tuple(range(256)) if tolerate_shutdown_failure else (0,)
    # Scripts run by path so their own shebang picks the shell (the site's bash scripts stay bash).
    # The variant's commands where the server's environment chose one (Playbook.service_paths).
    stop = paths.get("stop_command") or q(paths["scripts"] + "/shutdown.sh")
    start = paths.get("start_command") or q(paths["scripts"] + "/startup.sh")

    def stop_ended(state: str) -> None:
        # Stopped, or cut off midway (killed, timed out, connection lost): the service may be
        # down, so a rollback starts it again. A shutdown that failed stopped nothing.
        if state != "FAILED":
            ctx.state["stopped"] = True

    shutdown = Chained(f"{p}shutdown", stop, timeout=script_timeout, ok_codes=ok, shell=SH, on_end=stop_ended)
    if not p and (before_start is None or isinstance(before_start, BeforeStart)):
        pre = before_start or BeforeStart("log-offset", "true")

        def pre_ended(state: str) -> None:
            if state == "OK" and pre.on_done is not None:
                pre.on_done()

        results = ctx.run_chain(
            [
                shutdown,
                Chained(
                    pre.name,
                    f"{pre.command} && {offset_command(ctx)}",
                    timeout=120,
                    shell=SH,
                    on_start=pre.on_start,
                    on_end=pre_ended,
                ),
                Chained("startup", start, timeout=script_timeout, shell=SH, on_start=lambda: _offset_read(ctx)),
            ]
        )
        offset = last_int(results[1].stdout)
    else:
        ctx.run_one(shutdown)
        if isinstance(before_start, BeforeStart):  # a rollback's restart: one step at a time
            if before_start.on_start is not None:
                before_start.on_start()
            step: tuple[str, str] | None = (f"{p}{before_start.name}", before_start.command)
        else:
            step = before_start() if callable(before_start) else None
        name, command = step if step else (f"{p}log-offset", "true")
        offset = last_int(ctx.run(name, f"{command} && {offset_command(ctx)}", timeout=120, shell=SH).stdout)
        if isinstance(before_start, BeforeStart) and before_start.on_done is not None:
            before_start.on_done()
        _offset_read(ctx)
        ctx.run(f"{p}startup", start, timeout=script_timeout, shell=SH)
    ctx.state["started"] = True
    # The port first: startup.sh may return before the WAS has written its PID file.
    wait_port(ctx, f"{p}port")
    if p or not ctx.health.url:  # a rollback's restart keeps its checks one after the other
        post_check(ctx, f"{p}post-check", paths.get("pid", ""), old_pid or "", offset)
        check_http(ctx, f"{p}http", expect_version=expect_version)
        return
    # The HTTP probe from the worker while the post-check command runs on the server.
    http = staging.check_beside(ctx, "http", *http_probe(ctx, "http", expect_version))
    try:
        post_check(ctx, "post-check", paths.get("pid", ""), old_pid or "", offset)
    except BaseException:
        http.finish(raise_failure=False)  # recorded as it ran; the post-check's failure is reported
        raise
    http.finish()
