"""API-wide behaviour: every error answers with a JSON body that says what is wrong."""

from __future__ import annotations

from django.core.exceptions import PermissionDenied, ValidationError
from django.http import Http404
from rest_framework import status
from rest_framework.pagination import LimitOffsetPagination
from rest_framework.response import Response
from rest_framework.views import exception_handler as drf_exception_handler

from governance.errors import GovernanceError


def exception_handler(exc, context):
    if isinstance(exc, GovernanceError):  # a service refused: its status and the fields it names
        return Response(exc.as_dict(), status=exc.status_code)
    if isinstance(exc, ValidationError):
        detail = exc.message_dict if hasattr(exc, "error_dict") else {"detail": exc.messages}
        return Response(detail, status=status.HTTP_400_BAD_REQUEST)
    response = drf_exception_handler(exc, context)
    if response is not None and isinstance(response.data, list):
        response.data = {"detail": response.data}
    if response is None and isinstance(exc, (Http404, PermissionDenied)):
        return Response({"detail": str(exc)}, status=404 if isinstance(exc, Http404) else 403)
    return response


class Pagination(LimitOffsetPagination):
    """limit/offset paging with bounds: at most 500 rows a page, and an offset that a
    database integer holds (past 2**63 SQLite answers with an error, not an empty page)."""

    max_limit = 500
    max_offset = 2**62

    def get_offset(self, request) -> int:
        return min(super().get_offset(request), self.max_offset)
