"""A stand-in for the local model servers intake can be pointed at (no model runs here).

A real HTTP server on loopback that speaks the OpenAI wire format: ``POST
/v1/chat/completions`` answers with whatever the test scripted (a JSON reading, prose, an
HTTP error, or no answer until the client gives up) and ``POST /v1/audio/transcriptions``
reads the multipart upload and answers ``{"text": ...}``. Every request it received is kept
so a test can check what GUARDiA sent.
"""

from __future__ import annotations

import email
import email.policy
import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


@dataclass
class Script:
    content: str = "{}"  # the assistant message's content for chat completions
    status: int = 200
    hang: bool = False  # never answer in time (the client times out)
    transcript: str = ""
    received: list[dict] = field(default_factory=list)
    release: threading.Event = field(default_factory=threading.Event)


class _Handler(BaseHTTPRequestHandler):
    script: Script

    def log_message(self, *args) -> None:  # keep the test output clean
        pass

    def _answer(self, status: int, body: dict) -> None:
        raw = json.dumps(body, ensure_ascii=False).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(raw)))
        self.end_headers()
        self.wfile.write(raw)

    def do_POST(self) -> None:
        script = self.script
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length)
        if self.path == "/v1/audio/transcriptions":
            message = email.message_from_bytes(
                f"Content-Type: {self.headers['Content-Type']}\r\n\r\n".encode() + raw, policy=email.policy.HTTP
            )
            parts = {part.get_param("name", header="content-disposition"): part for part in message.iter_parts()}
            upload = parts["file"]
            script.received.append(
                {
                    "path": self.path,
                    "model": parts["model"].get_content().strip() if "model" in parts else None,
                    "language": parts["language"].get_content().strip() if "language" in parts else None,
                    "filename": upload.get_filename(),
                    "content_type": upload.get_content_type(),
                    "size": len(upload.get_payload(decode=True) or b""),
                }
            )
        else:
            script.received.append({"path": self.path, "body": json.loads(raw)})
        if script.hang:
            script.release.wait(10)  # longer than any client timeout in the tests
            return
        if script.status != 200:
            self._answer(script.status, {"error": {"message": "stand-in error"}})
        elif self.path == "/v1/audio/transcriptions":
            self._answer(200, {"text": script.transcript})
        else:
            self._answer(
                200,
                {
                    "id": "chatcmpl-standin",
                    "object": "chat.completion",
                    "choices": [
                        {
                            "index": 0,
                            "message": {"role": "assistant", "content": script.content},
                            "finish_reason": "stop",
                        }
                    ],
                },
            )


class StandInModelServer:
    def __init__(self) -> None:
        self.script = Script()
        handler = type("Handler", (_Handler,), {"script": self.script})
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def __enter__(self) -> StandInModelServer:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.script.release.set()
        self.server.shutdown()
        self.server.server_close()


@contextmanager
def standin_service(settings, kind: str, path: str, model: str) -> Iterator[Script]:
    """A stand-in server set up as the ``INTAKE_<kind>`` service (LLM, STT): its URL (``path``
    on the server), its model name and an 800 ms timeout; yields its script."""
    with StandInModelServer() as server:
        setattr(settings, f"INTAKE_{kind}_URL", f"{server.base}{path}")
        setattr(settings, f"INTAKE_{kind}_MODEL", model)
        setattr(settings, f"INTAKE_{kind}_TIMEOUT_MS", 800)
        yield server.script
