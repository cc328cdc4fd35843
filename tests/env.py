"""Pytest plugin loaded with -p (pyproject addopts) so it runs before pytest-django reads
the settings: the test-wide environment."""

from __future__ import annotations

import os
import tempfile

# Unit tests use the in-memory channel layer; tests that cross processes start a real
# Redis and switch the layer themselves (tests/live.py).
os.environ.setdefault("GUARDIA_CHANNEL_LAYER", "memory")
os.environ.setdefault("GUARDIA_DATA_DIR", tempfile.mkdtemp(prefix="guardia-test-"))
os.environ.setdefault("GUARDIA_LOGIN_THROTTLE", "true")
