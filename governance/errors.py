"""Errors the governance services raise; the API maps them to 400/403/404/409."""

from __future__ import annotations


class GovernanceError(Exception):
    status_code = 400

    def __init__(self, detail: str, field: str | None = None, errors: dict[str, str] | None = None):
        super().__init__(detail)
        self.detail = detail
        self.field = field
        # Several fields at once ({"parameters.log_path": "...", "targets": "..."}): the API
        # answers with every one of them and the console shows each next to its field.
        self.errors = dict(errors or {})

    def as_dict(self) -> dict:
        if self.errors:
            return {name: [message] for name, message in self.errors.items()}
        return {self.field: [self.detail]} if self.field else {"detail": self.detail}


class Invalid(GovernanceError):
    status_code = 400

    @classmethod
    def from_fields(cls, errors: dict[str, str]) -> Invalid:
        """One error naming every field; ``field`` is the first one's top-level name."""
        first = next(iter(errors))
        return cls(
            "; ".join(f"{name}: {message}" for name, message in errors.items()),
            field=first.split(".", 1)[0],
            errors=errors,
        )


class Forbidden(GovernanceError):
    status_code = 403


class NotFound(GovernanceError):
    status_code = 404


class Conflict(GovernanceError):
    status_code = 409
