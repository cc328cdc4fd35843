"""Approval policy: one table, read by submit_task.

risk (by sub-type)  -> approval roles
site tier           -> Tier 3 auto-approves LOW and MEDIUM, never on sensitive systems
deploy window       -> a change outside it is refused unless it is an emergency, which adds
                       a supervisor step and is never auto-approved

Read-only inspections are not changes: the deploy window does not apply to them.
"""

from __future__ import annotations

from dataclasses import dataclass

from .models import Category, Risk, SubType

RISK_BY_SUBTYPE: dict[str, str] = {
    SubType.LOG_MINING: Risk.LOW,
    SubType.MEMORY_CHECK: Risk.LOW,
    SubType.SERVICE_RESTART: Risk.MEDIUM,
    SubType.LOG_CLEANUP: Risk.MEDIUM,
    SubType.LOGROTATE: Risk.MEDIUM,
    SubType.APP_DEPLOY: Risk.HIGH,
    SubType.STATIC_SYNC: Risk.HIGH,
    SubType.DATA_CLEANUP: Risk.HIGH,
    SubType.CODE_FIX: Risk.HIGH,
    SubType.SSL_REPLACE: Risk.CRITICAL,
    SubType.CRON_MANAGE: Risk.CRITICAL,
    SubType.RAW_COMMAND: Risk.CRITICAL,
}

CATEGORY_BY_SUBTYPE: dict[str, str] = {
    SubType.APP_DEPLOY: Category.DEPLOY,
    SubType.STATIC_SYNC: Category.DEPLOY,
    SubType.SERVICE_RESTART: Category.INFRA_CONTROL,
    SubType.SSL_REPLACE: Category.INFRA_CONTROL,
    SubType.CRON_MANAGE: Category.INFRA_CONTROL,
    SubType.RAW_COMMAND: Category.INFRA_CONTROL,
    SubType.LOG_CLEANUP: Category.INFRA_CONTROL,
    SubType.LOGROTATE: Category.INFRA_CONTROL,
    SubType.DATA_CLEANUP: Category.DATA,
    SubType.LOG_MINING: Category.INSPECTION,
    SubType.MEMORY_CHECK: Category.INSPECTION,
    SubType.CODE_FIX: Category.CODE_CHANGE,
}

# Approval chain by risk: owner / + PM / + security officer.
ROLES_BY_RISK: dict[str, tuple[str, ...]] = {
    Risk.LOW: ("owner",),
    Risk.MEDIUM: ("owner",),
    Risk.HIGH: ("owner", "pm"),
    Risk.CRITICAL: ("owner", "pm", "security_officer"),
}
AUTO_APPROVE_TIERS = {3}
AUTO_APPROVE_RISKS = {Risk.LOW, Risk.MEDIUM}
EMERGENCY_ROLE = "supervisor"


@dataclass(frozen=True)
class ApprovalPlan:
    risk: str
    roles: tuple[str, ...]
    auto_approve: bool
    refused: str = ""  # non-empty: the request may not be filed as it stands


def plan_for(*, sub_type: str, tier: int, sensitive: bool, in_window: bool, emergency: bool) -> ApprovalPlan:
    if sub_type not in RISK_BY_SUBTYPE:
        raise ValueError(f"unknown sub_type {sub_type!r}")
    risk = RISK_BY_SUBTYPE[sub_type]
    roles = ROLES_BY_RISK[risk]
    is_change = risk != Risk.LOW
    if is_change and not in_window:
        if not emergency:
            return ApprovalPlan(risk, roles, False, refused="outside the system's deploy window")
        return ApprovalPlan(risk, roles + (EMERGENCY_ROLE,), False)
    auto = tier in AUTO_APPROVE_TIERS and risk in AUTO_APPROVE_RISKS and not sensitive and not emergency
    return ApprovalPlan(risk, () if auto else roles, auto)
