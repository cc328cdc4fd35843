"""ASGI entry point: HTTP through Django, WebSockets through Channels (served by Daphne)."""

from __future__ import annotations

import os

import django

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "guardia.settings")

if os.environ.get("GUARDIA_PROFILE_TO"):  # measuring only: bench/ws_fanout.py --profile
    import cProfile
    import signal

    # SIGUSR1 starts profiling this process's main thread; SIGUSR2 stops it and writes the
    # statistics to GUARDIA_PROFILE_TO.<pid>.
    _profile = cProfile.Profile()

    def _write_profile(*_) -> None:
        _profile.disable()
        _profile.dump_stats(f"{os.environ['GUARDIA_PROFILE_TO']}.{os.getpid()}")

    signal.signal(signal.SIGUSR1, lambda *_: _profile.enable())
    signal.signal(signal.SIGUSR2, _write_profile)

django.setup(set_prefix=False)  # as get_asgi_application() does
from guardia.handler import SyncStackASGIHandler  # noqa: E402  (needs the app registry)

# Django's ASGI handler, its middleware and view run in one hop to the request's thread.
django_asgi_app = SyncStackASGIHandler()

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
