"""Single-row selects compiled to SQL once (the hot paths of a decision: see CompiledSelect)."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from django.db import connections, transaction
from django.db.models import Field, Model, QuerySet, signals
from django.db.models.query import get_related_populators

# PostgreSQL: bound on the server and prepared (planning the step's lock, a join of a dozen tables,
# cost ~3 ms of the database's CPU a decision, running it ~0.4 ms).
from audit.services import bind_on_server


class CompiledSelect:
    """A SELECT of one row whose shape never changes, compiled to SQL once per database
    vendor and run again with other values: Django builds and compiles a queryset on every
    call, and for a lock with a deep select_related that costs more than running it.

    ``build(**values)`` makes the queryset; it is built once with sentinel values (integers;
    strings for the names listed in ``text``), each of which must appear among the compiled
    SQL's parameters (once or more), and each call puts its own values, typed the same way, in
    their places. The row becomes model instances (with the related objects of
    select_related) exactly as Django's own iterator builds them."""

    _SENTINEL = -7_340_000_000_000
    _ONE_ROW = True

    def __init__(self, build: Callable[..., QuerySet], *names: str, text: tuple[str, ...] = ()):
        self.build, self.names, self.text = build, names + text, text
        self._compiled: dict[str, tuple] = {}

    def _mark(self, index: int, name: str) -> int | str:
        return f"\x00compiled {name}\x00" if name in self.text else self._SENTINEL - index

    def _compile(self, alias: str) -> tuple:
        marks = {name: self._mark(i, name) for i, name in enumerate(self.names)}
        queryset = self.build(**marks)
        query = (queryset[:1] if self._ONE_ROW else queryset).query
        compiler = query.get_compiler(alias)
        sql, params = compiler.as_sql()
        slots = [(i, name) for i, value in enumerate(params) for name, mark in marks.items() if value == mark]
        if {name for _, name in slots} != set(self.names):
            raise ValueError(f"CompiledSelect: each of {self.names} must be a parameter of the query")
        # The row's converters (dates, JSON...) depend on the fields and the vendor only.
        converters = compiler.get_converters([column[0] for column in compiler.select])
        compiled = (query, sql, list(params), slots, compiler.select, compiler.klass_info, compiler, converters)
        self._compiled[connections[alias].vendor] = compiled
        return compiled

    def _rows(self, alias: str, values: dict, fetch: Callable) -> tuple[list, tuple]:
        """The compiled SQL run with ``values``; ``fetch(cursor)`` reads its rows (converted)."""
        db = connections[alias]
        compiled = self._compiled.get(db.vendor) or self._compile(alias)
        query, sql, params, slots, _select, _klass_info, compiler, converters = compiled
        if query.select_for_update and not db.in_atomic_block:
            raise transaction.TransactionManagementError("select_for_update cannot be used outside of a transaction.")
        params = list(params)
        for index, name in slots:
            params[index] = str(values[name]) if name in self.text else int(values[name])
        with db.cursor() as cursor:
            if db.vendor == "postgresql":
                bind_on_server(cursor)
            cursor.execute(sql, params)
            rows = fetch(cursor)
        if converters and rows:
            rows = list(compiler.apply_converters(rows, converters))
        return rows, compiled

    def first(self, alias: str = "default", **values: int | str):
        rows, compiled = self._rows(alias, values, lambda cursor: cursor.fetchmany(1))
        if not rows:
            return None
        row, select, klass_info = rows[0], compiled[4], compiled[5]
        fields = klass_info["select_fields"]
        start, end = fields[0], fields[-1] + 1
        names = [column[0].target.attname for column in select[start:end]]
        obj = klass_info["model"].from_db(alias, names, row[start:end])
        for populator in get_related_populators(klass_info, select, alias):  # type: ignore[call-arg]  # stubs: a later Django
            populator.populate(row, obj)
        return obj


class CompiledValues(CompiledSelect):
    """The same for a ``values_list()`` query of any number of rows: ``rows(**values)`` gives
    its tuples as Django would."""

    _ONE_ROW = False

    def rows(self, alias: str = "default", **values: int | str) -> list[tuple]:
        found, _compiled = self._rows(alias, values, lambda cursor: cursor.fetchall())
        return [tuple(row) for row in found]


_UPDATES: dict[tuple, str] = {}


def _has_save_receivers(obj: Model) -> bool:
    """Receivers of the model's save signals, which only Django's save sends."""
    return signals.pre_save.has_listeners(type(obj)) or signals.post_save.has_listeners(type(obj))


def _concrete(field) -> Field:
    if not isinstance(field, Field) or field.column is None:
        raise ValueError(f"update_row: {field} is not a column of the row")
    return field


def update_row(obj: Model, names: Iterable[str], where: dict[str, Any] | None = None, alias: str = "default") -> int:
    """Write the fields ``names`` of the saved row ``obj`` as ``obj.save(update_fields=names)``
    does (each field's ``pre_save``, so ``auto_now`` time stamps move, then its database
    preparation), with the UPDATE's SQL built once per model, fields and database vendor instead
    of by Django's compiler on every save (about as long as running it). ``where``: more
    column values the row must still have, e.g. the state a transition started from, as
    django-fsm's ConcurrentTransitionMixin checks. A model with save receivers goes through
    Django's save, so they still run. Returns the rows written: 0 when the row is gone or no
    longer matches ``where``."""
    db = connections[alias]
    meta = obj._meta
    names, where = sorted(names), where or {}
    if _has_save_receivers(obj):
        if not type(obj)._base_manager.using(alias).filter(pk=obj.pk, **where).exists():
            return 0
        obj.save(using=alias, update_fields=names)
        return 1
    fields = [_concrete(meta.get_field(name)) for name in names]
    conditions = [_concrete(meta.pk), *(_concrete(meta.get_field(name)) for name in where)]
    key = (meta.label, tuple(names), tuple(where), db.vendor)
    sql = _UPDATES.get(key)
    if sql is None:
        if any(hasattr(field, "get_placeholder") for field in fields):  # an expression in the SET: Django's way
            raise ValueError(f"update_row: {names} need Django's compiler")
        quote = db.ops.quote_name
        assignments = ", ".join(f"{quote(str(field.column))} = %s" for field in fields)
        matches = " AND ".join(f"{quote(str(field.column))} = %s" for field in conditions)
        sql = _UPDATES[key] = f"UPDATE {quote(meta.db_table)} SET {assignments} WHERE {matches}"
    params = [field.get_db_prep_save(field.pre_save(obj, False), connection=db) for field in fields]
    values = [obj.pk, *where.values()]
    params += [field.get_db_prep_value(value, connection=db) for field, value in zip(conditions, values, strict=True)]
    with db.cursor() as cursor:
        if db.vendor == "postgresql":
            bind_on_server(cursor)
        cursor.execute(sql, params)
        return cursor.rowcount


_INSERTS: dict[tuple, str] = {}


def insert_row(obj: Model, alias: str = "default") -> None:
    """Insert the new row ``obj`` as ``obj.save()`` does (each field's ``pre_save`` and database
    preparation, the generated primary key read back onto ``obj``), with the INSERT built once
    per model and database vendor. Where the database cannot return the new key from the INSERT,
    or the model has save receivers, Django's save does it."""
    db = connections[alias]
    meta = obj._meta
    if not db.features.can_return_columns_from_insert or obj.pk is not None or _has_save_receivers(obj):
        obj.save(using=alias)
        return
    fields = [field for field in meta.concrete_fields if not field.primary_key]
    key = (meta.label, db.vendor)
    sql = _INSERTS.get(key)
    if sql is None:
        if any(hasattr(field, "get_placeholder") for field in fields):
            raise ValueError(f"insert_row: {meta.label} needs Django's compiler")
        quote = db.ops.quote_name
        columns = ", ".join(quote(str(field.column)) for field in fields)
        values = ", ".join(["%s"] * len(fields))
        returning = quote(str(_concrete(meta.pk).column))
        sql = _INSERTS[key] = f"INSERT INTO {quote(meta.db_table)} ({columns}) VALUES ({values}) RETURNING {returning}"
    params = [field.get_db_prep_save(field.pre_save(obj, True), connection=db) for field in fields]
    with db.cursor() as cursor:
        if db.vendor == "postgresql":
            bind_on_server(cursor)
        cursor.execute(sql, params)
        obj.pk = cursor.fetchone()[0]
    obj._state.adding, obj._state.db = False, alias
