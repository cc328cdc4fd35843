"""One API router; each app registers its viewsets in its own api.py."""

from __future__ import annotations

from django.urls import include, path

urlpatterns = [
    path("", include("cmdb.api")),
    path("", include("governance.api")),
    path("", include("audit.api")),
    path("", include("execution.api")),
    path("", include("intake.api")),
]
