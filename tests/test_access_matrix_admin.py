"""The admin's rows of the access matrix (``CASES`` in tests/test_access_matrix.py, the one
generated table), in a module of their own: pytest-xdist's ``--dist loadfile`` (the fast lane)
runs them beside the other rows, each module with a world of its own built once."""

from __future__ import annotations

import pytest

from tests import test_access_matrix as matrix

world = matrix.world  # the module-scoped fixture: built once for this module, rolled back after


@pytest.mark.parametrize("pattern", matrix.ADMIN_PATTERNS)
def test_access_matrix(pattern, world, db):
    matrix.assert_cells(world, pattern)
