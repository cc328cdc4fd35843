"""result.json: what the agent says it did, checked against the published JSON schema
(execution/agent/result.schema.json, described in docs/agent.md)."""

from __future__ import annotations

import json
import os
import stat
from functools import cache
from pathlib import Path
from typing import Any

from jsonschema import Draft202012Validator  # type: ignore[import-untyped]

SCHEMA_FILE = Path(__file__).with_name("result.schema.json")
MAX_BYTES = 64 * 1024


class ResultProblem(ValueError):
    def __init__(self, code: str, message: str):
        super().__init__(message)
        self.code = code


@cache
def validator() -> Draft202012Validator:
    return Draft202012Validator(json.loads(SCHEMA_FILE.read_text()))


def read_result(path: Path) -> dict[str, Any]:
    """The validated result.json, or ResultProblem with RESULT_MISSING / RESULT_INVALID.
    The file is opened without following a symbolic link and read up to 64 KiB."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except FileNotFoundError:
        raise ResultProblem("RESULT_MISSING", "에이전트가 result.json을 남기지 않았습니다") from None
    except OSError as exc:
        raise ResultProblem("RESULT_INVALID", f"result.json을 열 수 없습니다 ({exc.strerror})") from None
    with os.fdopen(fd, "rb") as handle:
        if not stat.S_ISREG(os.fstat(handle.fileno()).st_mode):
            raise ResultProblem("RESULT_INVALID", "result.json이 일반 파일이 아닙니다")
        data = handle.read(MAX_BYTES + 1)
    if len(data) > MAX_BYTES:
        raise ResultProblem("RESULT_INVALID", f"result.json이 {MAX_BYTES // 1024} KiB를 넘습니다")
    try:
        document = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ResultProblem("RESULT_INVALID", f"result.json이 올바른 JSON이 아닙니다: {exc}") from None
    return check(document)


def check(document: Any) -> dict[str, Any]:
    errors = sorted(validator().iter_errors(document), key=lambda e: list(e.absolute_path))
    if errors:
        first = errors[0]
        where = "/".join(str(part) for part in first.absolute_path) or "(최상위)"
        raise ResultProblem("RESULT_INVALID", f"result.json이 스키마에 맞지 않습니다: {where}: {first.message}")
    return document
