"""Read models for the console and the API: timeline, dashboard tiles, statistics."""

from __future__ import annotations

import datetime as dt
from collections import Counter

from django.conf import settings
from django.db.models import Count, DurationField, ExpressionWrapper, F, Sum, Window
from django.db.models.functions import RowNumber
from django.utils import timezone, translation
from django.utils.translation import gettext as _

from audit.labels import action_label
from audit.models import AuditEntry

from . import rollup
from .labels import decision_label, reason_label, role_label, routing_label, status_label, timeline_kind_label
from .models import Category, Notification, OpsTask, StatisticsRollup, Status, sees_all_tasks
from .periods import LocalDay, LocalMonth, as_date, local_midnight, month_after
from .text import shorten

WAITING = [Status.RECEIVED, Status.PARSED, Status.PENDING_APPROVAL]
IN_PROGRESS = [Status.APPROVED, Status.EXECUTING, Status.PENDING_PM_VALIDATION]
DONE = [Status.COMPLETED]
FAILED = [
    Status.REJECTED,
    Status.CANCELLED,
    Status.ABORTED,
    Status.FAILED_ROLLED_BACK,
    Status.MANUAL_INTERVENTION_REQUIRED,
    Status.STATE_UNCERTAIN,
]
EXECUTION_FAILED = [Status.FAILED_ROLLED_BACK, Status.MANUAL_INTERVENTION_REQUIRED, Status.STATE_UNCERTAIN]

AUDIT_TEXT = {
    "task.submitted": "요청 접수",
    "task.transition": "상태 변경",
    "approval.assigned": "승인자 지정",
    "approval.escalated": "승인 상향(에스컬레이션)",
    "approval.decided": "승인 결정",
    "approval.repaged": "승인 재요청",
    "approval.expired": "승인 기한 만료",
    "killswitch.task": "작업 정지 요청",
    "validation.decided": "PM 검증",
}


def _audit_text(entry: AuditEntry) -> str:
    p = entry.payload or {}
    label = AUDIT_TEXT.get(entry.action) or action_label(entry.action)
    if entry.action == "task.transition":
        return f"{label}: {status_label(p.get('source', ''))} → {status_label(p.get('target', ''))}" + (
            f" ({reason_label(p['reason'])})" if p.get("reason") else ""
        )
    if entry.action in ("approval.assigned", "approval.escalated"):
        via = f" ← {p['escalated_from']}" if p.get("escalated_from") else ""
        who = p.get("assigned_to") or "없음"
        return (
            f"{label}: {p.get('step')}단계 {role_label(p.get('role', ''))} → {who}{via} "
            f"[{routing_label(p.get('routing', ''))}]"
        )
    if entry.action == "approval.decided":
        return (
            f"{label}: {p.get('step')}단계 {decision_label(p.get('decision', ''))} — {p.get('comments', '')}"
        ).rstrip(" —")
    if entry.action.startswith("execution.") and p.get("text"):
        return str(p["text"])  # written in Korean by the execution layer (a wait, a recovery)
    if entry.action.startswith("execution."):
        return f"{entry.target}: {p.get('step', entry.command[:80])} → {entry.result_code}"
    return label + (f": {reason_label(p['reason'])}" if p.get("reason") else "")


def audit_line(entry: AuditEntry) -> dict:
    """One timeline line from an audit entry: the task page and its live updates both use it."""
    return {
        "time": entry.created_at,
        "when": local_time(entry.created_at),
        "kind": entry.action,
        "kind_label": timeline_kind_label(entry.action),
        "actor": entry.actor,
        "text": _audit_text(entry),
        "data": entry.payload,
    }


def notification_line(note: Notification) -> dict:
    return {
        "time": note.created_at,
        "when": local_time(note.created_at),
        "kind": "notification",
        "kind_label": timeline_kind_label("notification"),
        "actor": "system",
        "text": f"알림 → {note.user}: {shorten(note.message, 120)}",
        "data": {"to": note.user.get_username()},
    }


def local_time(moment: dt.datetime) -> str:
    """The time as the server's zone (TIME_ZONE, Asia/Seoul by default) writes it, never the browser's."""
    return timezone.localtime(moment).strftime("%Y-%m-%d %H:%M:%S")


def line_payload(line: dict) -> dict:
    """A timeline line for a live event: the fields the page renders, already formatted."""
    return {
        "when": line["when"],
        "iso": timezone.localtime(line["time"]).isoformat(),
        "kind": line["kind"],
        "kind_label": str(line["kind_label"]),
        "actor": line["actor"],
        "text": line["text"],
    }


def live_line(source) -> dict:
    """The live event's line for an audit entry or a notification, in the site's language:
    one event reaches every viewer, whatever language the person who caused it browses in."""
    return live_lines([source])[0]


def live_lines(sources) -> list[dict]:
    """live_line for each of ``sources``, the site's language switched to once for them all (a
    rollout's recorder makes a line for every step it audits)."""
    with translation.override(settings.LANGUAGE_CODE):
        return [
            line_payload(notification_line(source) if isinstance(source, Notification) else audit_line(source))
            for source in sources
        ]


def task_timeline(task: OpsTask) -> list[dict]:
    """Transitions, approvals, escalations, commands (from the audit chain) and notifications."""
    items = [audit_line(e) for e in AuditEntry.objects.filter(task=task.task_id).order_by("seq")]
    items += [notification_line(n) for n in Notification.objects.filter(task=task).select_related("user")]
    return sorted(items, key=lambda item: item["time"])


def dashboard_counts(user) -> dict[str, int]:
    # order_by(): the model's default ordering would join the GROUP BY (a count per task).
    # visible_to is a filter by subqueries of ids, one row per task, so Count("pk") is exact.
    visible = OpsTask.objects.visible_to(user).order_by()
    counts = Counter(dict(visible.values_list("status").annotate(n=Count("pk"))))
    return {
        "waiting": sum(counts[s] for s in WAITING),
        "in_progress": sum(counts[s] for s in IN_PROGRESS),
        "done": sum(counts[s] for s in DONE),
        "failed": sum(counts[s] for s in FAILED),
    }


class LeadTime(ExpressionWrapper):
    """approved_at - created_at, as a duration, computed by the database.

    On SQLite Django subtracts datetimes with a Python function called once per row; here
    SQLite's own julianday() does it (rounded to the millisecond, in microseconds, the way
    Django reads a duration there). Other databases subtract natively."""

    def __init__(self) -> None:
        super().__init__(F("approved_at") - F("created_at"), output_field=DurationField())

    def as_sqlite(self, compiler, connection, **extra_context):
        approved, approved_params = compiler.compile(self.expression.lhs)
        created, created_params = compiler.compile(self.expression.rhs)
        sql = f"(CAST(ROUND((julianday({approved}) - julianday({created})) * 86400000) AS INTEGER) * 1000)"
        return sql, (*approved_params, *created_params)


def _lead_time_percentiles(approved, samples: int, shares: tuple[float, ...]) -> list[float | None]:
    """The lead times (minutes) at these shares of the approved tasks, read by the database
    in one ordered pass (a row number over the lead times, the rows at those ranks kept)
    rather than by loading every pair."""
    if not samples:
        return [None for _ in shares]
    ranks = [1 + min(samples - 1, max(0, round(share * (samples - 1)))) for share in shares]
    ranked = approved.annotate(lead=LeadTime(), rank=Window(RowNumber(), order_by=[LeadTime().asc(), F("pk").asc()]))
    found = dict(ranked.filter(rank__in=set(ranks)).values_list("rank", "lead"))
    return [found[rank] / dt.timedelta(minutes=1) for rank in ranks]


# Up to about two months of requests the trend is drawn per day; beyond that per month.
DAILY_UP_TO_DAYS = 62
# Lead times are shown in minutes until the slower (p90) one passes two hours.
HOURS_FROM_MINUTES = 120


def _span(tasks, since: dt.date | None, until: dt.date | None) -> tuple[dt.date, dt.date] | None:
    """The range's first and last day; an open end is the first or last request's day."""
    if since is not None and until is not None:
        return since, until
    # Two reads off the created_at index (one MIN and one MAX in one query scan the table).
    times = tasks.values_list("created_at", flat=True)
    oldest, newest = times.order_by("created_at").first(), times.order_by("-created_at").first()
    if oldest is None or newest is None:
        return None
    return since or timezone.localdate(oldest), until or timezone.localdate(newest)


def _added(*groups, key: str, value: str = "n") -> Counter:
    """Counts per key summed over several lists of rows (live tasks and rollup rows)."""
    total: Counter = Counter()
    for rows in groups:
        for row in rows:
            total[row[key]] += row[value] or 0
    return total


def _per_period(live, rolled, span: tuple[dt.date, dt.date] | None) -> dict:
    """Requests per day (short ranges) or per month, every period in the range listed,
    empty ones as 0, so a quiet week reads as quiet rather than as a line between points."""
    if span is None:
        return {"granularity": "day", "rows": []}
    first, last = span
    if (last - first).days <= DAILY_UP_TO_DAYS:
        rows = live.annotate(day=LocalDay("created_at")).values("day").annotate(n=Count("pk"))
        counts = {as_date(row["day"]): row["n"] for row in rows}
        days = [first + dt.timedelta(days=i) for i in range((last - first).days + 1)]
        return {"granularity": "day", "rows": [{"label": d.isoformat(), "n": counts.get(d, 0)} for d in days]}
    live_rows = live.annotate(month=LocalMonth("created_at")).values("month").annotate(n=Count("pk"))
    counts = _added(
        [{**row, "month": as_date(row["month"])} for row in live_rows],
        [{**row, "month": as_date(row["month"])} for row in rolled.values("month").annotate(n=Sum("tasks"))],
        key="month",
    )
    months, cursor = [], first.replace(day=1)
    while cursor <= last:
        months.append(cursor)
        cursor = month_after(cursor)
    return {"granularity": "month", "rows": [{"label": m.strftime("%Y-%m"), "n": counts.get(m, 0)} for m in months]}


def statistics(user, since: dt.date | None = None, until: dt.date | None = None) -> dict:
    """Every figure of the statistics page for the tasks the user sees, filed between the
    server-zone (KST) days ``since`` and ``until``, both included (open when None).

    For a person who sees every task, over a range drawn per month, the finished tasks of
    the months the rollup covers are read from its rows (governance/rollup.py) and every
    other task is counted live; each task is counted once either way."""
    # order_by(): every figure below is an aggregate, and the default ordering (created_at)
    # would join each GROUP BY, one group per task.
    tasks = OpsTask.objects.visible_to(user).order_by()
    if since:
        tasks = tasks.filter(created_at__gte=local_midnight(since))
    if until:
        tasks = tasks.filter(created_at__lt=local_midnight(until + dt.timedelta(days=1)))
    span = _span(tasks, since, until)
    monthly = span is not None and (span[1] - span[0]).days > DAILY_UP_TO_DAYS
    cover = rollup.coverage(since, until) if monthly and sees_all_tasks(user) else None
    live = tasks if cover is None else tasks.filter(cover.live)
    rolled = StatisticsRollup.objects.none() if cover is None else cover.rows
    institution = "system__institution__name"
    per_institution = _added(
        live.values(institution).annotate(n=Count("pk")),
        rolled.values(institution).annotate(n=Sum("tasks")),
        key=institution,
    )
    per_category = _added(
        live.values("category").annotate(n=Count("pk")),
        rolled.values("category").annotate(n=Sum("tasks")),
        key="category",
    )
    period = _per_period(live, rolled, span)
    # Per status (tasks, not steps); the single figures are sums of these rows.
    by_status = [
        *live.values("status").annotate(**rollup.task_figures()),
        *rolled.values("status").annotate(**rollup.row_figures()),
    ]
    figures = {name: sum(row[name] or 0 for row in by_status) for name in rollup.task_figures()}
    if cover is not None:  # the rows keep no step figures for tasks waiting for a decision
        waiting = tasks.filter(cover.waiting).aggregate(**rollup.step_figures())
        figures["with_steps"] += waiting["with_steps"]
        figures["escalated"] += waiting["escalated"]
    per_status = _added(by_status, key="status", value="tasks")
    samples, with_steps = figures["approved"], figures["with_steps"]
    succeeded = sum(per_status[s] for s in (Status.PENDING_PM_VALIDATION, Status.COMPLETED))
    failed = sum(per_status[s] for s in EXECUTION_FAILED)
    p50, p90 = _lead_time_percentiles(tasks.exclude(approved_at=None), samples, (0.5, 0.9))
    in_hours = p90 is not None and p90 >= HOURS_FROM_MINUTES
    scale = 60 if in_hours else 1
    return {
        "per_institution": [
            {"label": label, "n": n}
            for label, n in sorted(per_institution.items(), key=lambda item: (-item[1], item[0]))
        ],
        "per_category": [{"label": label, "n": n} for label, n in sorted(per_category.items())],
        "per_period": period["rows"],
        "granularity": period["granularity"],
        "per_month": period["rows"] if period["granularity"] == "month" else [],
        "lead_time_p50_min": p50,
        "lead_time_p90_min": p90,
        "lead_time_unit": "hour" if in_hours else "minute",
        "lead_time_p50": None if p50 is None else round(p50 / scale, 1),
        "lead_time_p90": None if p90 is None else round(p90 / scale, 1),
        "lead_time_samples": samples,
        "escalation_rate": figures["escalated"] / with_steps if with_steps else None,
        "execution_success_rate": succeeded / (succeeded + failed) if succeeded + failed else None,
        "total": figures["tasks"],
        "since": since,
        "until": until,
    }


def _series(labels: list[str], values: list, kind: str) -> dict:
    """One chart: its numbers (also shown as a table under it) and a chart type that
    reads with few points: fewer than three points in time are bars, not a line."""
    if kind == "line" and len(values) < 3:
        kind = "bar"
    if kind == "doughnut" and len(values) < 2:
        kind = "bar"
    return {"labels": labels, "values": values, "type": kind, "rows": list(zip(labels, values, strict=True))}


def statistics_charts(stats: dict) -> dict:
    """The statistics page's charts, with units and Korean labels, from statistics()."""
    categories = dict(Category.choices)
    unit = _("시간") if stats["lead_time_unit"] == "hour" else _("분")
    daily = stats["granularity"] == "day"
    return {
        "institution": _series(
            [r["label"] for r in stats["per_institution"]], [r["n"] for r in stats["per_institution"]], "bar"
        ),
        "category": _series(
            [str(categories.get(r["label"], r["label"])) for r in stats["per_category"]],
            [r["n"] for r in stats["per_category"]],
            "doughnut",
        ),
        "period": {
            **_series([r["label"] for r in stats["per_period"]], [r["n"] for r in stats["per_period"]], "line"),
            "granularity": stats["granularity"],
        },
        "lead_time": _series(
            [str(_("중앙값 (p50)")), str(_("90번째 백분위 (p90)"))],
            [stats["lead_time_p50"], stats["lead_time_p90"]],
            "bar",
        ),
        "series_label": str(_("요청 수")),
        "count_axis": str(_("요청 수 (건)")),
        "period_axis": str(_("날짜") if daily else _("월")),
        "period_title": str(_("일별 요청") if daily else _("월별 요청")),
        "lead_unit": str(unit),
        "lead_label": str(_("승인 소요 시간 (%(unit)s)") % {"unit": unit}),
    }
