"""Rows built once per test module instead of once per test.

``built_once`` creates them inside a transaction that is rolled back when the module is done.
Every test of such a module takes the ``db`` fixture (``pytest.mark.django_db``): its own
transaction is then a savepoint inside that one, rolled back after the test, so what one test
changes never reaches the next. Only for worlds the tests read or change through the database:
a test that changes the Python objects of the world itself needs a world of its own.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TypeVar

from django.db import transaction

T = TypeVar("T")


@contextmanager
def built_once(django_db_blocker, build: Callable[[], T]) -> Iterator[T]:
    """Yields ``build()``, made in a transaction that is rolled back on exit."""
    with django_db_blocker.unblock(), transaction.atomic():
        yield build()
        transaction.set_rollback(True)
