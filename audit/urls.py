from __future__ import annotations

from django.urls import path

from . import views

app_name = "audit"
urlpatterns = [
    path("", views.entry_list, name="entries"),
    path("verify/", views.verify, name="verify"),
    path("export/", views.export, name="export"),
]
