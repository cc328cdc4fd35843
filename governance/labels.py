"""Korean labels for values stored as machine names: approval roles, inbox kinds, the
kinds of timeline lines. Stored values stay as they are; pages translate them here."""

from __future__ import annotations

import re

from django.utils.translation import gettext_lazy as _

from audit.labels import action_label

from .models import Risk, Routing, Status, StepStatus

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


# Transition reasons the services write in English (they are hashed into the audit chain
# as written); the pages show them in Korean. Anything else (an approver's comment, an
# engine failure text) is shown as it was written.
REASON_PATTERNS = [
    (
        re.compile(r"^all approval steps approved \(plan (?P<plan>\w*), playbook (?P<playbook>.*)\)$"),
        _("모든 승인 단계 승인 (계획 %(plan)s, 플레이북 %(playbook)s)"),
    ),
    (re.compile(r"^all approval steps approved$"), _("모든 승인 단계 승인")),
    (re.compile(r"^auto-approved: tier (?P<tier>\d), (?P<risk>\w+)$"), _("자동 승인: %(tier)s등급, 위험도 %(risk)s")),
    (re.compile(r"^withdrawn by the requester$"), _("요청자가 취소함")),
    (re.compile(r"^expired: nobody answered within the SLA$"), _("기한 만료: 응답 기한 안에 아무도 응답하지 않음")),
    (re.compile(r"^kill switch: (?P<reason>.*)$", re.S), _("킬 스위치: %(reason)s")),
    (re.compile(r"^execution finished; PM validation$"), _("실행 완료, PM 검증 대기")),
    (re.compile(r"^PM validated the result$"), _("PM이 결과를 검증함")),
    (re.compile(r"^rework round (?P<round>\d+): (?P<comments>.*)$", re.S), _("재작업 %(round)s회차: %(comments)s")),
    (
        re.compile(r"^taken over by (?P<user>[^:]+): (?P<comments>.*)$", re.S),
        _("%(user)s 님이 직접 인수: %(comments)s"),
    ),
    (re.compile(r"^PM took over: (?P<comments>.*)$", re.S), _("PM이 직접 인수: %(comments)s")),
    (
        re.compile(r"^agent reached its maximum of (?P<rounds>\d+) rounds$"),
        _("AI 에이전트가 최대 %(rounds)s회차에 도달함"),
    ),
]


def _choice_label(choices, value: str) -> str:
    try:
        return str(choices(value).label)
    except ValueError:
        return value


def reason_label(reason: str) -> str:
    for pattern, text in REASON_PATTERNS:
        match = pattern.match(reason or "")
        if match:
            values = match.groupdict()
            if "risk" in values:
                values["risk"] = _choice_label(Risk, values["risk"])
            return str(text) % values
    return reason


def group_label(tier: str | None, rolling_group, index, fallback: str = "") -> str:
    """A rollout group in the words timelines and plan pages use ("그룹 1, 배치 0", "카나리",
    "전체 서버"); the stored, hashed plan keeps its own English label."""
    if tier == "canary":
        return str(_("카나리"))
    if tier == "all":
        return str(_("전체 서버"))
    if rolling_group is None or index is None:
        return fallback
    return str(_("그룹 %(group)s, 배치 %(batch)s") % {"group": rolling_group, "batch": index})


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
