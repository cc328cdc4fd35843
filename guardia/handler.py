"""The ASGI handler of HTTP requests: Django's, with its middleware and view run as one
synchronous stack on a kept pool of request threads.

Django's own ASGI handler builds the middleware chain in async mode; with any synchronous
middleware in it (ours and WhiteNoise are) every request then hops from the event loop to a
thread for the middleware, back to the loop at the bottom of the chain, and to the thread
again for the (synchronous) view; and that thread is a new one for every request, so its
database connection is opened and closed again for every request too. Here the whole stack
runs in one hop, on one of ``WEB_REQUEST_THREADS`` threads that live as long as the process,
each keeping its database connection between requests as CONN_MAX_AGE allows (SQLite: see
settings; PostgreSQL: the psycopg pool). Together about half of the CPU an authenticated API
request costs the web process before its view does anything.

What Django's request signals do for the request's connection is done here, in the thread
that used it: ``close_old_connections()`` before and after each request (a connection that
errored, aged out or was left in a transaction is closed, the next request opens a new one).
Everything else is Django's: the request signals, the response sent (streamed ones included)
by the event loop. A synchronous view that calls ``async_to_sync`` (live events) still
reaches the server's event loop, as asgiref knows the thread came from it.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

from asgiref.sync import AsyncToSync, sync_to_async
from django.conf import settings
from django.core.handlers.asgi import ASGIHandler
from django.db import close_old_connections

_POOL: ThreadPoolExecutor | None = None


def _pool() -> ThreadPoolExecutor:
    global _POOL
    if _POOL is None:
        _POOL = ThreadPoolExecutor(getattr(settings, "WEB_REQUEST_THREADS", 32), thread_name_prefix="request")
    return _POOL


class SyncStackASGIHandler(ASGIHandler):
    def load_middleware(self, is_async: bool = False) -> None:
        super().load_middleware(is_async=False)

    def _respond(self, request):
        close_old_connections()
        try:
            return self.get_response(request)
        finally:
            close_old_connections()

    async def get_response_async(self, request):
        if getattr(AsyncToSync.executors, "current", None) is not None:
            # Driven from synchronous code through async_to_sync (a test): in that code's own
            # thread and connection, as Django does.
            return await sync_to_async(self.get_response, thread_sensitive=True)(request)
        return await sync_to_async(self._respond, thread_sensitive=False, executor=_pool())(request)
