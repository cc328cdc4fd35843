"""The monthly owner-mapping check: are the people TB_SYSTEM_OWNER names still able to decide?

For every system it looks at the owner, the deputy and the supervisor, the three rungs the
approval ladder climbs (routing.py), and reports anyone who

- is an inactive account (``is_active`` off: the ladder skips them),
- as owner, has been away (``owner_is_active`` off) longer than ``GUARDIA_OWNER_AWAY_DAYS``,
- has not logged in for ``GUARDIA_OWNER_IDLE_DAYS`` (never logged in: counted from joining),
- no longer holds the permission an approval step needs (``cmdb.deciders``, the same check
  the owner pickers and ``decide_step`` apply).

``run_check`` (the django-q2 schedule, ``governance/schedules.py``) sends each supervisor one
notification listing their systems (the institution's PM when the supervisor is the inactive
one) and records the run in the audit chain; the console page ``/console/owner-check/``
shows the same report for the systems its reader may see. Reasons are stored as codes (the audit payload) and
worded in Korean when shown.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db.models import QuerySet
from django.urls import NoReverseMatch, reverse
from django.utils import timezone
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy as _lazy

import audit
from audit.models import AuditEntry
from cmdb.deciders import deciders_for
from cmdb.models import System, SystemOwner

from .notify import Message, notify

INACTIVE, AWAY, IDLE, NO_PERMISSION = "inactive", "away", "idle", "no_permission"
ROLE_LABELS = {"owner": _lazy("담당자"), "deputy": _lazy("대리 승인자"), "supervisor": _lazy("상급자")}
# Audit actions whose payload {"changed": {"owner_is_active": [old, new]}} says when an owner went away.
PRESENCE_ACTIONS = ("owner.presence", "cmdb.owner_change", "cmdb.owner_create")


def away_days() -> int:
    return int(getattr(settings, "OWNER_AWAY_DAYS", 14) or 0)


def idle_days() -> int:
    return int(getattr(settings, "OWNER_IDLE_DAYS", 90) or 0)


@dataclass
class Finding:
    """One person on one system's ladder who cannot be relied on, and why (Korean text)."""

    role: str
    username: str
    reasons: list[dict[str, Any]]

    @property
    def role_label(self) -> str:
        return str(ROLE_LABELS[self.role])

    @property
    def reason_texts(self) -> list[str]:
        return [reason_text(reason) for reason in self.reasons]


@dataclass
class SystemReport:
    ownership: SystemOwner
    findings: list[Finding] = field(default_factory=list)

    @property
    def system(self) -> System:
        return self.ownership.system

    def as_dict(self) -> dict[str, Any]:
        return {
            "system": self.system.code,
            "findings": [{"role": f.role, "user": f.username, "reasons": f.reasons} for f in self.findings],
        }


def _days(delta: timedelta) -> int:
    return max(delta.days, 0)


def away_since(ownerships: list[SystemOwner]) -> dict[int, datetime]:
    """When each away owner went away: the latest audited change of ``owner_is_active`` to
    off; the row's last change when the chain has none (an upper bound, so never overstated)."""
    away = {o.system.code: o for o in ownerships if not o.owner_is_active}
    found: dict[int, datetime] = {}
    entries = AuditEntry.objects.filter(action__in=PRESENCE_ACTIONS, target__in=list(away)).order_by("-seq")
    for entry in entries.only("target", "payload", "created_at").iterator():
        ownership = away[entry.target]
        if ownership.pk in found:
            continue
        change = (entry.payload or {}).get("changed", {})
        if isinstance(change, dict) and list(change.get("owner_is_active") or [])[-1:] == [False]:
            found[ownership.pk] = entry.created_at
    for ownership in away.values():
        found.setdefault(ownership.pk, ownership.updated_at)
    return found


def reason_text(reason: dict[str, Any]) -> str:
    code, values = reason["code"], {"days": reason.get("days"), "limit": reason.get("limit")}
    if code == AWAY:
        return _("부재 %(days)s일째 (기준 %(limit)s일)") % values
    if code == IDLE and reason.get("never"):
        return _("가입 후 %(days)s일 동안 로그인 없음 (기준 %(limit)s일)") % values
    if code == IDLE:
        return _("마지막 로그인 %(days)s일 전 (기준 %(limit)s일)") % values
    if code == INACTIVE:
        return _("비활성 계정")
    return _("승인 권한 없음")


def _reasons(user, deciders: set[int], now: datetime) -> list[dict[str, Any]]:
    if not user.is_active:
        return [{"code": INACTIVE}]
    reasons: list[dict[str, Any]] = []
    idle = idle_days()
    seen = user.last_login or user.date_joined
    if idle and seen and now - seen > timedelta(days=idle):
        reasons.append({"code": IDLE, "days": _days(now - seen), "limit": idle, "never": user.last_login is None})
    if user.pk not in deciders:
        reasons.append({"code": NO_PERMISSION})
    return reasons


def find_problems(systems: QuerySet[System] | None = None, *, now: datetime | None = None) -> list[SystemReport]:
    """Systems (of `systems`, or all) whose owner, deputy or supervisor cannot be relied on."""
    now = now or timezone.now()
    rows = SystemOwner.objects.select_related("system__institution__pm", "owner", "deputy", "supervisor")
    if systems is not None:
        rows = rows.filter(system__in=systems)
    ownerships = list(rows.order_by("system__institution__code", "system__code"))
    # Everyone named on a system is in that system's institution scope, so the permission is what decides.
    deciders = set(deciders_for(None).values_list("pk", flat=True))
    since = away_since(ownerships)
    limit = away_days()
    reports = []
    for ownership in ownerships:
        report = SystemReport(ownership)
        for role in ("owner", "deputy", "supervisor"):
            user = getattr(ownership, role)
            if user is None:
                continue
            reasons = _reasons(user, deciders, now)
            if role == "owner" and user.is_active and not ownership.owner_is_active:
                away_for = now - since[ownership.pk]
                if limit and away_for > timedelta(days=limit):
                    reasons.insert(0, {"code": AWAY, "days": _days(away_for), "limit": limit})
            if reasons:
                report.findings.append(Finding(role, user.get_username(), reasons))
        if report.findings:
            reports.append(report)
    return reports


def recipient(ownership: SystemOwner):
    """Who is told: the supervisor, or the institution's PM when the supervisor cannot act."""
    supervisor = ownership.supervisor
    if supervisor.is_active:
        return supervisor
    pm = ownership.system.institution.pm
    return pm if pm is not None and pm.is_active else None


def message_text(reports: list[SystemReport]) -> str:
    lines = [_("담당자 지정 점검: 확인이 필요한 시스템 %(count)s개") % {"count": len(reports)}]
    for report in reports:
        for finding in report.findings:
            lines.append(
                f"- {report.system.code} ({report.system.name}) {finding.role_label} {finding.username}: "
                + ", ".join(finding.reason_texts)
            )
    lines.append(_("담당자 표(TB_SYSTEM_OWNER)를 고치거나 담당자에게 부재 해제를 요청하세요."))
    return "\n".join(lines)


def report_link() -> str:
    """The console page with the same report ("" on a deployment without the console's URLs)."""
    try:
        return reverse("console:owner_check")
    except NoReverseMatch:
        return ""


def run_check(now: datetime | None = None) -> dict[str, Any]:
    """The scheduled run: notify each recipient with their list, audit per institution and in total."""
    reports = find_problems(now=now)
    by_recipient: dict[Any, list[SystemReport]] = defaultdict(list)
    unreached: list[str] = []
    for report in reports:
        person = recipient(report.ownership)
        if person is None:
            unreached.append(report.system.code)
        else:
            by_recipient[person].append(report)
    link = report_link()
    for person, theirs in by_recipient.items():
        notify(person, Message(message_text(theirs), kind="warning", link=link))
    by_institution: dict[str, list[SystemReport]] = defaultdict(list)
    for report in reports:
        by_institution[report.system.institution.code].append(report)
    for code, theirs in by_institution.items():
        audit.record(
            None,
            "owner_check.findings",
            target=",".join(r.system.code for r in theirs),
            payload={"institution": code, "systems": [r.as_dict() for r in theirs]},
        )
    summary = {
        "systems": len(reports),
        "notified": sorted(person.get_username() for person in by_recipient),
        "unreached": unreached,
        "away_days": away_days(),
        "idle_days": idle_days(),
    }
    audit.record(None, "owner_check.run", result_code="ok" if not reports else "found", payload=summary)
    return summary
