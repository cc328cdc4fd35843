"""Scheduled inspections: recurring read-only playbooks run as pre-approved
standard changes. No approval per run; every command is audited like any other; a crossed
threshold opens a ticket for the system's owner through governance.
"""

from __future__ import annotations

import datetime as dt
import logging

from django.db import transaction
from django.utils import timezone
from django.utils.translation import gettext

import audit
from governance import control

from . import gateways, playbooks, schedules
from .engine import Engine
from .models import InspectionKind, InspectionSchedule
from .rolling import RolloutStrategy

log = logging.getLogger(__name__)
SCHEDULE_NAME = "execution.run_inspections"


def ensure_schedule() -> None:
    """One django-q2 Schedule, every minute, that runs whatever inspection is due."""
    schedules.every_minute(SCHEDULE_NAME, "execution.tasks.run_inspections")


def run_due(now: dt.datetime | None = None) -> int:
    now = now or timezone.now()
    if not control.execution_allowed():
        log.info("global stop engaged: inspections skipped")
        return 0
    ran = 0
    # A site gateway runs its own institutions' inspections; the central workers the rest.
    due = InspectionSchedule.objects.filter(gateways.inspections_here(), enabled=True, next_run_at__lte=now)
    for schedule_id in due.values_list("pk", flat=True):
        with transaction.atomic():
            # Claim the run so two workers never run the same schedule twice.
            claimed = InspectionSchedule.objects.filter(pk=schedule_id, next_run_at__lte=now).update(
                next_run_at=now + dt.timedelta(minutes=1), last_run_at=now
            )
        if claimed:
            run_inspection(InspectionSchedule.objects.select_related("system__institution").get(pk=schedule_id))
            ran += 1
    return ran


def breaches(kind: str, thresholds: dict, findings: dict) -> dict:
    """Per server, what crossed the threshold (empty dict: all fine)."""
    crossed = {}
    for server_id, data in findings.items():
        if kind == InspectionKind.MEMORY_CHECK and data.get("used_percent", 0) > thresholds["max_used_percent"]:
            crossed[server_id] = gettext("메모리 %(used)s%% 사용 (한도 %(limit)s%%)") % {
                "used": data["used_percent"],
                "limit": thresholds["max_used_percent"],
            }
        elif kind == InspectionKind.DISK_CHECK and data.get("free_mb", 1 << 60) < thresholds["min_free_mb"]:
            crossed[server_id] = gettext("%(path)s 여유 공간 %(free)s MB (최소 %(min)s MB)") % {
                "path": data["path"],
                "free": data["free_mb"],
                "min": thresholds["min_free_mb"],
            }
        elif kind == InspectionKind.ERROR_COUNT and data.get("errors", 0) > thresholds["max_errors"]:
            crossed[server_id] = gettext("로그의 오류 줄 %(errors)s개 (한도 %(limit)s개)") % {
                "errors": data["errors"],
                "limit": thresholds["max_errors"],
            }
    return crossed


def run_inspection(schedule: InspectionSchedule):
    servers = list(schedule.target_servers())
    playbook = playbooks.build(schedule.kind, {})
    from .services import ArtifactStore, criteria_for

    engine = Engine(
        playbook=playbook,
        servers=servers,
        strategy=RolloutStrategy(canary_share=0, safety_gate=False),
        artifacts=ArtifactStore(),
        inspection=schedule,
        actor="inspection",
        stop_check=lambda: None if control.execution_allowed() else gettext("전체 정지"),
        criteria_by_system=criteria_for({schedule.system_id}),
    )
    result = engine.run()
    findings = result.execution.summary.get("findings", {})
    crossed = breaches(schedule.kind, schedule.thresholds, findings)
    failed = {r["server"]: r["message"] for r in result.package["servers"] if r["state"] != "SUCCEEDED"}
    now = timezone.now()
    schedule.last_result = {
        "outcome": result.outcome,
        "crossed": crossed,
        "unreachable": failed,
        "execution": result.execution.pk,
    }
    schedule.next_run_at = now + dt.timedelta(minutes=schedule.interval_minutes)
    schedule.save(update_fields=["last_result", "next_run_at"])
    audit.record(
        "inspection",
        "inspection.run",
        target=schedule.system.code,
        payload={
            "institution": schedule.system.institution.code,
            "schedule": schedule.name,
            "kind": schedule.kind,
            "servers": len(servers),
            "crossed": crossed,
            "execution": result.execution.pk,
        },
    )
    ticket = None
    if crossed or failed:
        failure = gettext("점검 실패: %(reason)s")
        problems = {**crossed, **{sid: failure % {"reason": msg} for sid, msg in failed.items()}}
        title = gettext("정기 점검 '%(name)s': 서버 %(count)d대 확인 필요") % {
            "name": schedule.name,
            "count": len(problems),
        }
        findings = {
            "schedule": schedule.name,
            "kind": schedule.kind,
            "thresholds": schedule.thresholds,
            "servers": problems,
            "execution": result.execution.pk,
        }
        try:
            ticket = control.open_inspection_ticket(
                schedule.system, [s for s in servers if s.server_id in problems], title, findings
            )
        except Exception as exc:  # no owner/PM to file it for: keep the finding on record, loudly
            log.exception("inspection %s crossed a threshold but no ticket could be opened", schedule.name)
            audit.record(
                "inspection",
                "inspection.ticket_failed",
                target=schedule.system.code,
                payload={"institution": schedule.system.institution.code, "error": str(exc)[:300], **findings},
            )
    return result, ticket
