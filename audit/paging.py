"""Keyset pages for the long lists people read newest first (the audit console, task search).

A page is found by where the previous one ended (``before``) or the next one began
(``after``), not by an OFFSET: an offset reads and throws away every row before the page,
so page 1,000 of a million entries cost a thousand pages. Here every page is one range
read off an index in the list's order, and no count of the whole list is taken.

The position is the sort key of a row, written as integers separated by dots (a datetime
as microseconds since 1970 UTC): it is typed and bounded where it enters, and a value that
is not such a key is refused with ``BadCursor`` naming the parameter.
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass, field
from typing import Any

from django.db import models
from django.db.models import Q, QuerySet
from django.utils.translation import gettext as _

EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
_POSITION = re.compile(r"^\d{1,18}(\.\d{1,18})?$")
MICROSECOND = dt.timedelta(microseconds=1)


class BadCursor(ValueError):
    def __init__(self, param: str):
        super().__init__(f"{param}: not a page position")
        self.param = param

    def message(self) -> str:
        """What the page says (the first page is shown instead)."""
        return _("%(param)s: 페이지 위치를 읽을 수 없어 첫 페이지를 보여 줍니다.") % {"param": self.param}


@dataclass
class KeysetPage:
    object_list: list[Any] = field(default_factory=list)
    older: str = ""  # position for the next (older) page; "" at the end of the list
    newer: str = ""  # position for the previous (newer) page; "" on the first page

    @property
    def has_other_pages(self) -> bool:
        return bool(self.older or self.newer)

    def __iter__(self):
        return iter(self.object_list)

    def __len__(self) -> int:
        return len(self.object_list)


def _is_time(qs: QuerySet, name: str) -> bool:
    return isinstance(qs.model._meta.get_field("id" if name == "pk" else name), models.DateTimeField)


def _position(row: Any, fields: tuple[str, ...]) -> str:
    parts = []
    for name in fields:
        value = getattr(row, name)
        parts.append(str((value - EPOCH) // MICROSECOND if isinstance(value, dt.datetime) else int(value)))
    return ".".join(parts)


def _parse(qs: QuerySet, fields: tuple[str, ...], text: str, param: str) -> list[Any]:
    parts = text.split(".")
    if not _POSITION.match(text) or len(parts) != len(fields):
        raise BadCursor(param)
    return [EPOCH + int(p) * MICROSECOND if _is_time(qs, f) else int(p) for f, p in zip(fields, parts, strict=True)]


def _beyond(fields: tuple[str, ...], values: list[Any], op: str) -> Q:
    """Rows past the position in one direction: (a, b) < (x, y) as a <= x AND (a < x OR b < y),
    so the database reads one index range on the leading column."""
    if len(fields) == 1:
        return Q(**{f"{fields[0]}__{op}": values[0]})
    (first, second), (x, y) = fields, values
    return Q(**{f"{first}__{op}e": x}) & (Q(**{f"{first}__{op}": x}) | Q(**{f"{second}__{op}": y}))


def keyset_page(
    qs: QuerySet,
    fields: tuple[str, ...],
    *,
    before: str = "",
    after: str = "",
    size: int = 50,
    ascending: bool = False,
) -> KeysetPage:
    """One page of ``qs`` ordered by ``fields`` (one or two, the last unique), newest
    (largest) first, or smallest first with ``ascending`` (e.g. the nearest deadline).
    ``before`` is the position the next page starts beyond, ``after`` the one the previous
    page ends before (the names read as time in a newest-first list)."""
    onward, back = ("gt", "lt") if ascending else ("lt", "gt")
    in_order = [name if ascending else f"-{name}" for name in fields]
    reversed_order = [f"-{name}" if ascending else name for name in fields]
    if after:
        values = _parse(qs, fields, after, "after")
        rows = list(qs.filter(_beyond(fields, values, back)).order_by(*reversed_order)[: size + 1])
        more_newer = len(rows) > size
        rows = rows[:size][::-1]
        if not rows:  # nothing before it any more: the first page
            return keyset_page(qs, fields, size=size, ascending=ascending)
        return KeysetPage(
            rows, older=_position(rows[-1], fields), newer=_position(rows[0], fields) if more_newer else ""
        )
    if before:
        qs = qs.filter(_beyond(fields, _parse(qs, fields, before, "before"), onward))
    rows = list(qs.order_by(*in_order)[: size + 1])
    more_older = len(rows) > size
    rows = rows[:size]
    return KeysetPage(
        rows,
        older=_position(rows[-1], fields) if more_older else "",
        newer=_position(rows[0], fields) if before and rows else "",
    )
