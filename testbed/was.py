"""WAS stand-in for the testbed: a tiny Tomcat look-alike (python3 standard library only).

Copied into the testbed's bin/ directory and run by the *system* python3 from a server's
startup.sh, so it never imports Django or the project. Two modes:

``single``  one process per server (normal mode): serves one HTTP port, writes its own
            catalina.out lines, exits on SIGTERM. Its PID is the server's run/was.pid.
``host``    one process for a whole scale-mode testbed: serves the HTTP ports of many
            logical servers. startup.sh starts a ``sleep`` "token" process (whose PID goes
            into run/was.pid, so "a new PID after restart" and ``kill -0`` stay meaningful)
            and tells the host over a loopback control port to open that server's port;
            the host closes the port when told to stop or when the token process dies.

The version served is read once at start from app/app.war, like a real WAS that loads its
WAR when it starts and not afterwards: ``Implementation-Version`` from the WAR's
META-INF/MANIFEST.MF when it is a zip archive (a real WAR, e.g. ``manage.py demo_artifact``),
otherwise the first ``version=X`` in its bytes (the plain-text stand-ins tests use). A WAR
with neither serves ``version=unknown``.

Modes per start (chosen by startup.sh from the fault flags):
``ok``        listen, GET /health -> 200 "OK version=X"
``fail_bind`` log SEVERE and never listen (the port stays closed; the process exits 1)
``http500``   listen, GET /health -> 500, log an ERROR with a stack trace
``log_error`` listen, /health -> 200, but log an ERROR line (the log check must catch it)
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import os
import re
import signal
import sys
import time
import zipfile

VERSION_RE = re.compile(rb"version=([A-Za-z0-9._+-]+)")
MANIFEST_VERSION_RE = re.compile(r"^Implementation-Version:[ \t]*([A-Za-z0-9._+-]+)[ \t]*\r?$", re.MULTILINE)


def read_version(root: str) -> str:
    """The version of app/app.war: a real WAR's META-INF/MANIFEST.MF Implementation-Version,
    else the first ``version=X`` in its bytes (the testbed's plain-text stand-in WARs)."""
    path = os.path.join(root, "app", "app.war")
    try:
        with open(path, "rb") as handle:
            head = handle.read(1 << 20)
    except OSError:
        return "missing"
    if zipfile.is_zipfile(path):
        try:
            with zipfile.ZipFile(path) as archive:
                manifest = archive.read("META-INF/MANIFEST.MF")[: 1 << 16].decode("utf-8", "replace")
            found = MANIFEST_VERSION_RE.search(manifest)
            if found:
                return found.group(1)
        except (KeyError, zipfile.BadZipFile, OSError, RuntimeError):
            pass  # no manifest or a damaged archive: fall back to the bytes
    match = VERSION_RE.search(head)
    return match.group(1).decode() if match else "unknown"


def read_page(root: str) -> str | None:
    """index.html of app/app.war when it is a real WAR that has one (the AI work agent's demo
    application), read once at start like the version; served at /index.html."""
    path = os.path.join(root, "app", "app.war")
    try:
        with zipfile.ZipFile(path) as archive:
            return archive.read("index.html")[: 1 << 16].decode("utf-8", "replace")
    except (KeyError, zipfile.BadZipFile, OSError, RuntimeError):
        return None


def log(root: str, level: str, message: str) -> None:
    stamp = dt.datetime.now().strftime("%Y-%m-%d %H:%M:%S,%f")[:-3]
    with open(os.path.join(root, "logs", "catalina.out"), "a") as handle:
        handle.write(f"{stamp} {level}: {message}\n")


class Instance:
    """One running "WAS" of one server."""

    def __init__(self, root: str, port: int, server_id: str, mode: str, instance_id: str):
        self.root, self.port, self.server_id, self.mode, self.instance_id = root, port, server_id, mode, instance_id
        self.version = read_version(root)
        self.page = read_page(root)
        self.server: asyncio.base_events.Server | None = None

    async def start(self) -> bool:
        began = time.monotonic()
        log(self.root, "INFO", f"Starting Servlet engine on {self.server_id} (instance {self.instance_id})")
        log(self.root, "INFO", f"Deploying web application archive [app.war] version={self.version}")
        if self.mode == "fail_bind":
            log(self.root, "SEVERE", f"Failed to initialize connector [Connector[HTTP/1.1-{self.port}]]")
            log(self.root, "SEVERE", "Catalina.start: LifecycleException: Protocol handler initialization failed")
            return False
        self.server = await asyncio.start_server(self.handle, "127.0.0.1", self.port, reuse_address=True)
        if self.mode in ("http500", "log_error"):
            log(self.root, "ERROR", 'Exception in thread "main" java.lang.IllegalStateException: datasource missing')
            log(self.root, "ERROR", "\tat com.example.app.Bootstrap.init(Bootstrap.java:42)")
        elapsed = int((time.monotonic() - began) * 1000)
        log(self.root, "INFO", f"Server startup in {elapsed} ms")
        return True

    async def stop(self) -> None:
        if self.server is not None:
            self.server.close()
            await self.server.wait_closed()
            self.server = None
            log(self.root, "INFO", f"Stopping service [Catalina] on {self.server_id} (instance {self.instance_id})")

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            request = await asyncio.wait_for(reader.readline(), 5)
            while (await asyncio.wait_for(reader.readline(), 5)) not in (b"\r\n", b"\n", b""):
                pass
            parts = request.decode("latin-1").split()
            path = parts[1] if len(parts) > 1 else "/"
            kind = "text/plain"
            if path.startswith("/health"):
                status, body = (
                    (500, f"FAIL version={self.version}")
                    if self.mode == "http500"
                    else (200, f"OK version={self.version}")
                )
            elif path == "/":
                status, body = 200, f"version={self.version}"
            elif path == "/index.html" and self.page is not None:
                status, body, kind = 200, self.page, "text/html; charset=utf-8"
            else:
                status, body = 404, "not found"
            reason = {200: "OK", 404: "Not Found", 500: "Internal Server Error"}[status]
            data = body.encode()
            writer.write(
                f"HTTP/1.1 {status} {reason}\r\nContent-Type: {kind}\r\nContent-Length: {len(data)}\r\n"
                f"X-Instance: {self.instance_id}\r\nConnection: close\r\n\r\n".encode()
                + data
            )
            await writer.drain()
        except (TimeoutError, ConnectionError):
            pass
        finally:
            writer.close()


def pid_alive(pid: int) -> bool:
    # A zombie still answers kill -0; the container's init may never reap it.
    try:
        with open(f"/proc/{pid}/stat") as handle:
            return handle.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return False


async def run_single(args: argparse.Namespace) -> int:
    instance = Instance(args.root, args.port, args.server_id, args.mode, str(os.getpid()))
    if not await instance.start():
        return 1
    stopping = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stopping.set)
    await stopping.wait()
    await instance.stop()
    return 0


async def run_host(args: argparse.Namespace) -> int:
    instances: dict[str, tuple[Instance, int]] = {}

    async def control(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            words = (await reader.readline()).decode().split()
            reply = "error bad request"
            if words[:1] == ["start"] and len(words) == 6:
                root, port, server_id, mode, token = words[1], int(words[2]), words[3], words[4], int(words[5])
                old = instances.pop(root, None)
                if old:
                    await old[0].stop()
                instance = Instance(root, port, server_id, mode, str(token))
                if await instance.start():
                    instances[root] = (instance, token)
                reply = f"ok {token}"
            elif words[:1] == ["stop"] and len(words) == 2:
                old = instances.pop(words[1], None)
                if old:
                    await old[0].stop()
                reply = "ok"
            elif words[:1] == ["ping"]:
                reply = f"ok {len(instances)}"
            writer.write((reply + "\n").encode())
            await writer.drain()
        except Exception as exc:  # a bad control line must not take the host down
            writer.write(f"error {exc}\n".encode())
        finally:
            writer.close()

    server = await asyncio.start_server(control, "127.0.0.1", args.ctl_port, reuse_address=True, backlog=1024)
    stopping = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stopping.set)
    while not stopping.is_set():
        # An instance lives as long as its token process: kill -9 of the PID in was.pid
        # takes the "WAS" down like it would a real JVM.
        for root, (instance, token) in list(instances.items()):
            if not pid_alive(token):
                instances.pop(root, None)
                await instance.stop()
        try:
            await asyncio.wait_for(stopping.wait(), 0.3)
        except TimeoutError:
            pass
    server.close()
    for instance, token in instances.values():
        await instance.stop()
        try:
            os.kill(token, signal.SIGTERM)
        except OSError:
            pass
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    single = sub.add_parser("single")
    single.add_argument("--root", required=True)
    single.add_argument("--port", type=int, required=True)
    single.add_argument("--server-id", required=True)
    single.add_argument("--mode", default="ok", choices=["ok", "fail_bind", "http500", "log_error"])
    host = sub.add_parser("host")
    host.add_argument("--ctl-port", type=int, required=True)
    args = parser.parse_args()
    return asyncio.run(run_single(args) if args.command == "single" else run_host(args))


if __name__ == "__main__":
    sys.exit(main())
