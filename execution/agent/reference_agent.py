#!/usr/bin/env python3
"""GUARDiA's reference work agent: a deterministic STAND-IN for a real coding agent.

It changes code only the way a task spells out: it reads the JSON block of
``.guardia/context.md``, applies each requested text replacement (``file``, ``find``,
``replace``), then every PM instruction line of the form ``바꾸기: "old" -> "new"`` (or
``replace: "old" -> "new"``), and writes ``.guardia/result.json``. Python standard library
only, run by the system python3 with ``-I``: it never imports Django or GUARDiA.

``--fault`` switches (tests and the demo, like the testbed's fault flags) make it misbehave
on purpose: ``hang``, ``no-result``, ``bad-result``, ``write-outside``, ``outside-scope``,
``noisy``.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import time

SPEC = re.compile(r"<!-- guardia:spec -->\s*```json\s*(.*?)\s*```\s*<!-- /guardia:spec -->", re.S)
INSTRUCTION = re.compile(r'^\s*(?:바꾸기|replace)\s*:\s*"(.*)"\s*->\s*"(.*)"\s*$', re.M)


def inside(path: str) -> str:
    full = os.path.realpath(path)
    if not full.startswith(os.getcwd() + os.sep):
        raise ValueError(f"{path}: outside the worktree")
    return full


def apply(edit: dict, changed: list[str]) -> str:
    """'' when applied (or already applied), else an error code."""
    path = inside(edit["file"])
    try:
        with open(path, encoding="utf-8") as handle:
            text = handle.read()
    except FileNotFoundError:
        return "FILE_NOT_FOUND"
    if edit["find"] in text:
        text = text.replace(edit["find"], edit["replace"])
        with open(path, "w", encoding="utf-8") as handle:
            handle.write(text)
        if edit["file"] not in changed:
            changed.append(edit["file"])
        return ""
    return "" if edit["replace"] and edit["replace"] in text else "FIND_NOT_FOUND"


def write_result(path: str, document: dict) -> None:
    with open(path, "w", encoding="utf-8") as handle:
        json.dump(document, handle, ensure_ascii=False)


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--context", default=".guardia/context.md")
    parser.add_argument("--result", default=".guardia/result.json")
    parser.add_argument("--fault", default="")
    args = parser.parse_args()
    with open(args.context, encoding="utf-8") as handle:
        found = SPEC.search(handle.read())
    if not found:
        write_result(
            args.result,
            {"status": "failed", "summary": "no spec in context.md", "changed_files": [], "error_code": "NO_SPEC"},
        )
        return 1
    spec = json.loads(found.group(1))
    print(f"reference agent: {spec['task_id']} round {spec['round']}", flush=True)
    if args.fault == "hang":
        time.sleep(3600)
    if args.fault == "noisy":
        for _ in range(4096):
            sys.stdout.write("x" * 1023 + "\n")
    edits = list(spec.get("edits") or [])
    default_file = edits[0]["file"] if edits else ""
    for item in spec.get("instructions") or []:
        for old, new in INSTRUCTION.findall(item.get("text", "")):
            edits.append({"file": default_file, "find": old, "replace": new})
    changed: list[str] = []
    for edit in edits:
        print(f"edit {edit['file']}: {edit['find']!r} -> {edit['replace']!r}", flush=True)
        problem = apply(edit, changed)
        if problem:
            write_result(
                args.result,
                {
                    "schema": "guardia.agent-result/1",
                    "status": "failed",
                    "summary": f"{edit['file']}: {edit['find']!r} not found",
                    "changed_files": changed,
                    "error_code": problem,
                },
            )
            return 1
    if args.fault == "write-outside":
        with open(os.path.join("..", "outside.txt"), "w") as handle:
            handle.write("written outside the worktree\n")
    if args.fault == "outside-scope":
        with open("build.py", "a") as handle:
            handle.write("# changed outside the declared scope\n")
        changed.append("build.py")
    if args.fault == "no-result":
        return 0
    if args.fault == "bad-result":
        with open(args.result, "w") as handle:
            handle.write('{"status": "success", "summary": ')
        return 0
    write_result(
        args.result,
        {
            "schema": "guardia.agent-result/1",
            "status": "success",
            "summary": f"{len(edits)}건의 텍스트 교체를 적용했습니다 (참조 에이전트)",
            "changed_files": changed,
            "error_code": None,
        },
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
