"""The execution plan: what an approver sees is what runs.

Governance never imports execution, so the plan is rendered through the PLAN_RENDERER
setting (``execution.plan.render_plan``): every playbook renders, without running it, the
exact command lines per server (secrets masked), its uploads with size and SHA-256, its
health checks and its rollout. The plan is stored on the task at filing; each decision
records the plan's SHA-256 and the playbook version it saw, and the engine renders the
plan again before execution and refuses when the hash differs.

The hash is over a canonical JSON form (sorted keys, no whitespace, UTF-8), so the same
plan hashes the same in every process and on every database.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.utils.module_loading import import_string

from .errors import Conflict
from .notify import Message, notify
from .routing import ownership_of
from .transitions import record_task, task_link


def canonical_json(plan: dict[str, Any]) -> bytes:
    return json.dumps(plan, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def plan_sha256(plan: dict[str, Any]) -> str:
    return hashlib.sha256(canonical_json(plan)).hexdigest()


def render_plan(sub_type: str, parameters: dict, system, targets: list, task_ref: str = "") -> dict[str, Any]:
    """The plan for these (already validated) parameters on these CMDB servers, for the task
    ``task_ref`` (names derived from it, such as a backup directory, are part of the plan).

    Raises ValueError (the execution layer's ParameterError) when the parameters cannot
    produce a plan on these servers, e.g. a path outside a server's CMDB roots.
    """
    return import_string(settings.PLAN_RENDERER)(sub_type, parameters, system, list(targets), task_ref=task_ref)


PLAN_CHANGED = "계획이 바뀌었습니다"


def summary(plan: dict[str, Any], sha256: str) -> str:
    """One line for channels that cannot show the whole plan (inbox, messenger)."""
    if not plan:
        return ""
    sets = plan.get("step_sets") or []
    servers = sum(len(s.get("servers") or []) for s in sets)
    commands = sum(1 for s in sets for step in s.get("steps") or [] if step.get("command"))
    return (
        f"실행 계획 {sha256[:12]} · {plan.get('playbook', '')} v{plan.get('playbook_version', '')} · "
        f"서버 {servers}대 · 명령 {commands}개 (단계 묶음 {len(sets)}개)"
    )


def check_plan(task, shown_sha256: str = "") -> None:
    """Before a decision: the decider saw the plan whose hash they post back (channels that
    show no plan post none), and the stored plan still hashes to what was filed. Raises
    Conflict (409) otherwise; nothing has been changed yet when it does."""
    shown_sha256 = (shown_sha256 or "").strip().lower()
    if shown_sha256 and shown_sha256 != task.plan_sha256:
        raise Conflict(
            f"{PLAN_CHANGED}: {task.task_id}의 실행 계획이 화면에 표시된 것과 다릅니다. "
            "새 계획을 확인한 뒤 다시 결정하세요.",
            field="plan_sha256",
        )
    if task.plan and plan_sha256(task.plan) != task.plan_sha256:
        raise Conflict(
            f"{PLAN_CHANGED}: {task.task_id}의 저장된 실행 계획이 접수 때의 해시와 다릅니다.", field="plan_sha256"
        )


def alert_plan_changed(task, approved_sha256: str, current_sha256: str) -> None:
    """The engine rendered the plan again before running and it differs from the approved
    one: record it in the audit chain and tell the system's owner and the PMs. The engine
    refuses to run; nothing on the servers was changed."""
    record_task(
        "system",
        "execution.plan_mismatch",
        task,
        approved_sha256=approved_sha256,
        current_sha256=current_sha256,
        playbook=task.playbook,
        playbook_version=task.playbook_version,
    )
    # The PMs are whoever may validate results (the role's permission, not a group name).
    pms = get_user_model().objects.with_perm(
        "governance.validate_result", include_superusers=False, backend="django.contrib.auth.backends.ModelBackend"
    )
    people = {user.pk: user for user in pms.filter(is_active=True)}
    if task.system.institution.pm_id:
        people.setdefault(task.system.institution.pm_id, task.system.institution.pm)
    ownership = ownership_of(task)
    if ownership is not None and ownership.owner_id:
        people.setdefault(ownership.owner_id, ownership.owner)
    text = (
        f"[경고] {task.task_id} 실행 거부: 승인 후 실행 계획이 바뀌었습니다 "
        f"(승인된 계획 {approved_sha256[:12]}, 현재 계획 {current_sha256[:12]}). "
        "서버에는 아무것도 변경되지 않았습니다. 요청을 확인하고 다시 접수하세요."
    )
    for user in people.values():
        notify(user, Message(text, kind="alert", task=task, link=task_link(task)))
