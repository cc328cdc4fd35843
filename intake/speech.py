"""Voice memos: a recording from the field app, turned into text by a configured local
speech-to-text service (OpenAI-compatible ``/v1/audio/transcriptions``, e.g. a
faster-whisper server). Off unless ``INTAKE_STT_URL`` is set.

The transcript is read by the parser like typed text; nothing about the recording is kept.
The recording is checked before it leaves: at most ``INTAKE_MAX_AUDIO_MB``, and its first
bytes must be one of the containers browsers record in (WebM, Ogg, MP4/M4A, WAV, MP3).
"""

from __future__ import annotations

import json
import uuid

from django.conf import settings

from . import localhttp

MAX_TRANSCRIPT = 4000

# Container -> (how its bytes start, the file name and type sent on).
_CONTAINERS = (
    ("webm", lambda b: b[:4] == b"\x1a\x45\xdf\xa3", "audio/webm"),
    ("ogg", lambda b: b[:4] == b"OggS", "audio/ogg"),
    ("wav", lambda b: b[:4] == b"RIFF" and b[8:12] == b"WAVE", "audio/wav"),
    ("m4a", lambda b: b[4:8] == b"ftyp", "audio/mp4"),
    ("mp3", lambda b: b[:3] == b"ID3" or (len(b) > 1 and b[0] == 0xFF and b[1] & 0xE0 == 0xE0), "audio/mpeg"),
)


class SpeechError(Exception):
    """A recording that cannot be transcribed; ``status`` is the HTTP answer, the text says why."""

    def __init__(self, message: str, status: int = 400):
        super().__init__(message)
        self.status = status


def enabled() -> bool:
    return bool(getattr(settings, "INTAKE_STT_URL", ""))


def transcribe_upload(upload) -> str:
    """An uploaded recording's text: the service must be on (503), the file audio within the limit."""
    if not enabled():
        raise SpeechError("음성 메모가 설정되지 않았습니다 (GUARDIA_INTAKE_STT_URL).", status=503)
    return transcribe(read_upload(upload))


def limit_bytes() -> int:
    return int(getattr(settings, "INTAKE_MAX_AUDIO_MB", 10)) * 1024 * 1024


def container_of(raw: bytes) -> tuple[str, str]:
    for name, matches, media_type in _CONTAINERS:
        if matches(raw):
            return name, media_type
    raise SpeechError("음성 파일 형식이 아닙니다 (WebM, Ogg, MP4, WAV, MP3만 받습니다).")


def read_upload(upload) -> bytes:
    """The uploaded recording's bytes, refused when too large (413) or not audio (400)."""
    if upload is None:
        raise SpeechError("녹음 파일(audio)이 없습니다.")
    if upload.size > limit_bytes():
        raise SpeechError(f"녹음이 {limit_bytes() // (1024 * 1024)} MB보다 큽니다.", status=413)
    raw = upload.read(limit_bytes() + 1)
    if not raw:
        raise SpeechError("녹음 파일이 비어 있습니다.")
    if len(raw) > limit_bytes():
        raise SpeechError(f"녹음이 {limit_bytes() // (1024 * 1024)} MB보다 큽니다.", status=413)
    container_of(raw)
    return raw


def _multipart(fields: dict[str, str], raw: bytes, filename: str, media_type: str) -> tuple[bytes, str]:
    boundary = f"guardia-{uuid.uuid4().hex}"
    parts = []
    for name, value in fields.items():
        parts.append(f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n{value}\r\n'.encode())
    parts.append(
        f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="{filename}"\r\n'
        f"Content-Type: {media_type}\r\n\r\n".encode()
        + raw
        + b"\r\n"
    )
    parts.append(f"--{boundary}--\r\n".encode())
    return b"".join(parts), f"multipart/form-data; boundary={boundary}"


def transcribe(raw: bytes) -> str:
    """The recording's text (Korean), or SpeechError: 503 when off, 504 on timeout, 502 when the
    service fails or answers something else than a transcript."""
    if not enabled():
        raise SpeechError("음성 메모가 설정되지 않았습니다 (GUARDIA_INTAKE_STT_URL).", status=503)
    extension, media_type = container_of(raw)
    body, content_type = _multipart(
        {"model": getattr(settings, "INTAKE_STT_MODEL", "whisper-1"), "language": "ko", "response_format": "json"},
        raw,
        f"memo.{extension}",
        media_type,
    )
    timeout = max(0.1, getattr(settings, "INTAKE_STT_TIMEOUT_MS", 30000) / 1000)
    headers = {"Content-Type": content_type, "Accept": "application/json"}
    try:
        answer = json.loads(localhttp.post(settings.INTAKE_STT_URL, body, headers, timeout, 256 * 1024))
    except localhttp.ServiceError as exc:
        if exc.kind == "timeout":
            raise SpeechError("음성 인식 서버가 제때 답하지 않았습니다. 다시 시도하거나 글로 입력하세요.", 504) from exc
        if exc.kind == "http":
            raise SpeechError(f"음성 인식 서버 오류 (HTTP {exc.code}). 글로 입력하세요.", 502) from exc
        raise SpeechError("음성 인식 서버에 연결할 수 없습니다. 글로 입력하세요.", 502) from exc
    except ValueError as exc:
        raise SpeechError("음성 인식 서버의 답이 JSON이 아닙니다.", 502) from exc
    text = answer.get("text") if isinstance(answer, dict) else None
    if not isinstance(text, str):
        raise SpeechError("음성 인식 서버의 답에 글이 없습니다.", 502)
    text = text.strip()
    if not text:
        raise SpeechError("녹음에서 알아들은 말이 없습니다. 다시 녹음하세요.", 422)
    return text[:MAX_TRANSCRIPT]
