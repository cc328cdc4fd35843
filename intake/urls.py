"""The messenger's HTTP entry points, mounted at /messenger/ by guardia/urls.py."""

from __future__ import annotations

from django.urls import path

from .messenger import views

app_name = "messenger"

urlpatterns = [
    path("hooks/command/", views.command_hook, name="command_hook"),
    path("hooks/action/", views.action_hook, name="action_hook"),
    path("decide/<str:signed>/", views.step_up_decision, name="step_up"),
]
