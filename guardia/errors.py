"""Error pages: Korean pages in the console layout, JSON for the API.

With DEBUG off Django renders 403.html / 404.html / 500.html; these handlers choose JSON
instead for the REST API (its clients parse a body that says what is wrong) and never
echo anything about the object that was asked for.
"""

from __future__ import annotations

from django.http import HttpRequest, HttpResponse, JsonResponse
from django.template import loader
from django.views import defaults

API_PREFIX = "/api/"


def _wants_json(request: HttpRequest) -> bool:
    return request.path.startswith(API_PREFIX)


def permission_denied(request: HttpRequest, exception=None) -> HttpResponse:
    if _wants_json(request):
        return JsonResponse({"detail": "권한이 없습니다."}, status=403)
    return defaults.permission_denied(request, exception, template_name="403.html")


def page_not_found(request: HttpRequest, exception=None) -> HttpResponse:
    if _wants_json(request):
        return JsonResponse({"detail": "찾을 수 없습니다."}, status=404)
    return defaults.page_not_found(request, exception, template_name="404.html")


def server_error(request: HttpRequest) -> HttpResponse:
    if _wants_json(request):
        return JsonResponse({"detail": "서버 오류가 발생했습니다."}, status=500)
    # No request context: whatever failed (the database, a context processor) must not
    # fail the error page too.
    return HttpResponse(loader.get_template("500.html").render(), status=500)
