"""Errors the governance services raise; the API maps them to 400/403/404/409."""

from __future__ import annotations


class GovernanceError(Exception):
    status_code = 400

    def __init__(self, detail: str, field: str | None = None):
        super().__init__(detail)
        self.detail = detail
        self.field = field

    def as_dict(self) -> dict:
        return {self.field: [self.detail]} if self.field else {"detail": self.detail}


class Invalid(GovernanceError):
    status_code = 400


class Forbidden(GovernanceError):
    status_code = 403


class NotFound(GovernanceError):
    status_code = 404


class Conflict(GovernanceError):
    status_code = 409
