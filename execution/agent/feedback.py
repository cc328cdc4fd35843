"""The knowledge loop: every agent round with the PM's verdict on it, as JSON Lines for later
fine-tuning of a local model (``manage.py export_agent_feedback``).

One line per round: the request (title, raw text, parse, parameters with secrets masked), the
context.md the agent was given, the diff git computed, the round's outcome, and the PM's
decision and instruction from the audit chain (``validation.decided`` of that round).
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterator
from typing import Any, Protocol

from audit.models import AuditEntry

from .models import AgentRound

SCHEMA = "guardia.agent-feedback/1"


class Writer(Protocol):
    def write(self, text: str, /) -> Any: ...


def decisions_by_round(task_ids: list[str]) -> dict[tuple[str, int], dict]:
    found: dict[tuple[str, int], dict] = {}
    entries = AuditEntry.objects.filter(action="validation.decided", task__in=task_ids).order_by("seq")
    for entry in entries:
        payload = entry.payload or {}
        number = int(payload.get("round") or 0) + 1  # the task's rework counter when the PM decided
        found[(entry.task, number)] = {
            "verdict": payload.get("verdict", ""),
            "instruction": payload.get("comments", ""),
            "by": entry.actor,
            "at": entry.created_at.isoformat(),
        }
    return found


def rows(since: dt.datetime | None = None, task_id: str = "") -> Iterator[dict]:
    rounds = AgentRound.objects.select_related("task__system").order_by("task__task_id", "number")
    if since is not None:
        rounds = rounds.filter(started_at__gte=since)
    if task_id:
        rounds = rounds.filter(task__task_id=task_id)
    selected = list(rounds)
    decisions = decisions_by_round(sorted({r.task.task_id for r in selected}))
    for record in selected:
        task = record.task
        decision = decisions.get((task.task_id, record.number), {})
        yield {
            "schema": SCHEMA,
            "task_id": task.task_id,
            "system": task.system.code,
            "round": record.number,
            "request": {
                "title": task.title,
                "raw_request": task.raw_request,
                "parsed": task.parsed,
                "parameters": {k: v for k, v in task.masked_parameters.items() if k != "_meta"},
            },
            "context": record.context,
            "diff": record.diff,
            "files": record.changed_files,
            "outcome": {"status": record.status, "error_code": record.error_code, "reason": record.reason},
            "agent_result": record.result,
            "pm_decision": decision.get("verdict", ""),
            "instruction": decision.get("instruction", ""),
        }


def export(out: Writer, since: dt.datetime | None = None, task_id: str = "") -> int:
    count = 0
    for row in rows(since, task_id):
        out.write(json.dumps(row, ensure_ascii=False, sort_keys=True) + "\n")
        count += 1
    return count
