from __future__ import annotations

from django.urls import path

from . import views

app_name = "execution"
urlpatterns: list = [
    path("gateways/", views.gateway_status, name="gateways"),
    path("drift/", views.drift_report, name="drift"),
    path("drift/<int:schema_id>/accept/", views.drift_accept, name="drift-accept"),
    path("drift/<int:schema_id>/task/", views.drift_task, name="drift-task"),
]
