"""The optional parser backend: an OpenAI-compatible chat-completions endpoint (vLLM, Ollama,
llama.cpp server) asked to read the request into a fixed JSON schema.

Off unless ``INTAKE_LLM_URL`` is set. The model's answer is never trusted: it must parse as
JSON, fit the schema, and name a playbook that exists, a system the caller may file for and
servers of that system. Anything else (a timeout, an HTTP error, prose, a system or server
the caller cannot see) leaves the rules' reading in place and says why in the parse result.

The prompt lists only the caller's own systems and servers: the model is told nothing the
caller could not see. The destructive-order screen and the permission filter run before the
model is asked (in ``intake.parser.parse``), so neither depends on it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import jsonschema  # type: ignore[import-untyped]
from django.conf import settings

from . import localhttp, rules
from .catalog import Catalog
from .parser import SUBTYPE_LABELS, Clarification, Parsed, parse, usual_servers

MAX_SYSTEMS_IN_PROMPT = 200
MAX_ANSWER_BYTES = 64 * 1024

ANSWER_SCHEMA: dict = {
    "type": "object",
    "additionalProperties": False,
    "required": ["sub_type", "system", "servers", "question"],
    "properties": {
        "sub_type": {"type": ["string", "null"], "enum": [*SUBTYPE_LABELS, None]},
        "system": {"type": ["string", "null"], "maxLength": 64},
        "servers": {"type": "array", "maxItems": 500, "items": {"type": "string", "maxLength": 64}},
        "question": {"type": ["string", "null"], "maxLength": 500},
    },
}

SYSTEM_PROMPT = (
    "You read maintenance requests written by Korean government site managers and answer ONLY with "
    "one JSON object that fits this JSON schema, no prose:\n{schema}\n"
    "sub_type is one of: {sub_types}.\n"
    "system is the code of one system from the list below, servers are server ids of that system "
    "(empty list: the playbook's usual servers). When the request does not say which system, which "
    "task or which servers, do not guess: set that field to null and put a short Korean question in "
    '"question".\nSystems (code | name | institution | servers):\n{systems}'
)


class BackendError(Exception):
    """The model could not be used for this request; the text says why (Korean, shown)."""


@dataclass(frozen=True)
class Settings:
    url: str
    model: str
    timeout: float
    api_key: str


def configured() -> Settings | None:
    url = getattr(settings, "INTAKE_LLM_URL", "")
    if not url:
        return None
    return Settings(
        url=url,
        model=getattr(settings, "INTAKE_LLM_MODEL", "") or "default",
        timeout=max(0.1, getattr(settings, "INTAKE_LLM_TIMEOUT_MS", 5000) / 1000),
        api_key=getattr(settings, "INTAKE_LLM_API_KEY", ""),
    )


def _catalog_lines(catalog: Catalog) -> str:
    lines = []
    for ref in [s for s in catalog.systems.values() if s.in_scope][:MAX_SYSTEMS_IN_PROMPT]:
        servers = ", ".join(s.server_id for s in ref.active_servers())
        institution = catalog.institutions.get(ref.institution)
        lines.append(f"{ref.code} | {ref.name} | {institution.name if institution else ref.institution} | {servers}")
    return "\n".join(lines)


def request_body(text: str, catalog: Catalog, model: str) -> dict:
    prompt = SYSTEM_PROMPT.format(
        schema=json.dumps(ANSWER_SCHEMA, ensure_ascii=False),
        sub_types=", ".join(SUBTYPE_LABELS),
        systems=_catalog_lines(catalog),
    )
    return {
        "model": model,
        "temperature": 0,
        "messages": [{"role": "system", "content": prompt}, {"role": "user", "content": text}],
        "response_format": {
            "type": "json_schema",
            "json_schema": {"name": "guardia_intake", "strict": True, "schema": ANSWER_SCHEMA},
        },
    }


def ask(text: str, catalog: Catalog, config: Settings) -> dict:
    """The model's answer as a dict that fits ANSWER_SCHEMA, or BackendError."""
    body = json.dumps(request_body(text, catalog, config.model), ensure_ascii=False).encode()
    headers = {"Content-Type": "application/json", "Accept": "application/json"}
    if config.api_key:
        headers["Authorization"] = f"Bearer {config.api_key}"
    try:
        raw = localhttp.post(config.url, body, headers, config.timeout, MAX_ANSWER_BYTES)
    except localhttp.ServiceError as exc:
        reason = {"timeout": "LLM 응답 시간 초과", "http": f"LLM 오류 응답 (HTTP {exc.code})"}
        raise BackendError(reason.get(exc.kind, "LLM 서버에 연결할 수 없음")) from exc
    if len(raw) > MAX_ANSWER_BYTES:
        raise BackendError("LLM 응답이 너무 큼")
    try:
        envelope = json.loads(raw)
        content = envelope["choices"][0]["message"]["content"]
        answer = json.loads(content)
    except (ValueError, KeyError, IndexError, TypeError) as exc:
        raise BackendError("LLM 응답이 JSON 형식이 아님") from exc
    try:
        jsonschema.validate(answer, ANSWER_SCHEMA)
    except jsonschema.ValidationError as exc:
        raise BackendError(f"LLM 응답이 스키마에 맞지 않음 ({exc.message[:120]})") from exc
    return answer


def check_against_cmdb(answer: dict, catalog: Catalog) -> None:
    """A system the caller cannot file for, or a server outside the named system, refuses the answer."""
    code = answer["system"]
    if code is not None:
        ref = catalog.systems.get(code)
        if ref is None or not ref.in_scope:
            raise BackendError("LLM 응답의 시스템이 사용자 범위 밖이거나 없음")
        known = {s.server_id for s in ref.active_servers()}
        unknown = [s for s in answer["servers"] if s not in known]
        if unknown:
            raise BackendError("LLM 응답의 서버가 해당 시스템에 없음")
    elif answer["servers"]:
        raise BackendError("LLM 응답이 시스템 없이 서버를 지정함")


def apply(answer: dict, rules_reading: Parsed, catalog: Catalog, *, sub_type_fixed: bool, system_fixed: bool) -> Parsed:
    """The model's reading over the rules' one; what the client chose (a template, a picker)
    stays. The screen, SR number, time phrase and sentence parameters are the rules'."""
    result = rules_reading
    question = answer["question"] or ""
    if not sub_type_fixed:
        result.sub_type = answer["sub_type"]
    if not system_fixed:
        result.system = answer["system"]
        ref = catalog.systems.get(answer["system"] or "")
        result.institution = ref.institution if ref else None
        if ref is not None:
            servers = answer["servers"] or [s.server_id for s in usual_servers(ref, result.sub_type)]
            result.servers, result.all_servers = sorted(servers), not answer["servers"]
        else:
            result.servers, result.all_servers = [], False
    result.clarification = None
    if result.sub_type is None:
        result.clarification = Clarification(
            "sub_type",
            question or "어떤 작업이 필요한지 알려 주세요.",
            [{"value": s, "label": label} for s, label in SUBTYPE_LABELS.items()],
        )
    elif result.system is None:
        result.clarification = Clarification(
            "system",
            question or "어느 시스템에 대한 요청인지 알려 주세요.",
            [{"value": s.code, "label": f"{s.name} ({s.code})"} for s in catalog.systems.values() if s.in_scope][:50],
        )
    if result.sub_type:
        result.category = rules.CATEGORY_BY_SUBTYPE.get(result.sub_type)
        result.parameters = rules.sentence_parameters(result.sub_type, result.text)
    return result


def read(
    text: str,
    catalog: Catalog,
    *,
    now=None,
    sub_type: str | None = None,
    system: str | None = None,
    targets: list[str] | None = None,
) -> Parsed:
    """The rules' reading, then the model's over it when the backend is on. A refused
    (destructive) request or one naming a system outside the caller's scope never reaches
    the model; the client's own choices are kept."""
    reading = parse(text, catalog, now=now, sub_type=sub_type, system=system, targets=targets)
    config = configured()
    if config is None or reading.refused or reading.forbidden_system or (sub_type and (system or targets)):
        return reading
    try:
        answer = ask(text, catalog, config)
        if system:
            answer = {**answer, "system": system, "servers": list(targets or [])}
        check_against_cmdb(answer, catalog)
    except BackendError as exc:
        reading.backend_note = f"{exc}: 규칙 분석으로 대체"
        return reading
    reading = apply(answer, reading, catalog, sub_type_fixed=bool(sub_type), system_fixed=bool(system))
    reading.backend = "llm"
    return reading
