"""The demo as scripts/demo.sh runs it, for browser tests: a loopback Redis, a migrated SQLite
file, the real-sshd testbed, ``seed_demo --testbed`` (the README's demo users), Daphne and
the django-q2 worker, each a child process stopped by its own PID afterwards.

Also the page helpers the walk-through and live-update tests share (log in, viewports,
screenshots into docs/screenshots/).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from contextlib import ExitStack, contextmanager
from pathlib import Path
from types import SimpleNamespace

from tests.live import daphne, qcluster, redis_server

REPO = Path(__file__).resolve().parents[2]
SCREENSHOTS = REPO / "docs" / "screenshots"
PASSWORD = "Walkthrough-pw-2026"
DESKTOP = {"width": 1280, "height": 860}
PHONE = {"width": 390, "height": 844}
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def manage(env: dict, *args: str, timeout: float = 180, check: bool = True) -> str:
    """``manage.py`` with these arguments in a child process; its output (a failure raises unless ``check`` is off)."""
    command = [sys.executable, "manage.py", *args]
    done = subprocess.run(command, cwd=REPO, env=env, check=check, timeout=timeout, capture_output=True, text=True)
    return done.stdout


@contextmanager
def demo_stack(base: Path, servers: int = 4):
    """Yields base_url, env and the demo's API tokens; everything stops on exit."""
    data = base / "data"
    with ExitStack() as stack:
        redis_url = stack.enter_context(redis_server())
        env = {
            **os.environ,
            "DJANGO_SETTINGS_MODULE": "guardia.settings",
            "GUARDIA_DATA_DIR": str(data),
            "GUARDIA_DATABASE_URL": f"sqlite:///{base / 'demo.sqlite3'}",
            "GUARDIA_CHANNEL_LAYER": "redis",
            "GUARDIA_REDIS_URL": redis_url,
            "GUARDIA_DEBUG": "true",  # WhiteNoise serves static files straight from the finders
            "GUARDIA_LOG_LEVEL": "WARNING",
            "GUARDIA_DEMO_PASSWORD": PASSWORD,
            "PYTHONUNBUFFERED": "1",
        }
        manage(env, "migrate", "--noinput", "-v", "0")
        manage(env, "testbed", "up", "--servers", str(servers))
        stack.callback(manage, env, "testbed", "down", timeout=120, check=False)
        manage(env, "seed_demo", "--testbed")
        tokens = {}
        for line in manage(env, "seed_demo", "--print-logins", "--with-tokens").splitlines():
            parts = line.split()
            if len(parts) == 3:
                tokens[parts[0]] = parts[2]
        address = stack.enter_context(daphne(env, base / "daphne.log"))
        env["GUARDIA_BASE_URL"] = f"http://{address}"
        stack.enter_context(qcluster(env, base / "qcluster.log"))
        yield SimpleNamespace(base_url=f"http://{address}", env=env, tokens=tokens, logs=base, password=PASSWORD)


def launch_chromium(playwright):
    return playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)


@contextmanager
def chromium_browser():
    """Debian chromium driven by Playwright, closed on the way out."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = launch_chromium(playwright)
        try:
            yield browser
        finally:
            browser.close()


def new_context(browser, viewport: dict):
    phone = viewport["width"] < 500
    return browser.new_context(
        locale="ko-KR",
        timezone_id="America/New_York",
        viewport=viewport,
        device_scale_factor=1,
        is_mobile=phone,
        has_touch=phone,
        accept_downloads=True,
    )


def login(context, base_url: str, username: str, password: str = PASSWORD):
    """A new page logged in through the login form; the page ends on the console."""
    page = context.new_page()
    page.goto(f"{base_url}/accounts/login/")
    page.fill("#id_username", username)
    page.fill("#id_password", password)
    page.click("form[action='/accounts/login/'] button[type=submit]")  # not the header's language button
    page.wait_for_url(re.compile(r".*/console/$"))
    return page


def wait_live(page) -> None:
    """The page's socket is open: events sent from now on reach it."""
    from playwright.sync_api import expect

    expect(page.locator("html[data-live=on]")).to_have_count(1, timeout=30_000)


def open_approval(context, base_url: str, user: str, task_id: str):
    """The user logs in and finds the task's card under "내 승인": (page, card)."""
    from playwright.sync_api import expect

    page = login(context, base_url, user)
    page.goto(f"{base_url}/console/approvals/")
    card = page.locator("article", has_text=task_id)
    expect(card).to_be_visible()
    return page, card


def approve_card(page, card, task_id: str, comments: str) -> None:
    """Approve from the card with a comment; the page confirms it and is closed."""
    from playwright.sync_api import expect

    card.locator("textarea[name=comments]").fill(comments)
    card.locator("button[value=APPROVED]").click()
    expect(page.locator(".messages")).to_contain_text(task_id)
    page.close()


def keep_failure_pages(contexts: dict, logs: Path, prefix: str) -> None:
    """Every open page of every context as a PNG and its HTML, for a failed test's log."""
    for name, context in contexts.items():
        for index, page in enumerate(context.pages):
            page.screenshot(path=str(logs / f"failure-{prefix}-{name}-{index}.png"), full_page=True)
            (logs / f"failure-{prefix}-{name}-{index}.html").write_text(page.content())


def mark_document(page) -> None:
    page.evaluate("window.__sameDocument = 'not reloaded'")


def same_document(page) -> bool:
    return page.evaluate("window.__sameDocument") == "not reloaded"


def screenshot(page, name: str) -> Path:
    """A viewport-sized PNG (kept small) of a main page, for the README's screenshot list."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=False, animations="disabled")
    from PIL import Image

    # A 256-colour palette keeps UI screenshots legible at about a third of the size.
    with Image.open(path) as image:
        image.convert("RGB").quantize(colors=256, method=Image.Quantize.MEDIANCUT).save(path, optimize=True)
    return path


# --- the REST API as another actor uses it (a script, a PWA) ---------------------------
def api(stack, user: str, path: str, payload: dict | None = None) -> dict:
    import json
    import urllib.request

    request = urllib.request.Request(
        f"{stack.base_url}/api/v1{path}",
        method="POST" if payload is not None else "GET",
        data=json.dumps(payload).encode() if payload is not None else None,
        headers={"Authorization": f"Token {stack.tokens[user]}", "Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.loads(response.read())


def file_deploy(stack, user: str, *, title: str, targets: list[str], version: str, artifact: bytes) -> dict:
    """POST /api/v1/tasks/ (multipart with the artifact), as the requester."""
    import json
    import urllib.request

    boundary = "----guardia-browser-test"
    fields = {
        "system": "NIA-TESTBED",
        "sub_type": "APP_DEPLOY",
        "title": title,
        "targets": targets,
        "parameters": json.dumps({"version": version}),
    }
    parts = []
    for name, value in fields.items():
        for item in value if isinstance(value, list) else [value]:
            parts.append(f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n{item}\r\n'.encode())
    parts.append(
        f'--{boundary}\r\nContent-Disposition: form-data; name="artifact"; filename="app.war"\r\n'
        f"Content-Type: application/java-archive\r\n\r\n".encode()
        + artifact
        + b"\r\n"
    )
    parts.append(f"--{boundary}--\r\n".encode())
    request = urllib.request.Request(
        f"{stack.base_url}/api/v1/tasks/",
        data=b"".join(parts),
        method="POST",
        headers={
            "Authorization": f"Token {stack.tokens[user]}",
            "Content-Type": f"multipart/form-data; boundary={boundary}",
        },
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.loads(response.read())


def approve(stack, user: str, task_id: str, comments: str = "ok") -> dict:
    """Decide the user's open step of the task over REST, with the plan hash the task shows."""
    task = api(stack, user, f"/tasks/{task_id}/")
    step = next(s for s in task["steps"] if s["status"] == "P" and s["assigned_to"] == user)
    return api(
        stack,
        user,
        "/approval/process",
        {
            "step_id": step["id"],
            "decision": "APPROVED",
            "comments": comments,
            "plan_sha256": task.get("plan_sha256", ""),
        },
    )


def wait_settled(stack, task_id: str, timeout: float = 90) -> dict:
    import time

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        task = api(stack, "pm", f"/tasks/{task_id}/")
        if task["status"] not in ("APPROVED", "EXECUTING", "PENDING_APPROVAL"):
            return task
        time.sleep(0.5)
    raise AssertionError(f"{task_id} did not settle in {timeout} s")
