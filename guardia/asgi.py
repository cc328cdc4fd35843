"""ASGI entry point: HTTP through Django, WebSockets through Channels (served by Daphne)."""

from __future__ import annotations

import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "guardia.settings")
django_asgi_app = get_asgi_application()

from channels.auth import AuthMiddlewareStack  # noqa: E402  (needs the app registry)
from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402
from channels.security.websocket import AllowedHostsOriginValidator  # noqa: E402

from guardia.middleware import ClientAllowlistASGIMiddleware  # noqa: E402
from guardia.routing import websocket_urlpatterns  # noqa: E402

# HTTP requests meet the allowlist in Django's middleware; WebSockets never pass through
# it, so the same check guards the handshake here, outermost, before origin and session.
application = ProtocolTypeRouter(
    {
        "http": django_asgi_app,
        "websocket": ClientAllowlistASGIMiddleware(
            AllowedHostsOriginValidator(AuthMiddlewareStack(URLRouter(websocket_urlpatterns)))
        ),
    }
)
