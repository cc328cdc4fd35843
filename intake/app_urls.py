"""The field PWA, mounted at /app/ by guardia/urls.py (the service worker's scope)."""

from __future__ import annotations

from django.urls import path

from . import views_app

app_name = "app"

urlpatterns = [
    path("", views_app.home, name="home"),
    path("new", views_app.new_request, name="new"),
    path("preview", views_app.preview, name="preview"),
    path("submit", views_app.submit, name="submit"),
    path("parse", views_app.parse, name="parse"),
    path("transcribe", views_app.transcribe, name="transcribe"),
    path("manifest.webmanifest", views_app.manifest, name="manifest"),
    path("sw.js", views_app.service_worker, name="sw"),
]
