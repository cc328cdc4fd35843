from __future__ import annotations

from django.urls import path

from . import views

app_name = "execution"
urlpatterns: list = [
    path("gateways/", views.gateway_status, name="gateways"),
]
