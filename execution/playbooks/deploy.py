"""APP_DEPLOY (WAR/JAR) and STATIC_SYNC (HTML/JS/images): the seed's 3.2 / 6.1 sequence."""

from __future__ import annotations

import posixpath
import re

from execution import healthcheck, staging

from ..errors import Refused, StepFailed
from ..parameters import Param, q
from .base import Playbook

NAME_PATTERN = r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}"


def free_kib(df_output: str) -> int:
    """Available KiB from ``df -Pk``'s data line (the field before the "NN%" capacity, so a
    file-system or mount name with spaces does not shift it). ValueError when there is none."""
    for line in reversed(df_output.splitlines()):
        fields = line.split()
        capacity = next((i for i in range(len(fields) - 1, 0, -1) if re.fullmatch(r"\d+%", fields[i])), None)
        if capacity is not None and capacity >= 4:
            return int(fields[capacity - 1])
    raise ValueError("no df line")


def backup_dir(paths: dict, task_ref: str) -> str:
    return posixpath.join(paths["backup"], task_ref or "manual")


class AppDeploy(Playbook):
    """upload to staging (on its own SFTP channel) while pre-check (disk, PID, version) → backup
    run; then SHA-256 verified on the server and moved to staging → shutdown.sh → swap →
    startup.sh (the three sent as one chain) → port → post-check (new PID, log) → HTTP."""

    NAME = "APP_DEPLOY"
    SERVICE = True
    VERSION = "1.5.0"
    PARAMS = {
        "artifact_sha256": Param("sha256", required=True, help="SHA-256 of the stored artifact"),
        "artifact_name": Param("str", default="app.war", pattern=NAME_PATTERN),
        "version": Param("version", default="", help="version the health URL must report afterwards"),
        "script_timeout": Param("int", default=120, min=1, max=3600),
    }

    def expected_version(self) -> str:
        return self.params["version"]

    def prepare(self, artifacts) -> None:
        artifacts.verify(self.params["artifact_sha256"])

    def _paths(self, ctx) -> dict:
        paths = self.server_paths(ctx.server)
        for key, what in (
            ("app", "app_path"),
            ("deploy", "deploy_path"),
            ("backup", "backup_path"),
            ("scripts", "script_path"),
        ):
            self.require(paths[key], what, ctx.server)
        name = self.params["artifact_name"]
        paths["live"] = posixpath.join(paths["app"], name)
        paths["staging"] = posixpath.join(paths["deploy"], f"{name}.{self.params['artifact_sha256'][:12]}")
        paths["saved"] = posixpath.join(backup_dir(paths, ctx.task_ref), name)
        return paths

    def precheck(self, ctx, paths: dict) -> None:
        # The PID with the shell's own read, df's line read here (free_kib): one process, df, where
        # command substitutions, cat and awk took up to five (each one a fork on a busy server).
        command = (
            f"pid=; {{ read -r pid < {q(paths['pid'])}; }} 2>/dev/null; printf 'pid=%s\\n' \"$pid\"; "
            f"df -Pk {q(paths['deploy'])}"
        )
        probe = None
        if not ctx.planning and ctx.health.port:
            # The running version's health, so a rollback knows what "restored" looks like: read
            # from the worker while the pre-check command runs on the server (a resumed run knows it).
            probe = healthcheck.running_version_later(
                ctx.health, ctx.server, fetch_version="old_version" not in ctx.state
            )
        result = ctx.run("pre-check", command, timeout=15, shell=healthcheck.SH)
        if ctx.planning:
            ctx.state["old_pid"] = ""  # read from this step's output when it runs
            ctx.check(
                "pre-disk",
                None,
                plan={"kind": "disk", "path": paths["deploy"], "min_free_mb": ctx.health.min_free_disk_mb},
            )
            if ctx.health.port and ctx.health.url:
                ctx.check(
                    "pre-version", None, plan={"kind": "http", "url": ctx.health.url, "purpose": "version_before"}
                )
            return
        found = dict(line.split("=", 1) for line in result.stdout.splitlines() if line.startswith("pid="))
        try:
            free_mb = free_kib(result.stdout) // 1024
        except ValueError:
            raise StepFailed("pre-check", f"{ctx.server.server_id}의 디스크 여유 공간을 읽을 수 없습니다") from None
        ctx.state["old_pid"] = found.get("pid", "").strip()
        ctx.data["free_disk_mb"] = free_mb
        if free_mb < ctx.health.min_free_disk_mb:
            raise StepFailed(
                "pre-check",
                f"{paths['deploy']} 여유 공간이 {free_mb} MB뿐입니다 ({ctx.server.server_id}, "
                f"필요 {ctx.health.min_free_disk_mb} MB)",
            )
        if probe is not None:
            ctx.data["port_before"], version = probe.result()
            if version is not None:
                ctx.state["old_version"] = version

    def forward(self, ctx) -> None:
        paths = self.service_paths(ctx, self._paths(ctx))
        # The artifact streams to its staging name on the SFTP channel while the supervisor runs
        # the pre-check and the backup; its SHA-256 is checked and the file moved to the staging
        # path only when all three succeeded. A failure or a stop before that removes the
        # partial file: the server keeps nothing of the upload.
        upload = staging.put_behind(ctx, "upload", ctx.artifact_path(self.params["artifact_sha256"]), paths["staging"])
        try:
            self.precheck(ctx, paths)
            ctx.run(
                "backup",
                f"mkdir -p {q(posixpath.dirname(paths['saved']))} && cp -p {q(paths['live'])} {q(paths['saved'])}",
                timeout=120,
            )
            ctx.state["backed_up"] = True
            upload.finish()
        finally:
            upload.cancel()  # nothing when finish() completed
        ctx.state["staged"] = True

        def swapping():
            ctx.state["swapped"] = True  # rollback restores from the backup whether or not mv finished

        def swapped():
            ctx.state["staged"] = False  # moved: nothing left to clean up (until then rollback removes it)

        swap = healthcheck.BeforeStart(
            "swap", f"mv -f {q(paths['staging'])} {q(paths['live'])}", on_start=swapping, on_done=swapped
        )
        self.restart(ctx, paths, before_start=swap, expect_version=self.params["version"], old_pid=ctx.state["old_pid"])

    def rollback(self, ctx) -> None:
        paths = self._paths(ctx)
        if ctx.state.get("staged"):
            ctx.run("rb-clean-staging", f"rm -f -- {q(paths['staging'])}", timeout=30)
        if not ctx.state.get("stopped"):
            return  # nothing on the live side changed yet

        def restore():
            if ctx.state.get("backed_up"):
                return "rb-restore", f"cp -p {q(paths['saved'])} {q(paths['live'])}"
            return None

        self.restart_back(ctx, paths, before_start=restore, expect_version=ctx.state.get("old_version", ""))


class StaticSync(Playbook):
    """Replace a static directory with the contents of an uploaded .tar.gz; the old tree is kept."""

    NAME = "STATIC_SYNC"
    VERSION = "1.2.0"
    PARAMS = {
        "artifact_sha256": Param("sha256", required=True),
        "target_path": Param(
            "path",
            required=True,
            roots=("app",),
            strictly_below=True,
            help="the static directory, under the server's app_path (relative or absolute)",
        ),
    }

    def prepare(self, artifacts) -> None:
        artifacts.verify(self.params["artifact_sha256"])

    def verify(self, ctx) -> None:
        ctx.run("gate-exists", f"test -d {q(self.path(ctx, 'target_path'))}", timeout=15)

    def _paths(self, ctx) -> dict:
        target = self.path(ctx, "target_path")
        deploy = self.require(ctx.server.deploy_path, "deploy_path", ctx.server)
        tag = ctx.task_ref or "manual"
        return {
            "target": target,
            "staging": posixpath.join(deploy, f"static-{tag}.tar.gz"),
            "new": f"{target}.guardia-new-{tag}",
            "unpacking": f"{target}.guardia-unpacking-{tag}",
            "old": f"{target}.guardia-old-{tag}",
        }

    def forward(self, ctx) -> None:
        p = self._paths(ctx)
        ctx.put("upload", ctx.artifact_path(self.params["artifact_sha256"]), p["staging"])
        # Unpacked beside and renamed at once: the new tree exists only when it is complete, so a
        # resumed run can tell from the server whether unpacking happened.
        ctx.run(
            "unpack",
            f"mkdir -p {q(p['unpacking'])} && tar -xzf {q(p['staging'])} -C {q(p['unpacking'])} && "
            f"mv -T {q(p['unpacking'])} {q(p['new'])}",
            timeout=300,
        )
        ctx.run("swap", f"mv {q(p['target'])} {q(p['old'])} && mv {q(p['new'])} {q(p['target'])}", timeout=60)
        ctx.state["swapped"] = True
        ctx.run("verify", f"test -d {q(p['target'])} && ls {q(p['target'])} | head -n 20", timeout=15)

    def rollback(self, ctx) -> None:
        p = self._paths(ctx)
        if ctx.state.get("swapped"):
            ctx.run(
                "rb-swap", f"mv {q(p['target'])} {q(p['new'])}.failed && mv {q(p['old'])} {q(p['target'])}", timeout=60
            )


__all__ = ["AppDeploy", "StaticSync", "Refused"]
