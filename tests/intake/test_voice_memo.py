"""Voice memos against a stand-in speech-to-text server (a real HTTP server on loopback
speaking the OpenAI /v1/audio/transcriptions wire format; no model runs here): the transcript
is read by the parser like typed text; off by default; size, type and service failures are
clear errors that leave nothing behind."""

from __future__ import annotations

import io
import wave

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile

from governance.models import OpsTask
from intake.models import IntakeRequest
from tests.intake.standin import StandInModelServer, standin_service
from tests.intake.test_api import PARSE, URL, client_for

SPOKEN = "예산시스템 WAS1번 재시작 해주세요"


def wav(seconds: float = 0.5) -> bytes:
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(16000)
        out.writeframes(b"\x00\x01" * int(16000 * seconds))
    return buffer.getvalue()


def memo(raw: bytes | None = None, name: str = "memo.wav") -> SimpleUploadedFile:
    return SimpleUploadedFile(name, wav() if raw is None else raw, content_type="audio/wav")


@pytest.fixture
def stt(settings):
    with standin_service(settings, "STT", "/v1/audio/transcriptions", "standin-whisper") as script:
        script.transcript = SPOKEN
        yield script


def test_a_memo_is_transcribed_and_read_like_typed_text(world, stt):
    response = client_for(world.requester).post(PARSE, {"audio": memo()}, format="multipart")
    assert response.status_code == 200, response.content
    body = response.json()
    assert body["transcript"] == SPOKEN
    assert body["parsed"]["sub_type"] == "SERVICE_RESTART" and body["parsed"]["servers"] == ["was-1"]
    sent = stt.received[0]
    assert sent["model"] == "standin-whisper" and sent["language"] == "ko"
    assert sent["content_type"] == "audio/wav" and sent["size"] == len(wav())


def test_a_memo_files_the_request_with_what_was_typed_first(world, stt):
    stt.transcript = "WAS2번 재시작 부탁드립니다"
    response = client_for(world.requester).post(URL, {"raw_request": "예산시스템", "audio": memo()}, format="multipart")
    assert response.status_code == 201, response.content
    task = OpsTask.objects.get(task_id=response.json()["task_id"])
    assert task.raw_request == "예산시스템\nWAS2번 재시작 부탁드립니다"
    assert [s.server_id for s in task.targets.all()] == ["was-2"]


def test_off_by_default_a_memo_is_refused_and_nothing_sent(world, settings):
    assert settings.INTAKE_STT_URL == ""
    response = client_for(world.requester).post(URL, {"audio": memo()}, format="multipart")
    assert response.status_code == 503 and "음성 메모가 설정되지 않았습니다" in response.json()["audio"][0]
    assert OpsTask.objects.count() == 0 and IntakeRequest.objects.count() == 0


@pytest.mark.parametrize(
    "raw, status, words",
    [
        (b"this is not a recording at all", 400, "음성 파일 형식이 아닙니다"),
        (b"", 400, "녹음 파일"),
        (b"RIFF\x00\x00\x00\x00WAVE" + b"\x00" * (1024 * 1024 + 10), 413, "1 MB보다 큽니다"),
    ],
)
def test_bad_recordings_are_refused_before_they_are_sent(world, stt, settings, raw, status, words):
    settings.INTAKE_MAX_AUDIO_MB = 1
    response = client_for(world.requester).post(URL, {"audio": memo(raw)}, format="multipart")
    assert response.status_code == status, response.content
    assert words in response.json()["audio"][0]
    assert stt.received == [] and OpsTask.objects.count() == 0 and IntakeRequest.objects.count() == 0


def test_service_failures_are_clear_errors(world, stt):
    client = client_for(world.requester)
    stt.status = 500
    response = client.post(PARSE, {"audio": memo()}, format="multipart")
    assert response.status_code == 502 and "HTTP 500" in response.json()["audio"][0]
    stt.status, stt.transcript = 200, "   "
    response = client.post(PARSE, {"audio": memo()}, format="multipart")
    assert response.status_code == 422 and "다시 녹음하세요" in response.json()["audio"][0]
    stt.hang = True
    response = client.post(URL, {"audio": memo()}, format="multipart")
    assert response.status_code == 504 and "제때 답하지" in response.json()["audio"][0]
    assert OpsTask.objects.count() == 0


def test_the_field_app_offers_the_control_only_when_speech_is_on(client, world, settings):
    client.force_login(world.requester)
    assert 'id="voice-memo"' not in client.get("/app/new").content.decode()
    response = client.post("/app/transcribe", {"audio": memo()})
    assert response.status_code == 503 and "음성 메모가 설정되지 않았습니다" in response.json()["errors"]["audio"]
    with StandInModelServer() as server:
        settings.INTAKE_STT_URL = f"{server.base}/v1/audio/transcriptions"
        server.script.transcript = SPOKEN
        page = client.get("/app/new").content.decode()
        assert 'id="voice-memo" data-transcribe-url="/app/transcribe"' in page and 'id="voice-button"' in page
        response = client.post("/app/transcribe", {"audio": memo()})
        assert response.status_code == 200 and response.json() == {"text": SPOKEN}
        bad = client.post("/app/transcribe", {"audio": memo(b"%PDF-1.4 not audio", "memo.webm")})
        assert bad.status_code == 400 and "음성 파일 형식" in bad.json()["errors"]["audio"]
        client.force_login(world.auditor)  # may not file requests
        assert client.post("/app/transcribe", {"audio": memo()}).status_code == 403
        assert len(server.script.received) == 1
