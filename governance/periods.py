"""Server-zone days and months computed by the database (statistics and their rollup)."""

from __future__ import annotations

import datetime as dt

from django.db.models import DateField
from django.db.models.functions import TruncDate, TruncMonth
from django.utils import timezone


def fixed_offset() -> dt.timedelta | None:
    """The server zone's UTC offset if it keeps one all year (Asia/Seoul does), else None."""
    zone = timezone.get_current_timezone()
    year = timezone.now().year
    winter, summer = (dt.datetime(year, month, 1, tzinfo=zone).utcoffset() for month in (1, 7))
    return winter if winter == summer else None


class _LocalTrunc:
    """Django's Trunc functions, which PostgreSQL and SQL Server compute in SQL; on SQLite
    they call a Python function for every row, so there SQLite's own date() shifts the
    stored UTC text by the zone's offset (a zone with one offset all year, such as KST;
    other zones keep Django's function)."""

    sqlite_modifiers: tuple[str, ...] = ()

    def as_sqlite(self, compiler, connection, **extra_context):
        offset = fixed_offset()
        if offset is None:
            return super().as_sqlite(compiler, connection, **extra_context)  # type: ignore[misc]
        sql, params = compiler.compile(self.lhs)  # type: ignore[attr-defined]
        modifiers = ", ".join(["%s"] * (1 + len(self.sqlite_modifiers)))
        return f"date({sql}, {modifiers})", (*params, f"{int(offset.total_seconds()):+d} seconds",
                                               *self.sqlite_modifiers)  # fmt: skip


class LocalDay(_LocalTrunc, TruncDate):
    """The server-zone day of a datetime."""


class LocalMonth(_LocalTrunc, TruncMonth):
    """The first day of the server-zone month of a datetime (a date)."""

    sqlite_modifiers = ("start of month",)

    def __init__(self, expression, **extra) -> None:
        super().__init__(expression, output_field=DateField(), **extra)


def month_after(day: dt.date) -> dt.date:
    return dt.date(day.year + day.month // 12, day.month % 12 + 1, 1)


def as_date(value) -> dt.date:
    return timezone.localtime(value).date() if isinstance(value, dt.datetime) else value


def local_midnight(day: dt.date) -> dt.datetime:
    return timezone.make_aware(dt.datetime.combine(day, dt.time.min))
