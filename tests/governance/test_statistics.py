"""Statistics read well with little data: daily points for short ranges, bars instead of a
one-point line, lead times with their unit, and the numbers as a table under each chart."""

from __future__ import annotations

import datetime as dt
import json
import re

import pytest
from django.urls import reverse
from django.utils import timezone

from governance import reports, services
from governance.models import OpsTask

pytestmark = pytest.mark.django_db

KST = dt.timezone(dt.timedelta(hours=9))


@pytest.fixture
def file_task(world, django_capture_on_commit_callbacks):
    def _file(created: dt.datetime, approved_after: dt.timedelta | None = None) -> OpsTask:
        with django_capture_on_commit_callbacks(execute=False):
            task = services.submit_task(
                world.requester,
                system=world.system,
                sub_type="MEMORY_CHECK",
                title="메모리 점검",
                targets=world.servers[:1],
            )
        OpsTask.objects.filter(pk=task.pk).update(
            created_at=created, approved_at=created + approved_after if approved_after else None
        )
        return task

    return _file


def test_a_short_range_is_counted_per_day_with_empty_days_as_zero(world, file_task):
    file_task(dt.datetime(2026, 3, 1, 23, 30, tzinfo=KST))  # 14:30 UTC: still 1 March in Seoul
    file_task(dt.datetime(2026, 3, 4, 0, 10, tzinfo=KST))  # 3 March in UTC, 4 March in Seoul
    file_task(dt.datetime(2026, 3, 4, 9, 0, tzinfo=KST))
    stats = reports.statistics(world.pm)
    assert stats["granularity"] == "day"
    assert [(r["label"], r["n"]) for r in stats["per_period"]] == [
        ("2026-03-01", 1),
        ("2026-03-02", 0),
        ("2026-03-03", 0),
        ("2026-03-04", 2),
    ]
    charts = reports.statistics_charts(stats)
    assert charts["period"]["type"] == "line" and charts["period_title"] == "일별 요청"


def test_a_long_range_is_counted_per_month(world, file_task):
    file_task(dt.datetime(2026, 1, 15, 12, 0, tzinfo=KST))
    file_task(dt.datetime(2026, 4, 2, 12, 0, tzinfo=KST))
    stats = reports.statistics(world.pm)
    assert stats["granularity"] == "month"
    assert [(r["label"], r["n"]) for r in stats["per_period"]] == [
        ("2026-01", 1),
        ("2026-02", 0),
        ("2026-03", 0),
        ("2026-04", 1),
    ]


def test_one_point_is_a_bar_not_a_line(world, file_task):
    file_task(timezone.now())
    charts = reports.statistics_charts(reports.statistics(world.pm))
    assert charts["period"]["type"] == "bar" and charts["period"]["values"] == [1]
    assert charts["category"]["type"] == "bar"  # one slice of a doughnut says nothing


def test_lead_time_unit_is_minutes_then_hours(world, file_task):
    start = dt.datetime(2026, 3, 2, 9, 0, tzinfo=KST)
    file_task(start, dt.timedelta(minutes=6))
    file_task(start, dt.timedelta(minutes=30))
    stats = reports.statistics(world.pm)
    assert stats["lead_time_unit"] == "minute" and (stats["lead_time_p50"], stats["lead_time_p90"]) == (6.0, 30.0)
    assert reports.statistics_charts(stats)["lead_label"] == "승인 소요 시간 (분)"
    file_task(start, dt.timedelta(hours=5))
    stats = reports.statistics(world.pm)
    assert stats["lead_time_unit"] == "hour" and stats["lead_time_p90"] == 5.0
    assert stats["lead_time_p50"] == 0.5  # 30 minutes, in hours
    assert reports.statistics_charts(stats)["lead_label"] == "승인 소요 시간 (시간)"


def test_page_shows_units_and_a_table_under_each_chart(client, world, file_task):
    file_task(dt.datetime(2026, 3, 2, 9, 0, tzinfo=KST), dt.timedelta(minutes=12))
    client.force_login(world.pm)
    page = client.get(reverse("console:statistics")).content.decode()
    for key in ("institution", "category", "period", "lead_time"):
        assert f'id="table-{key}"' in page
    assert "승인 소요 시간 (분)" in page and "12.0분" in page
    assert re.search(r"<td>2026-03-02</td><td class=\"n\">1</td>", page)
    data = json.loads(re.search(r'<script id="chart-data" type="application/json">(.*?)</script>', page, re.S).group(1))
    assert data["lead_unit"] == "분" and data["period"]["granularity"] == "day"
