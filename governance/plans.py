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
from django.utils.module_loading import import_string


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
