"""Errors the execution layer raises, in one module, so the engine catches them by type.

ParameterError and Refused stop a run before any server is touched; StepFailed is a step
that ran and failed; SecurityViolation is the sanitizer's refusal of a command; and
CommandRefused is a command the catalogue does not allow. The SSH transport's own errors
(TransportError and its kinds) live with the transport, the one module that talks SSH.
"""

from __future__ import annotations

from django.utils.translation import gettext, gettext_noop

# The first words of every sanitizer refusal (the run history and the console look for them).
# A Korean msgid: refusals are written in the site's language (the workers run in it).
BLOCK_PREFIX = gettext_noop("명령 검사기 차단")


class ParameterError(ValueError):
    """Bad playbook parameters: names the field, raised before any server is touched."""

    def __init__(self, errors: dict[str, str]):
        self.errors = errors
        super().__init__("; ".join(f"{k}: {v}" for k, v in errors.items()))


class StepFailed(Exception):
    """A step ran and its result decides failure (exit code, timeout, failed check)."""

    def __init__(self, step: str, reason: str):
        self.step = step
        self.reason = reason
        super().__init__(reason)


class StepTimedOut(StepFailed):
    """A step that ran out of time and was killed midway: it may have done part of its work."""


class Refused(Exception):
    """The playbook refuses to run at all (bad certificate, missing artifact): nothing touched."""


class SecurityViolation(Exception):
    """A command was refused before it reached any server."""

    def __init__(self, reason: str, pattern: str):
        super().__init__(f"{gettext(BLOCK_PREFIX)}: {reason} [{pattern}]")
        self.reason, self.pattern = reason, pattern


class CommandRefused(ValueError):
    """The command cannot run: the reason says why, in the operator's words."""
