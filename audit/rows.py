"""Rows for a bulk insert, built cheaply: the execution recorder's step rows, written by one thread
that every SSH worker's records wait on (audit imports no other app, so any app may use this)."""

from __future__ import annotations

from django.db import connection
from django.db.models import CharField, TextField

# Text columns, whose database value is the attribute itself when it is a str or None (their
# get_db_prep_save returns it unchanged on every backend): exact classes, so a subclass with its own
# conversion still goes through it, and so does any other value (an int for a text column).
_TEXT_COLUMNS = (CharField, TextField)
_TEXT_VALUES = (str, type(None))


def row_values(objs: list, fields: list, *, pre_save: bool = False) -> list[list]:
    """The rows of ``objs`` for an executemany over ``fields``, as get_db_prep_save makes them (after
    pre_save, for a new row, if asked), without its per-field calls where the value is already what
    it would return: a bulk insert's rows cost the one writing thread ~16 calls an object otherwise."""
    text = [type(f) in _TEXT_COLUMNS for f in fields]
    rows = []
    for obj in objs:
        row = []
        for f, is_text in zip(fields, text, strict=True):
            value = getattr(obj, f.attname)
            if not (is_text and type(value) in _TEXT_VALUES):
                value = f.get_db_prep_save(f.pre_save(obj, True) if pre_save else value, connection)
            row.append(value)
        rows.append(row)
    return rows
