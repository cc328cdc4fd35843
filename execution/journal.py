"""What a server's state says about an interrupted run: has each step already happened?

The step journal (StepResult rows) tells what a worker finished and recorded. It is not the
whole truth: a worker records a step a few milliseconds after the server finished it, and a
worker killed in between leaves a step done but unrecorded, and the next one perhaps already
sent. So every step that changes a server also knows how to tell from the server itself
whether it happened: the artifact's checksum in place, the staging copy and the backup
present, the process up with a new PID, the certificate files installed, the rotated log
compressed, the managed cron block installed, the files cleaned.

``observe`` reads all of that in one read-only command (plus the health URL) and returns:

- ``done``: the forward steps that need not run again (journaled, or their effect is on the
  server), with the output a resumed run replays to the playbook (the old PID, the log size
  before startup), so a resumed run neither repeats nor skips a step;
- ``state``: the ``ctx.state`` a playbook's rollback reads, so a rollback undoes exactly what
  happened;
- ``unknown``: a step whose effect cannot be read from the server (a raw command, a site's
  data script): such a run is never resumed past it;
- ``problem``: the server is in a state nothing can safely build on (e.g. the new artifact
  live but no backup).
"""

from __future__ import annotations

import posixpath
import time
from dataclasses import dataclass, field

from . import healthcheck
from .parameters import q

SH = healthcheck.SH
ABSENT = "-"


@dataclass
class Observation:
    state: dict = field(default_factory=dict)  # for playbook.rollback(ctx)
    done: dict[str, str] = field(default_factory=dict)  # step name -> output to replay
    changed: bool = False  # something on the server differs from before the run
    facts: dict = field(default_factory=dict)  # what the probes found, for the audit chain
    problem: str = ""  # the server cannot be restored or resumed from what is there
    unknown: str = ""  # a step whose effect the server cannot show: no resume past it
    seq: int = 0  # the journal's last step number on this server (a resumed run continues after it)


def _probe_http(ctx) -> tuple[int | None, str]:
    if not ctx.health.url:
        return None, ""
    try:
        status, body, _ms = healthcheck.http_get(ctx.health.url, timeout=5, server=ctx.server)
    except ConnectionError:
        return None, ""
    return status, healthcheck.served_version(body)


def _probe(ctx, files: dict[str, str], pid_file: str = "", tests: dict[str, str] | None = None) -> dict[str, str]:
    """One read-only command: the SHA-256 (or '-') of each file, ``name=yes|no`` for each
    ``test`` expression, whether the PID file's process runs and its PID, and the log's size."""
    parts = [
        f"printf '{name}=%s\\n' \"$( (sha256sum {q(path)} 2>/dev/null || echo {ABSENT}) | cut -c1-64)\""
        for name, path in files.items()
        if path
    ]
    parts += [f"if {test}; then echo {name}=yes; else echo {name}=no; fi" for name, test in (tests or {}).items()]
    if pid_file:
        parts.append(
            f'pid=$(cat {q(pid_file)} 2>/dev/null); echo "pid=$pid"; '
            f'if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then echo process=up; else echo process=down; fi'
        )
    parts.append(f"echo logsize=$( {healthcheck.offset_command(ctx)} )")
    result = ctx.run("recover-probe", "; ".join(parts), timeout=30, shell=SH)
    return dict(line.split("=", 1) for line in result.stdout.splitlines() if "=" in line)


def _yes(found: dict, name: str) -> bool:
    return found.get(name) == "yes"


def _exists(path: str) -> str:
    return f"test -e {q(path)}"


def _restart_facts(found: dict, journal: dict[str, str]) -> tuple[bool, bool]:
    """(process up, restarted): restarted means up with a PID other than the one read before the
    shutdown (only known when that read is journaled)."""
    up = found.get("process") == "up"
    before = journal.get("pid-before")
    return up, up and before is not None and found.get("pid", "") != before.strip()


def observe_app_deploy(playbook, ctx, journal: dict[str, str]) -> Observation:
    paths = playbook._paths(ctx)
    new = playbook.params["artifact_sha256"]
    found = _probe(
        ctx, {"live": paths["live"], "staging": paths["staging"], "backup": paths["saved"]}, paths.get("pid", "")
    )
    status, version = _probe_http(ctx)
    live_new = found.get("live") == new
    backup = found.get("backup", ABSENT)
    up = found.get("process") == "up"
    facts = {
        "live_is_new": live_new,
        "staged": found.get("staging") == new,
        "backup_present": backup != ABSENT,
        "process": found.get("process", "unknown"),
        "http_status": status,
        "version_served": version,
    }
    obs = Observation(facts=facts)
    # mv is atomic: the live file is either the old one or the new one, never half of each.
    if facts["staged"] or live_new:
        obs.done["upload"] = journal.get("upload", paths["staging"])
    if backup != ABSENT and (live_new or backup == found.get("live")):  # a copy cut short differs
        obs.done["backup"] = ""
    if live_new or not up:
        obs.done["shutdown"] = ""
    if live_new:
        obs.done["swap"] = found.get("logsize", "0")  # the log size before startup, as swap printed it
        if up:
            obs.done["startup"] = ""
    if "swap" in journal and not live_new:
        obs.problem = (
            f"{ctx.server.server_id}: 저널에는 교체가 기록되었으나 {paths['live']}이(가) 새 아티팩트가 아닙니다"
        )
    swapped = live_new and (backup != ABSENT or "swap" in journal)
    obs.state = {
        "staged": facts["staged"],
        "swapped": swapped,
        "stopped": swapped or not up,
        "backed_up": swapped and facts["backup_present"],
        "old_version": "" if live_new else version,
    }
    if live_new and backup == ABSENT:
        obs.problem = f"{ctx.server.server_id}에 새 아티팩트가 배포되었으나 백업이 없습니다"
    obs.changed = bool(obs.state["staged"] or obs.state["stopped"])
    return obs


def observe_restart(playbook, ctx, journal: dict[str, str]) -> Observation:
    """A restart happened once the process runs with a PID other than the one read before it."""
    pid_file = playbook.server_paths(ctx.server).get("pid", "")
    found = _probe(ctx, {}, pid_file)
    status, version = _probe_http(ctx)
    up, restarted = _restart_facts(found, journal)
    healthy = up and (status is None or status == ctx.health.expected_status)
    obs = Observation(facts={"process": found.get("process", "unknown"), "restarted": restarted, "http_status": status})
    obs.facts["version_served"] = version
    if not up or restarted:
        obs.done["shutdown"] = ""
    if restarted:
        obs.done["log-offset"] = found.get("logsize", "0")
        obs.done["startup"] = ""
    obs.state = {"stopped": not healthy, "old_version": version if healthy else ""}
    obs.changed = bool(obs.state["stopped"])
    return obs


def observe_ssl(playbook, ctx, journal: dict[str, str]) -> Observation:
    """Each certificate file: installed when its checksum is the new one; backed up when the
    saved copy is there (and equals the live file while that is still the old one)."""
    files = playbook._files(ctx)
    probe = {f"live-{kind}": remote for kind, remote, _sha in files}
    probe |= {f"saved-{kind}": playbook._backup(ctx, remote) for kind, remote, _sha in files}
    key = playbook.path(ctx, "key_path")
    tests = {"key600": f'[ "$(stat -c %a {q(key)} 2>/dev/null)" = 600 ]'}
    found = _probe(ctx, probe, playbook.server_paths(ctx.server).get("pid", ""), tests)
    up, restarted = _restart_facts(found, journal)
    installed = {kind for kind, _remote, sha in files if found.get(f"live-{kind}") == sha}
    obs = Observation(facts={"installed": sorted(installed), "process": found.get("process"), "restarted": restarted})
    for kind, _remote, _sha in files:
        live, saved = found.get(f"live-{kind}", ABSENT), found.get(f"saved-{kind}", ABSENT)
        # Never copy again once a new file went in: the backup would then hold the new one.
        if installed or saved != ABSENT and saved == live or live == ABSENT:
            obs.done[f"backup-{kind}"] = ""
        if kind in installed:
            obs.done[f"upload-{kind}"] = journal.get(f"upload-{kind}", "")
    if not up or restarted or installed:
        obs.done["shutdown"] = ""
    if len(installed) == len(files) and _yes(found, "key600"):
        obs.done["chmod-key"] = found.get("logsize", "0")
        if restarted:
            obs.done["startup"] = ""
    obs.state = {"backed_up": True, "installed": bool(installed), "stopped": not up or restarted or bool(installed)}
    obs.changed = obs.state["stopped"]
    return obs


def observe_static_sync(playbook, ctx, journal: dict[str, str]) -> Observation:
    """The swap is two renames in one command: target → old, new → target."""
    p = playbook._paths(ctx)
    tests = {name: f"test -d {q(p[name])}" for name in ("target", "new", "old")}
    found = _probe(ctx, {"staging": p["staging"]}, tests=tests)
    staged = found.get("staging") == playbook.params["artifact_sha256"]
    target, new, old = (_yes(found, name) for name in ("target", "new", "old"))
    swapped = target and old and not new
    obs = Observation(facts={"staged": staged, "target": target, "new": new, "old": old})
    if staged or swapped:
        obs.done["upload"] = journal.get("upload", p["staging"])
    if new or swapped:  # the unpacked tree is renamed into place only once complete
        obs.done["unpack"] = ""
    if swapped:
        obs.done["swap"] = ""
    if old and not target:
        obs.problem = f"{ctx.server.server_id}: {p['target']} 교체가 절반만 되었습니다 ({p['old']}만 있음)"
    obs.state = {"swapped": old}
    obs.changed = staged or new or old
    return obs


def observe_logrotate(playbook, ctx, journal: dict[str, str]) -> Observation:
    path = playbook.path(ctx, "log_path") if playbook.params["log_path"] else ctx.health.log_path
    rotated = f"{path}.{ctx.task_ref or 'manual'}"
    found = _probe(ctx, {}, tests={"gz": _exists(rotated + ".gz"), "plain": _exists(rotated)})
    obs = Observation(facts={"rotated": _yes(found, "gz"), "uncompressed": _yes(found, "plain")})
    if _yes(found, "gz") and not _yes(found, "plain"):
        obs.done["rotate"] = ""
    if _yes(found, "plain"):  # copied but not compressed: a second copy would overwrite it with the truncated log
        obs.problem = f"{ctx.server.server_id}: 로그 회전이 중간에 멈췄습니다 ({rotated})"
    obs.changed = _yes(found, "gz") or _yes(found, "plain")
    return obs


def observe_log_cleanup(playbook, ctx, journal: dict[str, str]) -> Observation:
    """Deleting is done when nothing matching is left; a dry run changes nothing."""
    if playbook.params["dry_run"]:
        return Observation(facts={"dry_run": True})
    find = playbook.find_command(ctx)
    found = _probe(ctx, {}, tests={"left": f'[ -n "$({find} -print)" ]'})
    obs = Observation(facts={"files_left": _yes(found, "left")})
    if not _yes(found, "left"):
        obs.done["delete"] = ""
    obs.changed = "list" in journal
    return obs


def observe_data_cleanup(playbook, ctx, journal: dict[str, str]) -> Observation:
    """The site's script shows nothing of its ``run``: once the backup is journaled and the run is
    not, whether it ran is unknown, so such a run is restored from its backup, never resumed."""
    found = _probe(ctx, {}, tests={"backup": f'[ -n "$(ls -A {q(playbook._backup(ctx))} 2>/dev/null)" ]'})
    obs = Observation(facts={"backup_present": _yes(found, "backup")})
    if "backup" in journal and "run" not in journal:
        obs.unknown = "run"
    elif "backup" not in journal and _yes(found, "backup"):
        obs.problem = f"{ctx.server.server_id}: 데이터 백업이 끝났는지 알 수 없습니다 ({playbook._backup(ctx)})"
    obs.state = {"backed_up": "backup" in journal}
    obs.changed = "backup" in journal
    return obs


def observe_cron(playbook, ctx, journal: dict[str, str]) -> Observation:
    """Installed when the crontab's managed block is exactly the one this task writes."""
    saved = playbook._saved(ctx, ctx.task_ref)
    found = _probe(ctx, {}, tests={"saved": _exists(saved)})
    listing = ctx.run("recover-crontab", "crontab -l", timeout=15, ok_codes=(0, 1)).stdout.splitlines()
    want = [playbook.BEGIN, *playbook.cron_lines(playbook.lines_for(ctx)), playbook.END]
    block = (
        listing[listing.index(playbook.BEGIN) : listing.index(playbook.END) + 1]
        if playbook.BEGIN in listing and playbook.END in listing
        else []
    )
    installed = block == want
    obs = Observation(facts={"backup_present": _yes(found, "saved"), "installed": installed})
    if installed or _yes(found, "saved"):
        obs.done["backup"] = ""
    if installed:
        obs.done["install"] = ""
        if not _yes(found, "saved"):
            obs.problem = f"{ctx.server.server_id}: 관리 cron 블록이 설치되었으나 백업({saved})이 없습니다"
    obs.state = {"backed_up": _yes(found, "saved")}
    obs.changed = installed
    return obs


def observe_raw_command(playbook, ctx, journal: dict[str, str]) -> Observation:
    """An operator's command leaves no mark GUARDiA could read: done only when journaled."""
    obs = Observation()
    if "command" not in journal:
        obs.unknown = "command"
    return obs


OBSERVERS = {
    "APP_DEPLOY": observe_app_deploy,
    "SERVICE_RESTART": observe_restart,
    "SSL_REPLACE": observe_ssl,
    "STATIC_SYNC": observe_static_sync,
    "LOGROTATE": observe_logrotate,
    "LOG_CLEANUP": observe_log_cleanup,
    "DATA_CLEANUP": observe_data_cleanup,
    "CRON_MANAGE": observe_cron,
    "RAW_COMMAND": observe_raw_command,
}


def can_observe(playbook) -> bool:
    return playbook.READ_ONLY or playbook.NAME in OBSERVERS


def _drain(ctx, obs: Observation) -> None:
    flag = ctx.engine.strategy.drain_flag
    if not flag:
        return
    path = ctx.root_path(flag)
    found = _probe(ctx, {}, tests={"drain": _exists(path)}) if not ctx.planning else {}
    obs.facts["drain_flag"] = _yes(found, "drain")
    if _yes(found, "drain"):
        obs.done["drain"] = ""
        obs.state["drained"] = True
        obs.changed = True


LEFTOVER_WAIT_SECONDS = 120.0  # how long the reaper waits for the dead worker's last command


def wait_for_leftover(ctx, wait: float = LEFTOVER_WAIT_SECONDS) -> bool:
    """The step in flight when the worker died was not killed with it: its remote command runs to
    its end. Wait until no step shell of this server (the transport's ``GUARDIA_PGID`` wrapper,
    naming the server's root) runs any more, so what is read next is where the server settled.
    False if one still runs after ``wait`` seconds."""
    root = playbook_root(ctx)
    if not root:
        return True
    command = f"ps -eo pgid=,args= | grep -F GUARDIA_PGID | grep -F -- {q(root)} | awk -v me=$$ '$1 != me' | wc -l"
    deadline = time.monotonic() + wait
    while True:
        running = healthcheck.last_int(ctx.run("recover-wait", command, timeout=30, shell=SH).stdout)
        if not running:
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.5)


def playbook_root(ctx) -> str:
    app = (ctx.server.app_path or "").rstrip("/")
    root = posixpath.dirname(app) if app else ""
    return root if root not in ("", "/") else app


def observe(playbook, ctx, journal: dict[str, str]) -> Observation:
    """``journal``: the server's forward steps recorded OK, name -> output. Raises LookupError for
    a playbook whose steps cannot be re-verified (its server stays UNCERTAIN)."""
    if not playbook.READ_ONLY and playbook.NAME not in OBSERVERS:
        raise LookupError(f"{playbook.NAME} steps cannot be re-verified on the server")
    previous = ctx.phase
    ctx.phase = "check"
    try:
        if playbook.READ_ONLY:
            obs = Observation(facts={"read_only": True})  # reading again changes nothing
        elif not wait_for_leftover(ctx):
            obs = Observation(changed=True, facts={"leftover_command": True})
            obs.problem = f"{ctx.server.server_id}: 잃은 작업자의 마지막 명령이 아직 실행 중입니다"
        else:
            obs = OBSERVERS[playbook.NAME](playbook, ctx, journal)
            _drain(ctx, obs)
    finally:
        ctx.phase = previous
    obs.facts["journal"] = sorted(journal)
    obs.facts["verified_on_server"] = sorted(set(obs.done) - set(journal))
    obs.done.update(journal)  # what the first run printed wins: it is what it parsed
    return obs
