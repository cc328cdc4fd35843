"""What a server's state says about an interrupted run: has each step already happened?

The step journal (StepResult rows) tells what a worker finished and recorded; the step in
flight when the worker died, and any finished step not yet recorded, are re-verified on the
server instead of being repeated: the artifact's checksum in place, the staging copy and the
backup present, the process up and the version it serves. ``observe`` turns that into the
``ctx.state`` a playbook's rollback reads, so a recovery undoes exactly what happened.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from . import healthcheck
from .parameters import q

SH = healthcheck.SH


@dataclass
class Observation:
    state: dict = field(default_factory=dict)  # for playbook.rollback(ctx)
    changed: bool = False  # something on the server differs from before the run
    facts: dict = field(default_factory=dict)  # what the probes found, for the audit chain
    problem: str = ""  # the server cannot be restored from what is there (e.g. backup missing)


def _probe_http(ctx) -> tuple[int | None, str]:
    if not ctx.health.url:
        return None, ""
    try:
        status, body, _ms = healthcheck.http_get(ctx.health.url, timeout=5, server=ctx.server)
    except ConnectionError:
        return None, ""
    return status, healthcheck.served_version(body)


def _files_and_process(ctx, files: dict[str, str], pid_file: str) -> dict[str, str]:
    """One read-only command: SHA-256 (or '-') of each file, and whether the PID file's process runs."""
    parts = [
        f"printf '{name}=%s\\n' \"$( (sha256sum {q(path)} 2>/dev/null || echo -) | cut -c1-64)\""
        for name, path in files.items()
        if path
    ]
    if pid_file:
        parts.append(
            f'pid=$(cat {q(pid_file)} 2>/dev/null); if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; '
            f"then echo process=up; else echo process=down; fi"
        )
    result = ctx.run("recover-probe", "; ".join(parts) or "true", timeout=30, shell=SH)
    return dict(line.split("=", 1) for line in result.stdout.splitlines() if "=" in line)


def _drain(ctx, facts: dict) -> bool:
    flag = ctx.engine.strategy.drain_flag
    if not flag:
        return False
    found = (
        ctx.run("recover-drain", f"test -e {q(ctx.root_path(flag))} && echo yes || echo no", timeout=15, shell=SH)
        .stdout.strip()
        .endswith("yes")
    )
    facts["drain_flag"] = found
    return found


def observe_app_deploy(playbook, ctx, done: set[str]) -> Observation:
    paths = playbook._paths(ctx)
    new = playbook.params["artifact_sha256"]
    found = _files_and_process(
        ctx, {"live": paths["live"], "staging": paths["staging"], "backup": paths["saved"]}, paths.get("pid", "")
    )
    status, version = _probe_http(ctx)
    facts = {
        "live_is_new": found.get("live") == new,
        "staged": found.get("staging", "-") != "-",
        "backup_present": found.get("backup", "-") != "-",
        "process": found.get("process", "unknown"),
        "http_status": status,
        "version_served": version,
        "journal": sorted(done),
    }
    # mv is atomic: the live file is either the old one or the new one, never half of each.
    swapped = found.get("live") == new and (found.get("backup", "-") != "-" or "swap" in done)
    up = found.get("process") == "up"
    obs = Observation(facts=facts)
    obs.state = {
        "staged": facts["staged"],
        "swapped": swapped,
        "stopped": swapped or not up,
        "backed_up": swapped and facts["backup_present"],
        "drained": _drain(ctx, facts),
        "old_version": "" if swapped else version,
    }
    if swapped and not facts["backup_present"]:
        obs.problem = f"{ctx.server.server_id}에 새 아티팩트가 배포되었으나 백업이 없습니다"
    obs.changed = bool(obs.state["staged"] or obs.state["stopped"] or obs.state["drained"])
    return obs


def observe_restart(playbook, ctx, done: set[str]) -> Observation:
    """A restart changed something only if the service is not up and healthy now."""
    pid_file = playbook.server_paths(ctx.server).get("pid", "")
    found = _files_and_process(ctx, {}, pid_file)
    status, version = _probe_http(ctx)
    healthy = found.get("process") == "up" and (status is None or status == ctx.health.expected_status)
    facts = {
        "process": found.get("process", "unknown"),
        "http_status": status,
        "version_served": version,
        "journal": sorted(done),
    }
    obs = Observation(facts=facts)
    obs.state = {"stopped": not healthy, "drained": _drain(ctx, facts), "old_version": version if healthy else ""}
    obs.changed = bool(obs.state["stopped"] or obs.state["drained"])
    return obs


OBSERVERS = {"APP_DEPLOY": observe_app_deploy, "SERVICE_RESTART": observe_restart}


def can_observe(playbook) -> bool:
    return playbook.READ_ONLY or playbook.NAME in OBSERVERS


def observe(playbook, ctx, done: set[str]) -> Observation:
    """Raises for a playbook whose steps cannot be re-verified: its server stays UNCERTAIN."""
    if playbook.READ_ONLY:
        return Observation(facts={"read_only": True})
    observer = OBSERVERS.get(playbook.NAME)
    if observer is None:
        raise LookupError(f"{playbook.NAME} steps cannot be re-verified on the server")
    previous = ctx.phase
    ctx.phase = "check"
    try:
        return observer(playbook, ctx, done)
    finally:
        ctx.phase = previous
