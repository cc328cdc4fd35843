"""Team-lead web console, mounted at /console/ by guardia/urls.py."""

from __future__ import annotations

from django.urls import path

from . import views, views_owner_check, views_queue

app_name = "console"

urlpatterns = [
    path("", views.dashboard, name="dashboard"),
    path("tiles/", views.dashboard_tiles, name="tiles"),
    path("stop/", views.global_stop, name="global_stop"),
    path("search/", views.search, name="search"),
    path("requests/new/", views.new_request, name="new_request"),
    path("demo-artifact/", views.demo_artifact, name="demo_artifact"),
    path("approvals/", views.approvals, name="approvals"),
    path("approvals/<int:step_id>/decide/", views.decide, name="decide"),
    path("tasks/<str:task_id>/", views.task_detail, name="task"),
    path("tasks/<str:task_id>/stop/", views.task_stop, name="task_stop"),
    path("tasks/<str:task_id>/priority/", views_queue.task_priority, name="task_priority"),
    path("tasks/<str:task_id>/validate/", views.validate, name="validate"),
    path("validations/", views.validation_queue, name="validations"),
    path("owner/", views.owner_settings, name="owner_settings"),
    path("owner-check/", views_owner_check.owner_check, name="owner_check"),
    path("statistics/", views.statistics, name="statistics"),
    path("inbox/", views.inbox, name="inbox"),
    path("inbox/read/", views.inbox_read, name="inbox_read"),
]
