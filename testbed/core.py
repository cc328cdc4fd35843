"""The testbed: real OpenSSH sshd processes on loopback, each serving one (or, in scale
mode, many) "servers" with their own app/deploy/backup/scripts/logs tree and a WAS
stand-in. See docs/testbed.md for the layout, the faults and the scale-mode design.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from . import layouts as env_layouts
from . import procs
from .scripts import COMMON_SH, EXEC_WRAPPER, SERVER_SCRIPT, SSHD_CONFIG, STEP_RECORDER

INITIAL_APP = b"version=1.0.0\n"
SLOT_SPAN = 1100  # ports per slot: ssh 2200+k*1100.., http 18000+k*1100.. (below the ephemeral range)
MAX_SLOTS = 12
MAX_SERVERS = SLOT_SPAN - 2
SCRIPT_FAULTS = {
    "health_fail",
    "health_500",
    "log_error",
    "startup_exit",
    "shutdown_exit",
    "slow_shutdown",
    "hung_shutdown",
    "hang",
    "rollback_fail",
}
# Faults that concern the application being started: by default they spare the version the
# server runs when the fault is switched on, so a rollback to it succeeds (TS-02).
NEW_VERSION_FAULTS = {"health_fail", "health_500", "log_error", "startup_exit", "hang"}
FAULTS = SCRIPT_FAULTS | {"disk_full", "sshd_down"}
DISK_FULL_SIZE = "64k"
SCRIPT_ENV = {"PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "LANG": "C.UTF-8"}


class TestbedError(Exception):
    """The testbed cannot do what was asked; the message says why."""

    __test__ = False  # not a pytest test class


class Testbed:
    __test__ = False  # not a pytest test class

    def __init__(self, base_dir: str | os.PathLike | None = None):
        if base_dir is None:
            from django.conf import settings

            base_dir = settings.TESTBED_DIR
        self.base = Path(base_dir).resolve()
        if " " in str(self.base):
            raise TestbedError(f"testbed directory must not contain spaces: {self.base}")
        self._procs: dict[int, subprocess.Popen] = {}  # sshd/WAS host started here: reaped by us

    # -- state -------------------------------------------------------------------------
    @property
    def manifest_path(self) -> Path:
        return self.base / "manifest.json"

    @property
    def manifest(self) -> dict[str, Any]:
        try:
            return json.loads(self.manifest_path.read_text())
        except FileNotFoundError:
            raise TestbedError(f"no testbed at {self.base}: run `manage.py testbed up` first") from None

    @property
    def servers(self) -> list[dict[str, Any]]:
        return self.manifest["servers"]

    def server(self, server_id: str) -> dict[str, Any]:
        for srv in self.servers:
            if srv["server_id"] == server_id:
                return srv
        raise TestbedError(f"unknown testbed server {server_id!r}")

    def _env(self) -> dict[str, str]:
        return {**SCRIPT_ENV, "HOME": str(self.base), procs.TAG: str(self.base)}

    def is_up(self) -> bool:
        try:
            return any(procs.alive(s["pid"]) for s in self.manifest["sshd"])
        except TestbedError:
            return False

    # -- up / down ---------------------------------------------------------------------
    def up(self, n_servers: int, sshd_processes: int | None = None, layouts: list[str] | None = None) -> dict[str, Any]:
        """``layouts``: the environment of the first servers (testbed.layouts; the rest get
        the default); a layout other than the default needs one sshd per server."""
        layouts = list(layouts or [])
        if not 1 <= n_servers <= MAX_SERVERS:
            raise TestbedError(f"--servers must be between 1 and {MAX_SERVERS}, got {n_servers}")
        n_sshd = n_servers if sshd_processes is None else sshd_processes
        if not 1 <= n_sshd <= n_servers:
            raise TestbedError(f"sshd processes must be between 1 and the number of servers, got {n_sshd}")
        unknown = [name for name in layouts if name not in env_layouts.LAYOUTS]
        if unknown or len(layouts) > n_servers:
            raise TestbedError(f"layouts must be at most {n_servers} of {', '.join(env_layouts.LAYOUTS)}")
        if n_sshd < n_servers and any(name != env_layouts.DEFAULT for name in layouts):
            raise TestbedError("server layouts need one sshd per server (not scale mode)")
        if self.is_up():
            raise TestbedError(f"a testbed is already running at {self.base}: run `testbed down` first")
        if self.manifest_path.exists():
            self.down()  # leftovers of a crashed run
        Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)  # sshd's privilege-separation directory
        self.base.mkdir(parents=True, exist_ok=True)
        try:
            with procs.allocation_lock():
                slot = self._claim_slot(n_servers, n_sshd)
                manifest = self._build(n_servers, n_sshd, slot, layouts)
                self.manifest_path.write_text(json.dumps(manifest, indent=1))
                self._start_sshds(manifest)
                self.manifest_path.write_text(json.dumps(manifest, indent=1))
                self._run_all(manifest["servers"], "startup.sh")
                self._wait_http(manifest["servers"], timeout=30)
        except BaseException:
            self.down()
            raise
        return manifest

    def down(self) -> None:
        """Stop everything this testbed started (sshd, sessions, WAS, hangs) and unmount."""
        try:
            manifest = self.manifest
        except TestbedError:
            manifest = {}
        for point in procs.mounted_under(self.base):
            subprocess.run(["umount", "-l", point], check=False, capture_output=True)
        listeners = [s["pid"] for s in manifest.get("sshd", []) if s.get("pid")]
        procs.kill([p for p in listeners if procs.alive(p)], signal.SIGKILL)
        for _ in range(3):  # sessions may spawn children while we kill
            victims = procs.tagged_processes(str(self.base))
            if not victims:
                break
            procs.kill(victims, signal.SIGKILL)
            time.sleep(0.05)
        for proc in self._procs.values():
            proc.wait(timeout=5)
        self._procs.clear()
        slot = manifest.get("slot")
        if slot is not None:
            claim = procs.CLAIMS_DIR / f"slot-{slot}"
            if claim.exists() and claim.read_text() == str(self.base):
                claim.unlink()
        self.manifest_path.unlink(missing_ok=True)

    def _claim_slot(self, n_servers: int, n_sshd: int) -> int:
        procs.CLAIMS_DIR.mkdir(exist_ok=True)
        for slot in range(MAX_SLOTS):
            claim = procs.CLAIMS_DIR / f"slot-{slot}"
            if claim.exists() and self._claim_live(claim, slot):
                continue
            ssh_base, http_base = 2200 + slot * SLOT_SPAN, 18000 + slot * SLOT_SPAN
            ssh_ok = all(procs.port_free(_ip(j), ssh_base + j) for j in range(1, n_sshd + 1))
            if ssh_ok and all(procs.port_free("127.0.0.1", http_base + i) for i in range(n_servers + 1)):
                claim.write_text(str(self.base))
                return slot
        raise TestbedError(f"no free port slot: {MAX_SLOTS} testbeds running or ports 2200-32000 taken")

    @staticmethod
    def _claim_live(claim: Path, slot: int) -> bool:
        try:
            other = json.loads((Path(claim.read_text()) / "manifest.json").read_text())
        except (OSError, ValueError):
            return False
        return other.get("slot") == slot and any(procs.alive(s.get("pid")) for s in other.get("sshd", []))

    def _build(self, n_servers: int, n_sshd: int, slot: int, layouts: list[str]) -> dict[str, Any]:
        base = self.base
        ssh_base, http_base = 2200 + slot * SLOT_SPAN, 18000 + slot * SLOT_SPAN
        scale = n_sshd < n_servers
        bin_dir = base / "bin"
        bin_dir.mkdir(exist_ok=True)
        shutil.copyfile(Path(__file__).with_name("was.py"), bin_dir / "was.py")
        (bin_dir / "common.sh").write_text(COMMON_SH)
        wrapper = bin_dir / "tb-exec"
        wrapper.write_text(EXEC_WRAPPER)
        wrapper.chmod(0o755)
        (bin_dir / "tb-steps.sh").write_text(STEP_RECORDER)  # read by the wrapper's "sh -s" sessions
        client_key = base / "client_key"
        (base / "authorized_keys").write_text(procs.keygen(client_key, "guardia-testbed-client") + "\n")
        width = max(2, len(str(n_servers)))
        envs = []  # each server's environment, installed under its root (testbed.layouts)
        for i in range(1, n_servers + 1):
            root = base / "servers" / f"srv-{i:0{width}d}"
            root.mkdir(parents=True, exist_ok=True)
            envs.append(env_layouts.install(layouts[i - 1] if i <= len(layouts) else env_layouts.DEFAULT, root))
        sshds = []
        for j in range(1, n_sshd + 1):
            sdir = base / "sshd" / f"sshd-{j:0{width}d}"
            sdir.mkdir(parents=True, exist_ok=True)
            pub = procs.keygen(sdir / "ssh_host_ed25519_key", f"sshd-{j}")
            config = sdir / "sshd_config"
            entry = {
                "id": sdir.name,
                "ip": _ip(j),
                "port": ssh_base + j,
                "dir": str(sdir),
                "config": str(config),
                "pid": None,
                "host_key_fingerprint": procs.fingerprint_of_pub(pub),
                "command_log": str(sdir / "commands.log"),
            }
            config.write_text(
                SSHD_CONFIG.format(
                    ip=entry["ip"],
                    port=entry["port"],
                    host_key=sdir / "ssh_host_ed25519_key",
                    pid_file=sdir / "sshd.pid",
                    authorized_keys=base / "authorized_keys",
                    wrapper=wrapper,
                    command_log=entry["command_log"],
                    base=base,
                    extra_env=_path_env(envs[j - 1]["path_prepend"]) if not scale else "",
                )
            )
            sshds.append(entry)
        servers = []
        for i in range(1, n_servers + 1):
            sid = f"srv-{i:0{width}d}"
            sshd = sshds[(i - 1) % n_sshd]  # round robin: a batch of neighbours spreads over sshds
            root = base / "servers" / sid
            for sub in ("app", "deploy", "backup", "scripts", "logs", "run", "faults"):
                (root / sub).mkdir(parents=True, exist_ok=True)
            (root / "app" / "app.war").write_bytes(INITIAL_APP)
            (root / "logs" / "catalina.out").touch()
            port = http_base + i
            for name, func in (("startup.sh", "tb_startup"), ("shutdown.sh", "tb_shutdown")):
                script = root / "scripts" / name
                script.write_text(
                    SERVER_SCRIPT.format(
                        name=name,
                        server_id=sid,
                        root=root,
                        port=port,
                        was_mode="host" if scale else "single",
                        ctl_port=http_base,
                        bin=bin_dir,
                        base=base,
                        function=func,
                    )
                )
                script.chmod(0o755)
            servers.append(
                {
                    "server_id": sid,
                    "hostname": f"{sid}.testbed",
                    "ip": sshd["ip"],
                    "ssh_port": sshd["port"],
                    "host_key_fingerprint": sshd["host_key_fingerprint"],
                    "http_port": port,
                    "root": str(root),
                    "app_path": str(root / "app"),
                    "deploy_path": str(root / "deploy"),
                    "backup_path": str(root / "backup"),
                    "script_path": str(root / "scripts"),
                    "log_path": str(root / "logs" / "catalina.out"),
                    "health_url": f"http://127.0.0.1:{port}/health",
                    "rolling_group": 1 if i <= (n_servers + 1) // 2 else 2,
                    "canary": False,
                    "sshd": sshd["id"],
                    "command_log": sshd["command_log"],
                    "pid_file": str(root / "run" / "was.pid"),
                    "initial_version": "1.0.0",
                    **envs[i - 1],
                }
            )
        return {
            "base_dir": str(base),
            "slot": slot,
            "mode": "scale" if scale else "normal",
            "was_host": {"ctl_port": http_base, "pid": None} if scale else None,
            "credential": {"username": "root", "private_key_path": str(client_key), "kind": "private_key"},
            "sshd": sshds,
            "servers": servers,
        }

    def _start_sshd(self, entry: dict[str, Any]) -> None:
        log = open(Path(entry["dir"]) / "sshd.log", "a")  # handed to the child, which keeps it open
        # -r: no re-exec of sshd per connection. The re-exec exists for ASLR on real hosts;
        # here it only costs CPU the engine under test needs (53 -> 88 connections/s).
        proc = subprocess.Popen(
            ["/usr/sbin/sshd", "-D", "-r", "-f", entry["config"], "-E", str(Path(entry["dir"]) / "sshd.log")],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=log,
            start_new_session=True,
            env=self._env(),
        )
        log.close()
        self._procs[proc.pid] = proc
        entry["pid"] = proc.pid
        if not procs.wait_port(entry["ip"], entry["port"], 10, proc):
            tail = (Path(entry["dir"]) / "sshd.log").read_text()[-500:]
            raise TestbedError(f"sshd {entry['id']} did not listen on {entry['ip']}:{entry['port']}: {tail}")

    def _start_sshds(self, manifest: dict[str, Any]) -> None:
        for entry in manifest["sshd"]:
            self._start_sshd(entry)
        host = manifest.get("was_host")
        if host:
            proc = subprocess.Popen(
                ["python3", str(self.base / "bin" / "was.py"), "host", "--ctl-port", str(host["ctl_port"])],
                stdin=subprocess.DEVNULL,
                stdout=open(self.base / "was-host.log", "a"),
                stderr=subprocess.STDOUT,
                start_new_session=True,
                env=self._env(),
            )
            self._procs[proc.pid] = proc
            host["pid"] = proc.pid
            if not procs.wait_port("127.0.0.1", host["ctl_port"], 10, proc):
                raise TestbedError("the scale-mode WAS host did not start (see was-host.log)")

    def run_script(self, server: dict[str, Any], name: str, timeout: float = 30) -> subprocess.CompletedProcess:
        """Run a server's script locally (testbed management, not the engine's path)."""
        return subprocess.run(
            ["bash", str(Path(server["script_path"]) / name)],
            env=self._env(),
            capture_output=True,
            text=True,
            timeout=timeout,
            stdin=subprocess.DEVNULL,
        )

    def _run_all(self, servers: list[dict[str, Any]], name: str) -> None:
        with ThreadPoolExecutor(max_workers=8) as pool:
            results = list(pool.map(lambda s: (s, self.run_script(s, name)), servers))
        failed = [f"{s['server_id']}: {r.stderr.strip()}" for s, r in results if r.returncode != 0]
        if failed:
            raise TestbedError(f"{name} failed on {len(failed)} server(s): " + "; ".join(failed[:5]))

    def _wait_http(self, servers: list[dict[str, Any]], timeout: float) -> None:
        deadline = time.monotonic() + timeout
        for srv in servers:
            if not procs.wait_port("127.0.0.1", srv["http_port"], max(0.1, deadline - time.monotonic())):
                raise TestbedError(f"WAS of {srv['server_id']} not listening on port {srv['http_port']}")

    # -- faults ------------------------------------------------------------------------
    def fault(
        self,
        server_id: str,
        name: str,
        on: bool = True,
        *,
        only_version: str | None = None,
        except_version: str | None = None,
        times: int | None = None,
        always: bool = False,
    ) -> None:
        """Switch a fault on or off for one server; see docs/testbed.md for each fault."""
        if name not in FAULTS:
            raise TestbedError(f"unknown fault {name!r}; known: {', '.join(sorted(FAULTS))}")
        srv = self.server(server_id)
        root = Path(srv["root"])
        if name == "sshd_down":
            self._sshd_down(srv["sshd"]) if on else self._sshd_up(srv["sshd"])
        elif name == "disk_full":
            self._disk_full(Path(srv["deploy_path"]), on)
        elif not on:
            (root / "faults" / name).unlink(missing_ok=True)
        else:
            lines = []
            if not always and only_version is None and except_version is None:
                current = _version_of(root / "app" / "app.war")
                if name in NEW_VERSION_FAULTS:
                    except_version = current
                elif name == "rollback_fail":
                    only_version = current  # fails when the old version is started again
            if only_version:
                lines.append(f"only_version={only_version}")
            if except_version:
                lines.append(f"except_version={except_version}")
            if times is not None:
                lines.append(f"times={int(times)}")
            (root / "faults" / name).write_text("".join(line + "\n" for line in lines))

    def active_faults(self, srv: dict[str, Any]) -> list[str]:
        found = sorted(p.name for p in (Path(srv["root"]) / "faults").iterdir())
        if str(Path(srv["deploy_path"])) in procs.mounted_under(self.base):
            found.append("disk_full")
        sshd = self._sshd_entry(srv["sshd"])
        if not procs.alive(sshd["pid"]):
            found.append("sshd_down")
        return found

    def _sshd_entry(self, sshd_id: str) -> dict[str, Any]:
        return next(s for s in self.manifest["sshd"] if s["id"] == sshd_id)

    def _sshd_down(self, sshd_id: str) -> None:
        entry = self._sshd_entry(sshd_id)
        pid = entry["pid"]
        if not procs.alive(pid):
            return
        # The listener first (no new logins), then its per-connection processes, which
        # drops every open connection the way a dead server would.
        sessions = procs.children_of(pid)
        procs.kill([pid])
        procs.kill(sessions)
        if pid in self._procs:
            self._procs.pop(pid).wait(timeout=5)
        deadline = time.monotonic() + 5
        while procs.port_listening(entry["ip"], entry["port"]) and time.monotonic() < deadline:
            time.sleep(0.02)

    def _sshd_up(self, sshd_id: str) -> None:
        manifest = self.manifest
        entry = next(s for s in manifest["sshd"] if s["id"] == sshd_id)
        if procs.alive(entry["pid"]):
            return
        self._start_sshd(entry)  # same config, same host key
        self.manifest_path.write_text(json.dumps(manifest, indent=1))

    @staticmethod
    def _disk_full(deploy: Path, on: bool) -> None:
        mounted = str(deploy) in procs.mounted_under(deploy.parent.parent)
        if on and not mounted:
            result = subprocess.run(
                ["mount", "-t", "tmpfs", "-o", f"size={DISK_FULL_SIZE}", "tmpfs", str(deploy)],
                capture_output=True,
                text=True,
            )
            if result.returncode:
                raise TestbedError(f"disk_full needs mount (root, CAP_SYS_ADMIN): {result.stderr.strip()}")
        elif not on and mounted:
            subprocess.run(["umount", "-l", str(deploy)], check=True, capture_output=True)

    # -- status / reset ----------------------------------------------------------------
    def status(self) -> dict[str, Any]:
        manifest = self.manifest
        rows = []
        for srv in manifest["servers"]:
            pid = procs.read_pid(Path(srv["pid_file"]))
            sshd = next(s for s in manifest["sshd"] if s["id"] == srv["sshd"])
            code, body = _http_get(srv["health_url"])
            rows.append(
                {
                    "server_id": srv["server_id"],
                    "ssh": f"{srv['ip']}:{srv['ssh_port']}",
                    "sshd": "up" if procs.alive(sshd["pid"]) else "down",
                    "http_port": srv["http_port"],
                    "was_pid": pid,
                    "was": "up" if procs.alive(pid) else "down",
                    "health": code,
                    "version": body.rsplit("version=", 1)[1] if "version=" in body else None,
                    "faults": self.active_faults(srv),
                }
            )
        return {"base_dir": manifest["base_dir"], "mode": manifest["mode"], "servers": rows}

    def reset(self) -> None:
        """Between tests: faults off, every server back on 1.0.0 with empty deploy/backup."""
        manifest = self.manifest
        for entry in manifest["sshd"]:
            if not procs.alive(entry["pid"]):
                self._sshd_up(entry["id"])
        for srv in manifest["servers"]:
            self._disk_full(Path(srv["deploy_path"]), False)
            for flag in (Path(srv["root"]) / "faults").iterdir():
                flag.unlink()
        manifest = self.manifest
        keep = {s["pid"] for s in manifest["sshd"]} | {(manifest.get("was_host") or {}).get("pid")}
        dirty, live = [], set()
        for srv in manifest["servers"]:
            root, pid = Path(srv["root"]), procs.read_pid(Path(srv["pid_file"]))
            code, body = _http_get(srv["health_url"])
            clean = (
                (root / "app" / "app.war").read_bytes() == INITIAL_APP
                and code == 200
                and procs.alive(pid)
                and body.endswith("version=1.0.0")
                and not any((root / "deploy").iterdir())
                and not any((root / "backup").iterdir())
            )
            if clean:
                live.add(pid)
            else:
                dirty.append(srv)
        # Whatever else a test left running (a hung startup.sh, a stray WAS) goes.
        strays = [
            p for p in procs.tagged_processes(str(self.base)) if p not in keep and p not in live and _comm(p) != "sshd"
        ]
        procs.kill_and_wait(strays, timeout=2)
        for srv in dirty:
            root = Path(srv["root"])
            for sub in ("deploy", "backup", "app"):
                shutil.rmtree(root / sub)
                (root / sub).mkdir()
            (root / "app" / "app.war").write_bytes(INITIAL_APP)
            (root / "run" / "was.pid").unlink(missing_ok=True)
            (root / "logs" / "catalina.out").write_text("")
        if dirty:
            self._run_all(dirty, "startup.sh")
            self._wait_http(dirty, timeout=30)


def _path_env(prepend: str) -> str:
    """A server whose layout brings commands of its own (the systemctl stand-in) finds them first."""
    return f" PATH={prepend}:{SCRIPT_ENV['PATH']}" if prepend else ""


def _ip(j: int) -> str:
    return f"127.0.{(j - 1) // 250}.{(j - 1) % 250 + 2}"


def _version_of(path: Path) -> str:
    import re

    match = re.search(rb"version=([A-Za-z0-9._+-]+)", path.read_bytes()[: 1 << 20]) if path.exists() else None
    return match.group(1).decode() if match else "unknown"


def _comm(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip()
    except OSError:
        return ""


def _http_get(url: str, timeout: float = 1.0) -> tuple[int | None, str]:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:  # a loopback testbed URL
            return response.status, response.read().decode(errors="replace")
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode(errors="replace")
    except OSError:
        return None, ""
