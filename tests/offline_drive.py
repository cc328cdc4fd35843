"""What an operator does with an offline bundle, run inside a network namespace that has
nothing but loopback (tests/test_offline_bundle.py starts it under `unshare -n`):

    python -m tests.offline_drive install BUNDLE_DIR KEY PREFIX DATA   install, start, one request, verify
    python -m tests.offline_drive upgrade BUNDLE_DIR KEY PREFIX DATA   install over it, verify

It prints one JSON line with what it saw; the test asserts on it. Only the installer and the
installed release run the product: this script talks to them over loopback HTTP like any
client, with the tests' own helpers for the REST calls.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

from tests.browser.demo_stack import api, approve, file_deploy, wait_settled
from tests.waiting import wait_for_port

PORT = 8000


def no_network_but_loopback() -> list[str]:
    subprocess.run(["ip", "link", "set", "lo", "up"], check=True)
    links = subprocess.run(["ip", "-o", "link"], capture_output=True, text=True, check=True).stdout
    return [line.split(":")[1].strip() for line in links.splitlines()]


def installer(bundle: Path, key: Path, prefix: Path, data: Path, *extra: str) -> list[str]:
    return [str(bundle / "install.sh"), "--key", str(key), "--prefix", str(prefix), "--data", str(data),
            "--debs", "check", *extra]  # fmt: skip


def release_env(prefix: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("GUARDIA_", "DJANGO_"))}
    for line in (prefix / "guardia.env").read_text().splitlines():
        name, _, value = line.partition("=")
        env[name] = value
    return env


def manage(prefix: Path, *args: str) -> subprocess.CompletedProcess:
    current = prefix / "current"
    return subprocess.run(
        [str(current / ".venv" / "bin" / "python"), "manage.py", *args],
        cwd=current, env=release_env(prefix), capture_output=True, text=True, timeout=300,
    )  # fmt: skip


def chain(prefix: Path) -> dict:
    done = manage(prefix, "audit_verify", "--json")
    return json.loads(done.stdout) if done.stdout.strip() else {"ok": False, "error": done.stderr[-800:]}


def internet_reachable() -> bool:
    try:
        socket.create_connection(("1.1.1.1", 53), timeout=2).close()
    except OSError:
        return False
    return True


def install_and_run(bundle: Path, key: Path, prefix: Path, data: Path) -> dict:
    seen: dict = {"links": no_network_but_loopback(), "internet": internet_reachable()}
    started = time.monotonic()
    prefix.mkdir(parents=True, exist_ok=True)
    log = open(prefix / "demo.log", "w")  # kept open for the demo's lifetime
    demo = subprocess.Popen(
        installer(bundle, key, prefix, data, "--start"),
        stdout=log, stderr=subprocess.STDOUT, env={**os.environ, "GUARDIA_TESTBED_SERVERS": "3"},
        start_new_session=True,
    )  # fmt: skip
    try:
        wait_for_port(PORT, demo, timeout=900)
        seen["install_and_start_seconds"] = round(time.monotonic() - started, 1)
        logins = manage(prefix, "seed_demo", "--print-logins", "--with-tokens").stdout.split()
        tokens = {logins[i]: logins[i + 2] for i in range(0, len(logins), 3)}
        stack = SimpleNamespace(base_url=f"http://127.0.0.1:{PORT}", tokens=tokens)
        seen["console_status"] = api_status(stack.base_url + "/console/")
        war = prefix / "app.war"
        manage(prefix, "demo_artifact", "--version", "1.1.0", "-o", str(war))
        filed = file_deploy(
            stack, "sitemgr", title="오프라인 설치 확인", targets=["srv-01", "srv-02"], version="1.1.0",
            artifact=war.read_bytes(),
        )  # fmt: skip
        task_id = filed["task_id"]
        for user in ("teamlead2", "pm"):
            task = api(stack, user, f"/tasks/{task_id}/")
            if any(s["status"] == "P" and s["assigned_to"] == user for s in task["steps"]):
                approve(stack, user, task_id)
        settled = wait_settled(stack, task_id, timeout=180)
        seen.update(task_id=task_id, status=settled["status"], failure=settled.get("failure_reason", ""))
    finally:
        if demo.poll() is None:
            os.killpg(demo.pid, signal.SIGTERM)
            demo.wait(timeout=60)
        log.close()
    seen["chain"] = chain(prefix)
    seen["current"] = (prefix / "current").resolve().name
    return seen


def api_status(url: str) -> int:
    import urllib.error
    import urllib.request

    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            return response.status
    except urllib.error.HTTPError as exc:
        return exc.code


def upgrade(bundle: Path, key: Path, prefix: Path, data: Path) -> dict:
    seen: dict = {"links": no_network_but_loopback(), "before": chain(prefix)}
    # The upgrades use the site-homeserver option: one embedded homeserver install (the first) is enough.
    command = installer(bundle, key, prefix, data, "--no-homeserver")
    done = subprocess.run(command, capture_output=True, text=True, timeout=900)
    seen.update(
        returncode=done.returncode, output=(done.stdout + done.stderr)[-1500:], chain=chain(prefix),
        current=(prefix / "current").resolve().name,
    )  # fmt: skip
    return seen


if __name__ == "__main__":
    action, *paths = sys.argv[1:]
    bundle_dir, key_file, prefix_dir, data_dir = (Path(p) for p in paths)
    run = install_and_run if action == "install" else upgrade
    print(json.dumps(run(bundle_dir, key_file, prefix_dir, data_dir), ensure_ascii=False))
