"""Korean labels for values stored as machine names: approval roles, inbox kinds, the
kinds of timeline lines. Stored values stay as they are; pages translate them here."""

from __future__ import annotations

from django.utils.translation import gettext_lazy as _

from audit.labels import action_label

from .models import Routing, Status, StepStatus

ROLE_LABELS = {
    # approval step roles
    "owner": _("시스템 담당자"),
    "pm": _("PM"),
    "security_officer": _("보안 담당자"),
    "emergency": _("긴급 추가 승인"),
    # groups
    "site_manager": _("현장 담당자"),
    "team_lead": _("팀장(시스템 담당자)"),
    "supervisor": _("상급자"),
    "auditor": _("감사자"),
    "admin": _("관리자"),
}

NOTIFICATION_KINDS = {
    "info": _("안내"),
    "alert": _("경보"),
    "approval": _("승인 요청"),
    "approved": _("승인됨"),
    "rejected": _("반려됨"),
    "reminder": _("승인 독촉"),
    "validation": _("결과 검증 요청"),
    "completed": _("완료"),
    "rework": _("재작업 요청"),
}

# Live event kinds that are not audit actions.
TIMELINE_KINDS = {
    "notification": _("알림"),
    "step": _("실행 단계"),
    "server": _("서버"),
    "transition": _("상태 변경"),
    "stop": _("정지"),
    "decision": _("승인 결정"),
}

DECISION_LABELS = {
    "APPROVED": StepStatus.APPROVED.label,
    "REJECTED": StepStatus.REJECTED.label,
    "approve": _("승인(완료)"),
    "rework": _("재작업 지시"),
    "takeover": _("직접 인수"),
}


def role_label(role: str) -> str:
    return str(ROLE_LABELS.get(role, role))


def notification_kind_label(kind: str) -> str:
    return str(NOTIFICATION_KINDS.get(kind, kind))


def status_label(value: str) -> str:
    try:
        return str(Status(value).label)
    except ValueError:
        return value


def routing_label(value: str) -> str:
    try:
        return str(Routing(value).label)
    except ValueError:
        return value


def decision_label(value: str) -> str:
    return str(DECISION_LABELS.get(value, value))


def timeline_kind_label(kind: str) -> str:
    if kind in TIMELINE_KINDS:
        return str(TIMELINE_KINDS[kind])
    return action_label(kind)
