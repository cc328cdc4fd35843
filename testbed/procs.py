"""Process, port and key helpers for the testbed (no Django here: the one import from the
product, execution.probe, is standard library only)."""

from __future__ import annotations

import base64
import contextlib
import fcntl
import hashlib
import os
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

from execution.probe import port_open

# Every process the testbed starts carries this variable (sshd passes it to its sessions
# through SetEnv), so down() finds all of them, including a hanging script that exec'ed
# `sleep` and no longer names the testbed on its command line.
TAG = "GUARDIA_TESTBED_BASE"
LOCK_FILE = Path("/tmp/guardia-testbed.lock")
CLAIMS_DIR = Path("/tmp/guardia-testbed-slots")


def fingerprint_of_pub(pub_line: str) -> str:
    """OpenSSH/paramiko style: SHA256: + unpadded base64 of SHA-256 of the key blob."""
    blob = base64.b64decode(pub_line.split()[1])
    return "SHA256:" + base64.b64encode(hashlib.sha256(blob).digest()).decode().rstrip("=")


def keygen(path: Path, comment: str) -> str:
    """Generate an ed25519 key pair with ssh-keygen; return the public key line."""
    for p in (path, path.with_name(path.name + ".pub")):
        p.unlink(missing_ok=True)
    subprocess.run(
        ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", comment, "-f", str(path)],
        check=True,
        stdin=subprocess.DEVNULL,
        capture_output=True,
    )
    return path.with_name(path.name + ".pub").read_text().strip()


def alive(pid: int | None) -> bool:
    """True if pid runs and is not a zombie (this container's init may not reap)."""
    if not pid:
        return False
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def read_pid(path: Path) -> int | None:
    try:
        return int(path.read_text().strip() or 0) or None
    except (OSError, ValueError):
        return None


def _proc_ids() -> Iterator[int]:
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            yield int(entry.name)


def children_of(pid: int) -> list[int]:
    found = []
    for cand in _proc_ids():
        try:
            stat = Path(f"/proc/{cand}/stat").read_text()
        except OSError:
            continue
        if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
            found.append(cand)
    return found


def tagged_processes(base: str) -> list[int]:
    marker = f"{TAG}={base}".encode()
    me = os.getpid()
    found = []
    for pid in _proc_ids():
        if pid == me:
            continue
        try:
            env = Path(f"/proc/{pid}/environ").read_bytes()
        except OSError:
            continue
        if marker in env.split(b"\0") and alive(pid):
            found.append(pid)
    return found


def kill(pids: list[int], sig: int = signal.SIGKILL) -> None:
    for pid in pids:
        with contextlib.suppress(OSError):
            os.kill(pid, sig)


def kill_and_wait(pids: list[int], timeout: float = 5.0) -> None:
    kill(pids, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and any(alive(p) for p in pids):
        time.sleep(0.02)
    kill([p for p in pids if alive(p)], signal.SIGKILL)


def port_free(ip: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((ip, port))
        except OSError:
            return False
    return True


def port_listening(ip: str, port: int) -> bool:
    """The health checks' own probe, with a short timeout: the testbed's ports are on loopback."""
    return port_open(ip, port, timeout=0.2)


def wait_port(ip: str, port: int, timeout: float, proc: subprocess.Popen | None = None) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if port_listening(ip, port):
            return True
        if proc is not None and proc.poll() is not None:
            return False
        time.sleep(0.02)
    return False


@contextlib.contextmanager
def allocation_lock() -> Iterator[None]:
    """Serialise port-slot allocation between testbeds started by parallel test runs."""
    with open(LOCK_FILE, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def mounted_under(base: Path) -> list[str]:
    prefix = str(base).rstrip("/") + "/"
    points = []
    for line in Path("/proc/mounts").read_text().splitlines():
        point = line.split()[1].replace("\\040", " ")
        if point.startswith(prefix):
            points.append(point)
    return points
