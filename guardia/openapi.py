"""The error answers every API operation can give, written into the OpenAPI schema.

drf-spectacular documents the success response of each view; the errors come from code
shared by all of them (authentication, the permission classes, the scoped lookups that
answer 404, serializer and filter validation, the state checks that answer 409, and
guardia.api.exception_handler, which gives each a JSON body). Documenting them per view
would repeat the same five lines in every module and be forgotten on the next endpoint,
so this hook adds them where they apply and leaves any a view documented itself.
"""

from __future__ import annotations

from typing import Any

ERROR_COMPONENT = "Error"

# What guardia.api.exception_handler answers: {"detail": "..."} (or a list of messages),
# or one list of messages per invalid field.
ERROR_SCHEMA: dict[str, Any] = {
    "type": "object",
    "description": "What is wrong: `detail`, or the messages for each invalid field.",
    "properties": {
        "detail": {"oneOf": [{"type": "string"}, {"type": "array", "items": {"type": "string"}}]},
    },
    "additionalProperties": {
        "oneOf": [
            {"type": "string"},
            {"type": "array", "items": {}},
            {"type": "object"},
        ]
    },
}

DESCRIPTIONS = {
    "400": "The request is malformed or a field is invalid (named in the body).",
    "401": "No valid token or session.",
    "403": "The caller's role may not do this.",
    "404": "No such object, or not one the caller may see.",
    "409": "The object's state does not allow this now (the body says why).",
}

_WRITES = {"post", "put", "patch", "delete"}


def error_codes(method: str, operation: dict[str, Any], path_item_parameters: list) -> list[str]:
    """The error statuses an operation can answer, by what it takes."""
    parameters = [*path_item_parameters, *operation.get("parameters", [])]
    takes_path = any(p.get("in") == "path" for p in parameters)
    takes_input = "requestBody" in operation or any(p.get("in") == "query" for p in parameters)
    codes = ["401", "403"]
    if takes_input:
        codes.append("400")
    if takes_path or method in _WRITES:  # a write names its objects in the path or the body
        codes.append("404")
    if method in _WRITES:
        codes.append("409")
    return codes


def document_error_responses(result: dict[str, Any], generator=None, request=None, public=None) -> dict[str, Any]:
    """drf-spectacular POSTPROCESSING_HOOKS entry."""
    reference = {"$ref": f"#/components/schemas/{ERROR_COMPONENT}"}
    for path_item in result.get("paths", {}).values():
        shared = path_item.get("parameters", [])
        for method, operation in path_item.items():
            if method == "parameters" or not isinstance(operation, dict):
                continue
            responses = operation.setdefault("responses", {})
            for code in error_codes(method, operation, shared):
                responses.setdefault(
                    code, {"description": DESCRIPTIONS[code], "content": {"application/json": {"schema": reference}}}
                )
    result.setdefault("components", {}).setdefault("schemas", {}).setdefault(ERROR_COMPONENT, ERROR_SCHEMA)
    return result
