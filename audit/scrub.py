"""Keep secrets out of the audit record.

audit imports no other app, so this is its own small key-name scrub (cmdb.vault has the
log filter). A payload key that looks like it holds a secret has its value replaced; the
key stays, so the entry still says *that* a password was changed, never *what* it is.
"""

from __future__ import annotations

import re
from typing import Any

REDACTED = "[REDACTED]"

# Matched against lower-cased key names anywhere in the payload (nested too).
_SECRET_KEY = re.compile(
    r"pass(word|wd|phrase)?$|^pw$|^pwd$|secret|token|private[_-]?key|api[_-]?key|apikey|^otp$|"
    r"^authorization$|^cookie$|^session(id|_id|_key)?$|^csrf|^key_material$|^ssh_key$"
)
# In free text (commands): password=..., --password ..., token: ... and similar.
_SECRET_ASSIGNMENT = re.compile(
    r"(?i)(\b(?:password|passwd|pwd|secret|token|api[_-]?key)\b\s*(?:=|:|\s)\s*)(\"[^\"]*\"|'[^']*'|\S+)"
)


def is_secret_key(name: str) -> bool:
    return bool(_SECRET_KEY.search(str(name).lower()))


def scrub_payload(value: Any) -> Any:
    """A copy of value with the values of secret-looking keys replaced by [REDACTED]."""
    if isinstance(value, dict):
        return {k: (REDACTED if is_secret_key(k) else scrub_payload(v)) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [scrub_payload(v) for v in value]
    return value


def scrub_text(text: str) -> str:
    """Redact `password=...`-style assignments in free text such as a command line."""
    return _SECRET_ASSIGNMENT.sub(lambda m: m.group(1) + REDACTED, text)
