"""context.md: everything the agent is told, written by GUARDiA into the round's worktree
(``.guardia/context.md``). People read the Markdown; a program reads the JSON block at the
end (between the ``guardia:spec`` markers). No credential, no server address, no GUARDiA
setting is in it: the CMDB facts are names, paths inside the repository and commands.
"""

from __future__ import annotations

import json
from typing import Any

from cmdb.sources import SystemSource

SPEC_BEGIN = "<!-- guardia:spec -->"
SPEC_END = "<!-- /guardia:spec -->"
RESULT_FILE = ".guardia/result.json"
CONTEXT_FILE = ".guardia/context.md"


def spec(task, source: SystemSource, number: int, max_rounds: int, instructions: list[dict[str, Any]]) -> dict:
    parameters = task.parameters or {}
    edits = []
    if parameters.get("file") and parameters.get("find"):
        edits.append({"file": parameters["file"], "find": parameters["find"], "replace": parameters.get("replace", "")})
    return {
        "task_id": task.task_id,
        "round": number,
        "max_rounds": max_rounds,
        "description": parameters.get("description", ""),
        "edits": edits,
        "instructions": instructions,
        "scope": source.scope_entries,
        "build_command": source.build_command,
        "test_command": source.test_command,
        "artifact_path": source.artifact_path,
        "result_file": RESULT_FILE,
    }


def render(task, source: SystemSource, number: int, max_rounds: int, instructions: list[dict[str, Any]]) -> str:
    system = task.system
    machine = spec(task, source, number, max_rounds, instructions)
    targets = ", ".join(sorted(s.server_id for s in task.targets.all())) or "-"
    lines = [
        f"# GUARDiA 작업 컨텍스트: {task.task_id} ({number}/{max_rounds}회차)",
        "",
        "이 파일은 GUARDiA가 썼습니다. 아래 요청대로 이 작업 트리의 코드만 고치고, 끝나면 "
        f"`{RESULT_FILE}`에 결과를 JSON으로 쓰세요 (형식은 맨 아래). 커밋·푸시·배포는 하지 마세요: "
        "GUARDiA가 git으로 변경을 계산하고 빌드·테스트한 뒤 PM이 검증합니다.",
        "",
        "## 시스템 (CMDB)",
        f"- 기관: {system.institution.code} {system.institution.name}",
        f"- 시스템: {system.code} {system.name}{' (민감 시스템)' if system.sensitive else ''}",
        f"- 배포 대상 서버: {targets}",
        "",
        "## 요청",
        f"- 제목: {task.title}",
        f"- 요청자: {task.requester.get_username()} · 접수 경로: {task.channel}",
        "",
        "### 원문",
        "",
        _quoted(task.raw_request or task.title),
        "",
        "### 분석 결과",
        "",
        "```json",
        json.dumps(task.parsed or {}, ensure_ascii=False, indent=2, sort_keys=True),
        "```",
        "",
        "### 변경 설명",
        "",
        _quoted(machine["description"] or "-"),
        "",
    ]
    if machine["edits"]:
        lines += ["### 요청된 수정", ""]
        for edit in machine["edits"]:
            lines.append(f"- `{edit['file']}`: `{edit['find']}` → `{edit['replace']}`")
        lines.append("")
    lines += [
        "## 범위와 제약",
        "- 수정해도 되는 경로 (이 밖의 변경이 하나라도 있으면 회차가 실패합니다):",
        *[f"  - `{entry}`" for entry in machine["scope"]],
        "- 작업 트리 밖에는 아무것도 쓰지 마세요. 심볼릭 링크와 서브모듈은 만들 수 없습니다.",
        f"- 빌드: `{source.build_command}` → `{source.artifact_path}`",
        f"- 테스트: `{source.test_command or '(없음)'}`",
        "- 환경에는 자격 증명도 GUARDiA 설정도 없습니다. 네트워크를 쓰지 마세요.",
        "",
        "## PM 지시 사항 (이전 회차)",
        "",
    ]
    if instructions:
        for item in instructions:
            lines.append(f"- {item['round']}회차 검증 후 지시:")
            lines.append(_quoted(item["text"], indent="  "))
    else:
        lines.append("- 없음 (첫 회차)")
    lines += [
        "",
        "## result.json 형식",
        "",
        "```json",
        '{"schema": "guardia.agent-result/1", "status": "success", "summary": "무엇을 왜 바꿨는지",',
        ' "changed_files": ["src/index.html"], "error_code": null}',
        "```",
        "",
        '실패하면 `"status": "failed"`와 `error_code`(대문자, 예: `FIND_NOT_FOUND`)를 쓰세요.',
        "",
        "## 작업 명세 (프로그램용)",
        "",
        SPEC_BEGIN,
        "```json",
        json.dumps(machine, ensure_ascii=False, indent=2, sort_keys=True),
        "```",
        SPEC_END,
        "",
    ]
    return "\n".join(lines)


def _quoted(text: str, indent: str = "") -> str:
    return "\n".join(f"{indent}> {line}" if line else f"{indent}>" for line in str(text).splitlines() or [""])
