"""The optional LLM parser backend against a stand-in model server (a real HTTP server on
loopback speaking the OpenAI chat-completions wire format; no model runs here).

The model's answer is used only when it is JSON that fits the schema and names a system the
caller may file for with that system's servers; otherwise the rules' reading stands and the
parse result says why.
"""

from __future__ import annotations

import json

import pytest

from audit.models import AuditEntry
from governance.models import OpsTask
from tests.intake.standin import StandInModelServer, standin_service
from tests.intake.test_api import PARSE, URL, client_for, post


@pytest.fixture
def model(settings):
    with standin_service(settings, "LLM", "/v1/chat/completions", "standin-model") as script:
        yield script


def answer(sub_type="SERVICE_RESTART", system="BUDGET", servers=("was-1",), question=None) -> str:
    return json.dumps({"sub_type": sub_type, "system": system, "servers": list(servers), "question": question})


# Words the rules read differently (no task word they know, no system name): only the model
# can have read them as a restart of BUDGET's first server.
TEXT = "첫 번째 앱 박스 다시 띄워 주세요"


def test_a_valid_answer_is_used_and_the_request_carries_the_schema(world, model):
    model.content = answer()
    response = post(client_for(world.requester), URL, {"raw_request": TEXT})
    assert response.status_code == 201, response.content
    body = response.json()
    assert body["parsed"]["backend"] == "llm" and body["parsed"]["backend_note"] == ""
    task = OpsTask.objects.get(task_id=body["task_id"])
    assert task.sub_type == "SERVICE_RESTART" and [s.server_id for s in task.targets.all()] == ["was-1"]
    sent = model.received[0]["body"]
    assert sent["model"] == "standin-model" and sent["temperature"] == 0
    assert sent["response_format"]["type"] == "json_schema"
    assert sent["response_format"]["json_schema"]["schema"]["required"] == ["sub_type", "system", "servers", "question"]
    prompt = sent["messages"][0]["content"]
    # The prompt lists the caller's systems only: the model is told nothing the caller cannot see.
    assert "BUDGET" in prompt and "NEIS" not in prompt and "neis-was-1" not in prompt
    assert sent["messages"][1] == {"role": "user", "content": TEXT}
    entry = AuditEntry.objects.get(action="intake.filed", task=task.task_id)
    assert entry.payload["parser"] == "llm"


def test_prose_instead_of_json_falls_back_to_the_rules_and_says_so(world, model):
    model.content = "네, 예산시스템 WAS1번을 재시작하겠습니다."
    response = post(client_for(world.requester), PARSE, {"raw_request": "예산시스템 WAS1번 재시작"})
    assert response.status_code == 200, response.content
    parsed = response.json()["parsed"]
    assert parsed["backend"] == "rules" and "JSON 형식이 아님" in parsed["backend_note"]
    assert "규칙 분석으로 대체" in parsed["backend_note"]
    assert parsed["sub_type"] == "SERVICE_RESTART" and parsed["servers"] == ["was-1"]


def test_an_answer_outside_the_schema_falls_back(world, model):
    model.content = json.dumps({"sub_type": "FORMAT_DISK", "system": "BUDGET", "servers": [], "question": None})
    parsed = post(client_for(world.requester), PARSE, {"raw_request": "예산시스템 WAS1번 재시작"}).json()["parsed"]
    assert parsed["backend"] == "rules" and "스키마" in parsed["backend_note"]
    assert parsed["sub_type"] == "SERVICE_RESTART"


@pytest.mark.parametrize(
    "content",
    [
        answer(system="NEIS", servers=("neis-was-1",)),  # a system the caller cannot see
        answer(servers=("neis-was-1",)),  # a server of another system
        answer(system="NOPE", servers=()),  # a system that does not exist
    ],
)
def test_an_out_of_scope_system_or_server_is_refused_and_the_rules_take_over(world, model, content):
    model.content = content
    before = OpsTask.objects.count()
    client = client_for(world.requester)
    response = post(client, URL, {"raw_request": TEXT})
    # The rules cannot read these words: they ask back instead of trusting the model.
    assert response.status_code == 202, response.content
    body = response.json()
    assert body["parsed"]["backend"] == "rules" and "LLM 응답의" in body["parsed"]["backend_note"]
    assert body["parsed"]["system"] != "NEIS" and "neis-was-1" not in body["parsed"]["servers"]
    assert OpsTask.objects.count() == before
    assert not OpsTask.objects.filter(system=world.foreign).exists()


def test_a_model_that_does_not_answer_in_time_leaves_the_rules_reading(world, model):
    model.hang = True
    response = post(client_for(world.requester), URL, {"raw_request": "예산시스템 WAS2번 재시작"})
    assert response.status_code == 201, response.content
    parsed = response.json()["parsed"]
    assert parsed["backend"] == "rules" and "시간 초과" in parsed["backend_note"]
    assert parsed["servers"] == ["was-2"]


def test_an_http_error_falls_back(world, model):
    model.status = 503
    parsed = post(client_for(world.requester), PARSE, {"raw_request": "예산시스템 WAS2번 재시작"}).json()["parsed"]
    assert parsed["backend"] == "rules" and "HTTP 503" in parsed["backend_note"]


def test_a_destructive_request_never_reaches_the_model(world, model):
    model.content = answer()
    response = post(client_for(world.requester), URL, {"raw_request": "예산시스템 WAS1 rm -rf /var 해주세요"})
    assert response.status_code == 422
    assert model.received == [] and OpsTask.objects.count() == 0


def test_a_model_that_cannot_tell_asks_back_with_its_question(world, model):
    model.content = answer(sub_type=None, system="BUDGET", servers=(), question="어떤 작업을 할까요?")
    response = post(client_for(world.requester), URL, {"raw_request": TEXT})
    assert response.status_code == 202, response.content
    assert response.json()["clarification"]["question"] == "어떤 작업을 할까요?"


def test_off_by_default_no_request_is_sent(world, settings):
    assert settings.INTAKE_LLM_URL == ""
    with StandInModelServer() as server:
        response = post(client_for(world.requester), PARSE, {"raw_request": "예산시스템 WAS1번 재시작"})
        assert response.json()["parsed"]["backend"] == "rules" and server.script.received == []
