"""Pytest plugin loaded with -p (pyproject addopts) so it runs before pytest-django reads
the settings: the test-wide environment."""

from __future__ import annotations

import os
import tempfile

from tests.account_rules import relax_account_rules

# Unit tests use the in-memory channel layer; tests that cross processes start a real
# Redis and switch the layer themselves (tests/live.py).
os.environ.setdefault("GUARDIA_CHANNEL_LAYER", "memory")
os.environ.setdefault("GUARDIA_DATA_DIR", tempfile.mkdtemp(prefix="guardia-test-"))
# Under pytest-xdist (`-n 2`, the fast lane) every worker gets a data directory of its own
# below the run's: its own SQLite test database, media, audit mirror, keys and testbed.
if _worker := os.environ.get("PYTEST_XDIST_WORKER"):
    _own = os.path.join(os.environ["GUARDIA_DATA_DIR"], _worker)
    os.makedirs(_own, exist_ok=True)
    os.environ["GUARDIA_DATA_DIR"] = _own
os.environ.setdefault("GUARDIA_LOGIN_THROTTLE", "true")
# The session and password-age rules stay out of the way of tests that travel in time or
# log one account in twice; tests/cmdb/test_sessions.py and test_password_policy.py turn
# them on (the settings are read at each request).
for _name in ("GUARDIA_SESSION_IDLE_MINUTES", "GUARDIA_SESSION_MAX_HOURS", "GUARDIA_PASSWORD_MAX_AGE_DAYS"):
    os.environ.setdefault(_name, "0")
relax_account_rules()
