"""What the models of every app declare alike: a table's name with its Korean label, and a
reference that may stay empty.

It lives in ``audit`` because ``audit`` imports no other app, so every app may import it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, TypeVar, overload

from django.conf import settings
from django.db import models

if TYPE_CHECKING:
    from django.contrib.auth.models import User
    from django.utils.functional import _StrPromise

    Label = str | _StrPromise
_M = TypeVar("_M", bound=models.Model)


def table_meta(db_table: str | None, label: Label, *, plural: Label | None = None, **options: Any) -> Any:
    """A model's ``Meta``: its table (``None``: Django's own name), its label (the plural label
    the same unless given) and any further ``Meta`` options, e.g.
    ``Meta = table_meta("TB_GATEWAY", _("게이트웨이 (TB_GATEWAY)"), ordering=["name"])``.
    (Typed ``Any``, as a ``class Meta`` is: a model may replace its abstract base's.)"""
    attrs: dict[str, Any] = {"verbose_name": label, "verbose_name_plural": label if plural is None else plural}
    if db_table is not None:
        attrs["db_table"] = db_table
    attrs.update(options)
    return type("Meta", (), attrs)


@overload
def optional_ref(
    to: type[_M], label: Label, *, related_name: str, on_delete: Any = models.PROTECT, help_text: Label = ""
) -> models.ForeignKey[_M | None, _M | None]: ...
@overload
def optional_ref(
    to: str, label: Label, *, related_name: str, on_delete: Any = models.PROTECT, help_text: Label = ""
) -> models.ForeignKey[Any, Any]: ...
def optional_ref(
    to: Any, label: Label, *, related_name: str, on_delete: Any = models.PROTECT, help_text: Label = ""
) -> models.ForeignKey[Any, Any]:
    """A reference that may stay empty (``null`` in the table, ``blank`` in forms), protected
    from deletion unless said otherwise; its help text, if any, says what an empty one means."""
    return models.ForeignKey(
        to, on_delete, verbose_name=label, null=True, blank=True, related_name=related_name, help_text=help_text
    )


def user_ref(
    label: Label, *, on_delete: Any = models.PROTECT, related_name: str = "+"
) -> models.ForeignKey[User | None, User | None]:
    """An account that may stay empty: an approver to be, a deputy, whoever decided."""
    return optional_ref(settings.AUTH_USER_MODEL, label, on_delete=on_delete, related_name=related_name)
