"""Single-row selects compiled to SQL once (the hot paths of a decision: see CompiledSelect)."""

from __future__ import annotations

from collections.abc import Callable

from django.db import connections, transaction
from django.db.models import QuerySet
from django.db.models.query import get_related_populators


class CompiledSelect:
    """A SELECT of one row whose shape never changes, compiled to SQL once per database
    vendor and run again with other values: Django builds and compiles a queryset on every
    call, and for a lock with a deep select_related that costs more than running it.

    ``build(**values)`` makes the queryset; it is built once with sentinel integers, each of
    which must appear exactly once among the compiled SQL's parameters, and each call puts
    its own integers in their places. The row becomes model instances (with the related
    objects of select_related) exactly as Django's own iterator builds them."""

    _SENTINEL = -7_340_000_000_000

    def __init__(self, build: Callable[..., QuerySet], *names: str):
        self.build, self.names = build, names
        self._compiled: dict[str, tuple] = {}

    def _compile(self, alias: str) -> tuple:
        marks = {name: self._SENTINEL - i for i, name in enumerate(self.names)}
        query = self.build(**marks)[:1].query
        compiler = query.get_compiler(alias)
        sql, params = compiler.as_sql()
        slots = [(i, name) for i, value in enumerate(params) for name, mark in marks.items() if value == mark]
        if sorted(name for _, name in slots) != sorted(self.names):
            raise ValueError(f"CompiledSelect: each of {self.names} must be one parameter of the query")
        # The row's converters (dates, JSON...) depend on the fields and the vendor only.
        converters = compiler.get_converters([column[0] for column in compiler.select])
        compiled = (query, sql, list(params), slots, compiler.select, compiler.klass_info, compiler, converters)
        self._compiled[connections[alias].vendor] = compiled
        return compiled

    def first(self, alias: str = "default", **values: int):
        db = connections[alias]
        compiled = self._compiled.get(db.vendor) or self._compile(alias)
        query, sql, params, slots, select, klass_info, compiler, converters = compiled
        if query.select_for_update and not db.in_atomic_block:
            raise transaction.TransactionManagementError("select_for_update cannot be used outside of a transaction.")
        params = list(params)
        for index, name in slots:
            params[index] = int(values[name])
        with db.cursor() as cursor:
            cursor.execute(sql, params)
            row = cursor.fetchone()
        if row is None:
            return None
        if converters:
            row = next(iter(compiler.apply_converters([row], converters)))
        fields = klass_info["select_fields"]
        start, end = fields[0], fields[-1] + 1
        names = [column[0].target.attname for column in select[start:end]]
        obj = klass_info["model"].from_db(alias, names, row[start:end])
        for populator in get_related_populators(klass_info, select, alias):  # type: ignore[call-arg]  # stubs: a later Django
            populator.populate(row, obj)
        return obj
