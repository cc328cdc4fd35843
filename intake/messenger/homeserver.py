"""The embedded Matrix homeserver (Synapse) for the demo and the tests.

Synapse lives in its own virtualenv (``.venv-synapse``, made by scripts/setup.sh from
requirements-synapse.txt) so Twisted and its dependencies stay out of GUARDiA's. This
module only writes its configuration, starts and stops the process and registers
accounts through the shared-secret admin API; it imports nothing from Django, so
scripts/demo.sh runs it as ``python -m intake.messenger.homeserver``. In production
GUARDIA_MATRIX_HOMESERVER names the site's own homeserver and none of this runs.

The configuration is written as JSON (which YAML reads): loopback only, the client API
only (no federation listener), SQLite, no open registration, rate limits raised so a
burst of approvals is not answered with 429.
"""

from __future__ import annotations

import argparse
import hashlib
import hmac
import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
VENV = Path(os.environ.get("GUARDIA_SYNAPSE_VENV", ROOT / ".venv-synapse"))
SERVER_NAME = "guardia.local"
_GENEROUS = {"per_second": 1000, "burst_count": 1000}


def installed() -> bool:
    return (VENV / "bin" / "python").exists()


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class Homeserver:
    """One Synapse on 127.0.0.1:port with its state under ``directory``."""

    directory: Path
    port: int = 0
    server_name: str = SERVER_NAME
    process: subprocess.Popen | None = None

    @property
    def config_path(self) -> Path:
        return self.directory / "homeserver.yaml"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def shared_secret(self) -> str:
        return json.loads(self.config_path.read_text())["registration_shared_secret"]

    def configure(self) -> None:
        """Write the configuration once; a second call keeps the port, keys and database."""
        self.directory.mkdir(parents=True, exist_ok=True)
        if self.config_path.exists():
            self.port = json.loads(self.config_path.read_text())["listeners"][0]["port"]
            return
        self.port = self.port or _free_port()
        config = {
            "server_name": self.server_name,
            "pid_file": str(self.directory / "homeserver.pid"),
            "listeners": [
                {
                    "port": self.port,
                    "bind_addresses": ["127.0.0.1"],
                    "type": "http",
                    "tls": False,
                    "x_forwarded": False,
                    "resources": [{"names": ["client"], "compress": False}],
                }
            ],
            "database": {"name": "sqlite3", "args": {"database": str(self.directory / "homeserver.db")}},
            "log_config": str(self._write_log_config()),
            "media_store_path": str(self.directory / "media"),
            "signing_key_path": str(self.directory / "signing.key"),
            "registration_shared_secret": secrets.token_urlsafe(32),
            "macaroon_secret_key": secrets.token_urlsafe(32),
            "form_secret": secrets.token_urlsafe(32),
            "report_stats": False,
            "enable_registration": False,
            "trusted_key_servers": [],
            "suppress_key_server_warning": True,
            "presence": {"enabled": False},
            "url_preview_enabled": False,
            "rc_message": _GENEROUS,
            "rc_login": {"address": _GENEROUS, "account": _GENEROUS, "failed_attempts": _GENEROUS},
            "rc_registration": _GENEROUS,
            "rc_joins": {"local": _GENEROUS, "remote": _GENEROUS},
            "rc_invites": {"per_room": _GENEROUS, "per_user": _GENEROUS, "per_issuer": _GENEROUS},
            "rc_room_creation": _GENEROUS,
        }
        self.config_path.write_text(json.dumps(config, indent=2))
        self.config_path.chmod(0o600)
        self._synapse("--generate-keys")

    def _write_log_config(self) -> Path:
        path = self.directory / "log.config"
        log = {
            "version": 1,
            "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"}},
            "handlers": {
                "file": {
                    "class": "logging.FileHandler",
                    "formatter": "plain",
                    "filename": str(self.directory / "homeserver.log"),
                }
            },
            "root": {"level": "WARNING", "handlers": ["file"]},
            "disable_existing_loggers": False,
        }
        path.write_text(json.dumps(log))
        return path

    def _synapse(self, *args: str) -> None:
        subprocess.run(
            [str(VENV / "bin" / "python"), "-m", "synapse.app.homeserver", "-c", str(self.config_path), *args],
            check=True,
            stdout=subprocess.DEVNULL,
            cwd=self.directory,
        )

    def start(self, timeout: float = 60.0) -> None:
        """Start Synapse in its own process group and wait until its client API answers."""
        self.configure()
        log = open(self.directory / "stdout.log", "ab")
        self.process = subprocess.Popen(
            [str(VENV / "bin" / "python"), "-m", "synapse.app.homeserver", "-c", str(self.config_path)],
            cwd=self.directory,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        log.close()
        (self.directory / "homeserver.pid").write_text(str(self.process.pid))
        deadline = time.monotonic() + timeout
        while not self.answers():
            if self.process.poll() is not None:
                raise RuntimeError(
                    f"Synapse exited with {self.process.returncode}; see {self.directory}/homeserver.log"
                )
            if time.monotonic() > deadline:
                raise RuntimeError(f"Synapse did not answer on {self.url} within {timeout} s")
            time.sleep(0.05)

    def answers(self) -> bool:
        try:
            with urllib.request.urlopen(f"{self.url}/_matrix/client/versions", timeout=2) as response:
                return response.status == 200
        except (OSError, urllib.error.URLError):
            return False

    def stop(self, timeout: float = 20.0) -> None:
        pid = self.process.pid if self.process else _read_pid(self.directory / "homeserver.pid")
        if pid is None:
            return
        try:
            os.killpg(pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
        if self.process is not None:
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                os.killpg(pid, signal.SIGKILL)
                self.process.wait(timeout)
            self.process = None
        (self.directory / "homeserver.pid").unlink(missing_ok=True)

    def register(self, localpart: str, password: str, admin: bool = False) -> str:
        """Create an account through the shared-secret admin API; an existing one is kept.
        Returns the Matrix user id."""
        endpoint = f"{self.url}/_synapse/admin/v1/register"
        with urllib.request.urlopen(endpoint, timeout=10) as response:
            nonce = json.load(response)["nonce"]
        body = {"nonce": nonce, "username": localpart, "password": password, "admin": admin}
        body["mac"] = hmac.new(
            self.shared_secret.encode(),
            b"\x00".join(p.encode() for p in (nonce, localpart, password, "admin" if admin else "notadmin")),
            hashlib.sha1,
        ).hexdigest()
        request = urllib.request.Request(
            endpoint, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"}
        )
        try:
            urllib.request.urlopen(request, timeout=30).close()
        except urllib.error.HTTPError as exc:
            if b"M_USER_IN_USE" not in exc.read():
                raise
        return f"@{localpart}:{self.server_name}"


def _read_pid(path: Path) -> int | None:
    try:
        return int(path.read_text().strip())
    except (OSError, ValueError):
        return None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="The embedded Matrix homeserver of the GUARDiA demo.")
    parser.add_argument("action", choices=["up", "down", "url"])
    parser.add_argument("--dir", type=Path, required=True)
    parser.add_argument("--port", type=int, default=0)
    args = parser.parse_args(argv)
    server = Homeserver(args.dir, port=args.port)
    if args.action == "up":
        if not installed():
            print(f"Synapse is not installed in {VENV}: run scripts/setup.sh", file=sys.stderr)
            return 1
        server.configure()
        if server.answers():
            print(server.url)
            return 0
        server.start()
        server.process = None  # leave it running after this command exits
        print(server.url)
    elif args.action == "down":
        server.stop()
    else:
        server.configure()
        print(server.url)
    return 0


if __name__ == "__main__":
    sys.exit(main())
