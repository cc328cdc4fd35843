"""Statistics read well with little data: daily points for short ranges, bars instead of a
one-point line, lead times with their unit, and the numbers as a table under each chart."""

from __future__ import annotations

import datetime as dt
import json
import re

import pytest
from django.urls import reverse
from django.utils import timezone

from governance import reports
from governance.models import OpsTask
from tests import factories

pytestmark = pytest.mark.django_db

KST = dt.timezone(dt.timedelta(hours=9))


@pytest.fixture
def file_task(world, django_capture_on_commit_callbacks):
    def _file(created: dt.datetime, approved_after: dt.timedelta | None = None) -> OpsTask:
        with django_capture_on_commit_callbacks(execute=False):
            task = factories.file_task(world, title="메모리 점검", targets=world.servers[:1])
        OpsTask.objects.filter(pk=task.pk).update(
            created_at=created, approved_at=created + approved_after if approved_after else None
        )
        return task

    return _file


def per_period(world) -> tuple[str, list[tuple[str, int]]]:
    """The PM's statistics counted per period: the granularity and (label, count) a period."""
    stats = reports.statistics(world.pm)
    return stats["granularity"], [(r["label"], r["n"]) for r in stats["per_period"]]


def test_a_short_range_is_counted_per_day_with_empty_days_as_zero(world, file_task):
    file_task(dt.datetime(2026, 3, 1, 23, 30, tzinfo=KST))  # 14:30 UTC: still 1 March in Seoul
    file_task(dt.datetime(2026, 3, 4, 0, 10, tzinfo=KST))  # 3 March in UTC, 4 March in Seoul
    file_task(dt.datetime(2026, 3, 4, 9, 0, tzinfo=KST))
    assert per_period(world) == (
        "day",
        [("2026-03-01", 1), ("2026-03-02", 0), ("2026-03-03", 0), ("2026-03-04", 2)],
    )
    charts = reports.statistics_charts(reports.statistics(world.pm))
    assert charts["period"]["type"] == "line" and charts["period_title"] == "일별 요청"


def test_a_long_range_is_counted_per_month(world, file_task):
    file_task(dt.datetime(2026, 1, 15, 12, 0, tzinfo=KST))
    file_task(dt.datetime(2026, 4, 2, 12, 0, tzinfo=KST))
    assert per_period(world) == ("month", [("2026-01", 1), ("2026-02", 0), ("2026-03", 0), ("2026-04", 1)])


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


def test_the_time_range_counts_whole_kst_days(client, world, file_task):
    """A chosen range counts requests filed on those KST days, both included: a request at
    23:30 KST on the last day is in (it is the previous day in UTC); one at 00:10 KST the day
    after is out; the page says which period it shows."""
    file_task(dt.datetime(2026, 2, 28, 23, 59, tzinfo=KST))  # the day before: out
    file_task(dt.datetime(2026, 3, 1, 0, 0, tzinfo=KST), dt.timedelta(minutes=20))
    file_task(dt.datetime(2026, 3, 7, 23, 30, tzinfo=KST))
    file_task(dt.datetime(2026, 3, 8, 0, 10, tzinfo=KST))  # the day after: out
    stats = reports.statistics(world.pm, dt.date(2026, 3, 1), dt.date(2026, 3, 7))
    assert stats["total"] == 2 and stats["lead_time_samples"] == 1 and stats["lead_time_p50"] == 20.0
    assert [r["n"] for r in stats["per_period"]] == [1, 0, 0, 0, 0, 0, 1] and stats["granularity"] == "day"
    client.force_login(world.pm)
    page = client.get(reverse("console:statistics"), {"range": "custom", "since": "2026-03-01", "until": "2026-03-07"})
    assert page.status_code == 200 and page.context["stats"]["total"] == 2
    assert "기간: 2026-03-01 ~ 2026-03-07 (KST, 접수일 기준)" in page.content.decode()
    recent = client.get(reverse("console:statistics"), {"range": "7d"}).context["stats"]
    assert recent["total"] == 0 and recent["until"] == timezone.localdate()
    assert len(recent["per_period"]) == 7 and all(r["n"] == 0 for r in recent["per_period"])


def test_a_reversed_range_is_refused_naming_the_field_and_keeping_the_input(client, world, file_task):
    file_task(dt.datetime(2026, 3, 2, 9, 0, tzinfo=KST))
    client.force_login(world.pm)
    response = client.get(
        reverse("console:statistics"), {"range": "custom", "since": "2026-03-09", "until": "2026-03-01"}
    )
    page = response.content.decode()
    assert response.status_code == 400 and "종료일 (KST): 종료일은 시작일과 같거나 뒤여야 합니다." in page
    assert 'value="2026-03-09"' in page and 'value="2026-03-01"' in page  # what was typed is still there
    bad = client.get(reverse("console:statistics"), {"since": "3월 1일"})
    assert bad.status_code == 400 and "시작일 (KST):" in bad.content.decode()
    assert OpsTask.objects.count() == 1


def test_statistics_are_computed_by_the_database_not_per_row_in_python(world, file_task):
    """On SQLite Django's Trunc functions and datetime subtraction call Python functions
    once per row; the statistics use SQLite's own date()/julianday() instead."""
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    for day in (1, 2, 20):
        file_task(dt.datetime(2026, 3, day, 9, 0, tzinfo=KST), dt.timedelta(minutes=day))
    file_task(dt.datetime(2026, 7, 1, 9, 0, tzinfo=KST))
    # Per month without a range (four months), per day with March alone.
    for since, total, periods in ((None, 4, [3, 0, 0, 0, 1]), (dt.date(2026, 3, 1), 3, [1, 1] + [0] * 17 + [1])):
        with CaptureQueriesContext(connection) as queries:
            stats = reports.statistics(world.pm, since, dt.date(2026, 3, 20) if since else None)
        sql = " ".join(q["sql"] for q in queries)
        assert (stats["total"], stats["lead_time_p50"]) == (total, 2.0)
        assert [r["n"] for r in stats["per_period"]] == periods
        if connection.vendor == "sqlite":
            assert "django_datetime" not in sql and "django_timestamp_diff" not in sql and "django_date" not in sql
