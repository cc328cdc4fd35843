"""The account rules that tests and benchmarks leave off unless they test them: accounts
made a moment ago would otherwise meet the first-login password change, the login
notice, one-time passwords and the one-session rule on every request."""

from __future__ import annotations

import os
from collections.abc import MutableMapping

RELAXED = (
    "GUARDIA_SESSION_SINGLE",
    "GUARDIA_PASSWORD_FIRST_LOGIN_CHANGE",
    "GUARDIA_LOGIN_NOTICE",
    "GUARDIA_OTP_ENABLED",
)


def relax_account_rules(environ: MutableMapping[str, str] = os.environ) -> None:
    """Each rule off unless the environment already says otherwise."""
    for name in RELAXED:
        environ.setdefault(name, "false")
