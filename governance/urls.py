"""Team-lead web console, mounted at /console/ by guardia/urls.py."""

from __future__ import annotations

from django.urls import include, path

from . import views, views_owner_check, views_queue

app_name = "console"

# The approval queue and the decision on one step.
approval_urls = [
    path("", views.approvals, name="approvals"),
    path("<int:step_id>/decide/", views.decide, name="decide"),
]

# The in-app inbox.
inbox_urls = [
    path("", views.inbox, name="inbox"),
    path("read/", views.inbox_read, name="inbox_read"),
]

# One task: its page and what may be done to it.
task_urls = [
    path("", views.task_detail, name="task"),
    path("stop/", views.task_stop, name="task_stop"),
    path("priority/", views_queue.task_priority, name="task_priority"),
    path("validate/", views.validate, name="validate"),
]

urlpatterns = [
    path("", views.dashboard, name="dashboard"),
    path("tiles/", views.dashboard_tiles, name="tiles"),
    path("stop/", views.global_stop, name="global_stop"),
    path("search/", views.search, name="search"),
    path("tasks/<str:task_id>/", include(task_urls)),
    path("requests/new/", views.new_request, name="new_request"),
    path("demo-artifact/", views.demo_artifact, name="demo_artifact"),
    path("approvals/", include(approval_urls)),
    path("validations/", views.validation_queue, name="validations"),
    path("owner/", views.owner_settings, name="owner_settings"),
    path("owner-check/", views_owner_check.owner_check, name="owner_check"),
    path("statistics/", views.statistics, name="statistics"),
    path("inbox/", include(inbox_urls)),
]
