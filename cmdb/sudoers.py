"""The sudoers file for GUARDiA's SSH account, generated from the command catalogue.

Only rules with ``run_as`` set need sudo; everything else runs as the (unprivileged) SSH
account itself. Each such rule becomes one command: the program's absolute path and its
``argv_pattern`` as a sudoers regular expression (sudo 1.9.10 and later match the
arguments, joined by single spaces, against ``^…$``), so the account may run exactly the
argument lists the catalogue allows, as exactly that user, and nothing else.

The catalogue's patterns are Python regular expressions; sudo's are POSIX extended ones.
``posix_regex`` translates the common subset (``\\d``, ``\\w``, ``(?:…)``, escaped
metacharacters) and refuses anything else rather than emit a rule that means something
different to sudo.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

DEFAULTS = ("!requiretty", "env_reset", "!setenv", "noexec", "umask=0027", "secure_path=/usr/sbin:/usr/bin:/sbin:/bin")
_CLASS_SHORTHANDS = {"d": "0-9", "w": "A-Za-z0-9_"}
_ESCAPABLE = set(".^$|()[]{}*+?\\/-")


class SudoersError(ValueError):
    """A catalogue rule cannot be expressed in sudoers without changing its meaning."""


def posix_regex(pattern: str) -> str:
    out: list[str] = []
    i, n = 0, len(pattern)
    while i < n:
        c = pattern[i]
        if c == "\\":
            nxt = pattern[i + 1 : i + 2]
            if nxt in _CLASS_SHORTHANDS:
                out.append(f"[{_CLASS_SHORTHANDS[nxt]}]")
            elif nxt and nxt in _ESCAPABLE:
                out.append("\\" + nxt if nxt not in "/-" else nxt)
            else:
                raise SudoersError(f"\\{nxt} has no POSIX equivalent")
            i += 2
            continue
        if c == "(" and pattern.startswith("(?", i):
            if not pattern.startswith("(?:", i):
                raise SudoersError("look-arounds, flags and named groups have no POSIX equivalent")
            out.append("(")
            i += 3
            continue
        if c in "*+?}" and pattern[i + 1 : i + 2] in {"?", "+"}:
            raise SudoersError("lazy or possessive repetition has no POSIX equivalent")
        if c == "[":
            end = i + 1
            if pattern[end : end + 1] == "^":
                end += 1
            if pattern[end : end + 1] == "]":
                end += 1
            body: list[str] = []
            while end < n and pattern[end] != "]":
                if pattern[end] == "\\":
                    nxt = pattern[end + 1 : end + 2]
                    if nxt in _CLASS_SHORTHANDS:
                        body.append(_CLASS_SHORTHANDS[nxt])
                    elif nxt in {".", "/", "_", "@", ":", "+", "=", ","}:
                        body.append(nxt)
                    else:
                        raise SudoersError(f"\\{nxt} inside [...] has no POSIX equivalent")
                    end += 2
                    continue
                body.append(pattern[end])
                end += 1
            if end >= n:
                raise SudoersError("unterminated [...]")
            start = pattern[i : i + 1] + ("^" if pattern[i + 1 : i + 2] == "^" else "")
            out.append(start + "".join(body) + "]")
            i = end + 1
            continue
        if c == "#":
            out.append("\\#")  # the only character sudoers wants escaped inside a regular expression
        else:
            out.append(c)
        i += 1
    return "".join(out)


ACCOUNT_RE = re.compile(r"[a-z_][a-z0-9_-]{0,31}")
PATH_RE = re.compile(r"(/[A-Za-z0-9._+-]+)+")


def command_spec(rule) -> str:
    """``/abs/program ^<arguments>$`` for one catalogue rule run through sudo."""
    # Rows written around the model's validation are checked again: a space, comma or
    # newline in a path or a user name would change the sudoers line.
    if not PATH_RE.fullmatch(rule.program or "") or "/../" in rule.program + "/" or not rule.argv_pattern:
        raise SudoersError(f"rule {rule}: needs an absolute program path and an argument list pattern")
    if not ACCOUNT_RE.fullmatch(rule.run_as or ""):
        raise SudoersError(f"rule {rule}: not an account name: {rule.run_as!r}")
    if "\n" in rule.argv_pattern or "\r" in rule.argv_pattern:
        raise SudoersError(f"rule {rule}: a line break in the argument list pattern")
    try:
        regex = posix_regex(rule.argv_pattern)
    except SudoersError as exc:
        raise SudoersError(f"rule {rule}: {exc}") from exc
    return f"{rule.program} ^{regex}$"


def sudoers_for(rules: Iterable, user: str, label: str = "") -> str:
    """The sudoers file: one line per (rule, run-as user); nothing when no rule needs sudo."""
    if not ACCOUNT_RE.fullmatch(user):
        raise SudoersError(f"not an account name: {user!r}")
    lines = [
        f"# GUARDiA SSH account {user}{' for ' + label if label else ''}: generated from the command "
        f"catalogue (manage.py catalogue_sudoers).",
        "# Check with visudo -cf FILE and install as /etc/sudoers.d/guardia, mode 0440.",
        f"Defaults:{user} " + ", ".join(DEFAULTS),
    ]
    needed = sorted((r for r in rules if getattr(r, "run_as", "")), key=lambda r: (r.run_as, r.program, r.pk or 0))
    for rule in needed:
        lines.append("# " + re.sub(r"[\x00-\x1f\x7f]", " ", f"{rule}: {rule.description or rule.program}"))
        lines.append(f"{user} ALL=({rule.run_as}) NOPASSWD: {command_spec(rule)}")
    if not needed:
        lines.append(f"# No catalogue rule runs through sudo: {user} needs no sudo rights at all.")
    return "\n".join(lines) + "\n"
