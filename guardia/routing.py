from __future__ import annotations

from django.urls import path

from governance.consumers import LiveConsumer

websocket_urlpatterns = [
    path("ws/live/", LiveConsumer.as_asgi()),
    path("ws/tasks/<str:task_id>/", LiveConsumer.as_asgi()),
]
