"""The ASGI handler of HTTP requests: Django's, with its middleware and views run as one
synchronous stack in the request's thread.

Django's own ASGI handler builds the middleware chain in async mode; with any synchronous
middleware in it (ours and WhiteNoise are) every request then hops from the event loop to a
thread for the middleware, back to the loop at the bottom of the chain, and to the thread
again for the (synchronous) view. Here the whole stack runs in one hop to the request's
thread (the same thread-sensitive thread Django would use), which saves about a fifth of
the CPU an authenticated API request costs the web process. Everything else is Django's:
the request's own thread and database connection, the request signals, the response sent
(streamed ones included) by the event loop.
"""

from __future__ import annotations

from asgiref.sync import sync_to_async
from django.core.handlers.asgi import ASGIHandler


class SyncStackASGIHandler(ASGIHandler):
    def load_middleware(self, is_async: bool = False) -> None:
        super().load_middleware(is_async=False)

    async def get_response_async(self, request):
        return await sync_to_async(self.get_response, thread_sensitive=True)(request)
