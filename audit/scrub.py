"""Keep secrets out of everything GUARDiA stores or shows: the one home of redaction.

audit imports no other app, so this module knows nothing of credentials; callers that do
(cmdb.vault's log filter and ``vault.redact``, which the execution engine uses for command
output) pass the secrets they know in ``known``.

- ``scrub_payload``: a payload key that looks like it holds a secret has its value
  replaced; the key stays, so an entry still says *that* a password was changed, never
  *what* it is.
- ``redact_text``: free text (a command line, a command's stdout/stderr, a log line):
  private-key blocks (also a block cut by an excerpt), ``password=…``-style assignments
  and ``--password …`` flags, Authorization/Cookie headers, bearer tokens, credentials in
  URLs, AWS-style access keys, and any known secret verbatim.
- ``redact_structure``: both at once over nested dicts/lists (health answers, findings).
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable
from typing import Any

REDACTED = "[REDACTED]"
REDACTED_KEY = "[REDACTED PRIVATE KEY]"

# Matched against lower-cased key names anywhere in the payload (nested too).
_SECRET_KEY = re.compile(
    r"pass(word|wd|phrase)?$|^pw$|^pwd$|secret|token|private[_-]?key|api[_-]?key|apikey|^otp$|"
    r"^authorization$|^cookie$|^session(id|_id|_key)?$|^csrf|^key_material$|^ssh_key$"
)

_SECRET_WORD = (
    r"[\w.-]*(?:password|passwd|pwd|passphrase|secret|token|api[_-]?key|apikey|access[_-]?key|private[_-]?key)"
)
_VALUE = r"(\"[^\"\n]*\"|'[^'\n]*'|[^\s,;&\"']+)"
# PEM private-key blocks, whole; a block whose END an excerpt cut off (to the end of the
# text); and a block whose BEGIN was cut off (from the start of the text).
_PEM_BLOCK = re.compile(r"-----BEGIN [A-Z0-9 ]*PRIVATE KEY-----.*?-----END [A-Z0-9 ]*PRIVATE KEY-----", re.S)
_PEM_OPEN = re.compile(r"-----BEGIN [A-Z0-9 ]*PRIVATE KEY-----.*\Z", re.S)
_PEM_TAIL = re.compile(r"\A.*?-----END [A-Z0-9 ]*PRIVATE KEY-----", re.S)
_RULES: list[tuple[re.Pattern, str]] = [
    # Authorization: Bearer x / Basic x, Proxy-Authorization, Cookie, Set-Cookie, X-Api-Key headers.
    (re.compile(r"(?im)^(\s*[\"']?(?:proxy-)?authorization[\"']?\s*[:=]\s*)(.+)$"), r"\1" + REDACTED),
    (re.compile(r"(?im)^(\s*(?:set-)?cookie\s*:\s*)(.+)$"), r"\1" + REDACTED),
    (re.compile(r"(?im)^(\s*x-(?:api|auth)-(?:key|token)\s*:\s*)(.+)$"), r"\1" + REDACTED),
    (re.compile(r"(?i)(\b(?:bearer|basic)[ \t]+)([A-Za-z0-9._~+/=-]{8,})"), r"\1" + REDACTED),
    # key=value, key: value, "key": "value" (JSON), key => value.
    (re.compile(rf"(?i)((?<![\w-]){_SECRET_WORD}[\w.-]*[\"']?[ \t]*(?:=>|=|:)[ \t]*){_VALUE}"), r"\1" + REDACTED),
    # --password value, -token value (command-line flags with a space).
    (re.compile(rf"(?i)((?<!\S)--?{_SECRET_WORD}[\w.-]*[ \t]+){_VALUE}"), r"\1" + REDACTED),
    # sshpass -p secret, mysql/mysqldump -psecret
    (re.compile(r"(\bsshpass[ \t]+-p[ \t]*)(\S+)"), r"\1" + REDACTED),
    (re.compile(r"(\bmysql(?:dump|admin)?\b[^\n]*?[ \t]-p)([^\s-]\S*)"), r"\1" + REDACTED),
    # scheme://user:password@host
    (re.compile(r"(?i)\b([a-z][a-z0-9+.-]*://[^\s:/@]+:)([^\s@/]+)(@)"), r"\1" + REDACTED + r"\3"),
    # AWS access key ids and a 40-character secret next to an AWS word.
    (re.compile(r"\b(?:AKIA|ASIA|AGPA|AIDA|AROA|ANPA)[0-9A-Z]{16}\b"), REDACTED),
    (re.compile(r"(?i)(aws[\w.-]*[ \t]*(?:=|:)[ \t]*)([A-Za-z0-9/+=]{40})\b"), r"\1" + REDACTED),
]
MIN_KNOWN = 4  # shorter known secrets would redact ordinary words
# Every rule above needs one of these words (in any case): a header's name, a secret word or a part
# of one, a tool's name, the "://" of a URL, an AWS key's prefix or the word "aws". A text holding
# none of them cannot match any rule, so the rules are not searched in it: most of what the engine
# records (ordinary commands and their output) is redacted by a few substring tests instead of
# eleven expressions. The text is case-folded first, so a letter that a case-insensitive rule
# matches is the letter looked for here (the two that fold otherwise, U+0130 and U+0131, are
# mapped to "i").
_TRIGGERS = (
    "authorization",
    "cookie",
    "x-auth-",
    "bearer",
    "basic",
    "passw",
    "pwd",
    "passphrase",
    "secret",
    "token",
    "api",
    "access",
    "private",
    "sshpass",
    "mysql",
    "://",
    "akia",
    "asia",
    "agpa",
    "aida",
    "aroa",
    "anpa",
    "aws",
)


def fold(text: str) -> str:
    """``text`` case-folded so that every character a case-insensitive expression matches to an
    ASCII letter is that letter (casefold, and U+0130 / U+0131, which fold to something else,
    made "i"): a word looked for in it is found wherever such an expression could find it."""
    folded = text.casefold()
    if not folded.isascii():
        folded = folded.replace("\u0307", "").replace("\u0131", "i")
    return folded


def _triggered(text: str) -> bool:
    folded = fold(text)
    return any(word in folded for word in _TRIGGERS)


def is_secret_key(name: str) -> bool:
    if type(name) is str:  # a str subclass could hash and compare like another key: not remembered
        return _secret_key(name)
    return bool(_SECRET_KEY.search(str(name).lower()))


# Payloads and result packages repeat the same few dozen keys thousands of times a run.
@functools.lru_cache(maxsize=1024)
def _secret_key(name: str) -> bool:
    return bool(_SECRET_KEY.search(name.lower()))


def scrub_payload(value: Any) -> Any:
    """A copy of value with the values of secret-looking keys replaced by [REDACTED]."""
    if isinstance(value, dict):
        return {k: (REDACTED if is_secret_key(k) else scrub_payload(v)) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [scrub_payload(v) for v in value]
    return value


def redact_text(text: str, known: Iterable[str] = ()) -> str:
    """``text`` with secrets replaced by [REDACTED] (private keys by [REDACTED PRIVATE KEY])."""
    if not text:
        return text
    return _redact(str(text), _longest_first(known))


def _longest_first(known: Iterable[str]) -> list[str]:
    """The known secrets worth looking for, the longest first (one that contains another goes whole)."""
    return sorted({s for s in known if s and len(s) >= MIN_KNOWN}, key=len, reverse=True)


def _redact(text: str, secrets: list[str]) -> str:
    if "PRIVATE KEY-----" in text:
        text = _PEM_BLOCK.sub(REDACTED_KEY, text)
        text = _PEM_OPEN.sub(REDACTED_KEY, text)
        text = _PEM_TAIL.sub(REDACTED_KEY, text)
    if _triggered(text):
        text = apply_rules(text)
    for secret in secrets:
        if secret in text:
            text = text.replace(secret, REDACTED)
    return text


def apply_rules(text: str) -> str:
    """Every rule's replacement over ``text`` (``redact_text`` calls it when a trigger is there)."""
    for pattern, replacement in _RULES:
        text = pattern.sub(replacement, text)
    return text


def scrub_text(text: str) -> str:
    """Redact a command line for the audit record (no known secrets: audit knows none)."""
    return redact_text(text)


def redact_structure(value: Any, known: Iterable[str] = ()) -> Any:
    """Nested dicts/lists: secret-looking keys' values replaced, every string redacted."""
    return _structure(value, _longest_first(known))


def _structure(value: Any, secrets: list[str]) -> Any:
    if isinstance(value, dict):
        return {k: (REDACTED if is_secret_key(k) else _structure(v, secrets)) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_structure(v, secrets) for v in value]
    if isinstance(value, str):
        return _redact(value, secrets) if value else value
    return value
