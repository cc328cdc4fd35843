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
The request signals run in the request's thread too, with the view: Django's handler sends
them from the event loop, whose synchronous receivers (the connections' clean-up) then need a
thread of their own, a new one for every request (asgiref's per-request ThreadSensitiveContext),
about 0.8 ms of a request's CPU. An answer already in memory is closed (``request_finished``)
in the request's thread before the event loop sends it. Only a streamed answer still gets
the per-request thread context, around its sending: its blocks are made in that one thread
(audit.views.ExportStream keeps its cursor there), it is closed there after the last block,
and a client that goes away stops it, as in Django's handler. A synchronous view that calls
``async_to_sync`` (live events) still reaches the server's event loop, as asgiref knows the
thread came from it.
"""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor

from asgiref.sync import AsyncToSync, ThreadSensitiveContext, sync_to_async
from django.conf import settings
from django.core import signals
from django.core.exceptions import RequestAborted
from django.core.handlers.asgi import ASGIHandler, get_script_prefix
from django.db import close_old_connections
from django.http import FileResponse, HttpResponseBase
from django.urls import set_script_prefix

_POOL: ThreadPoolExecutor | None = None


def _pool() -> ThreadPoolExecutor:
    global _POOL
    if _POOL is None:
        _POOL = ThreadPoolExecutor(getattr(settings, "WEB_REQUEST_THREADS", 32), thread_name_prefix="request")
    return _POOL


def _driven_from_sync_code() -> bool:
    """Called through async_to_sync from synchronous code (a test): Django's own path, in that
    code's thread and connection."""
    return getattr(AsyncToSync.executors, "current", None) is not None


class SyncStackASGIHandler(ASGIHandler):
    def load_middleware(self, is_async: bool = False) -> None:
        super().load_middleware(is_async=False)

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or _driven_from_sync_code():
            return await super().__call__(scope, receive, send)
        try:
            body_file = await self.read_body(receive)
        except RequestAborted:
            return
        set_script_prefix(get_script_prefix(scope))
        try:
            response = await sync_to_async(self._serve, thread_sensitive=False, executor=_pool())(scope, body_file)
            if not response.streaming:
                await self.send_response(response, send)
                return
            async with ThreadSensitiveContext():
                await self._stream(response, receive, send)
        finally:
            body_file.close()

    def _serve(self, scope, body_file) -> HttpResponseBase:
        """In a request thread: what Django's handler does up to the answer, the request signals
        included; an answer in memory is closed here too (``request_finished``)."""
        signals.request_started.send(sender=self.__class__, scope=scope)  # close_old_connections() among them
        request, error = self.create_request(scope, body_file)
        if request is None:
            assert error is not None  # Django's create_request gives one or the other
            response: HttpResponseBase = error
        else:
            try:
                response = self.get_response(request)
            finally:
                close_old_connections()  # a streamed answer's request_finished comes in another thread
            response._handler_class = self.__class__  # type: ignore[attr-defined]  # as Django's handler
            if isinstance(response, FileResponse):
                response.block_size = self.chunk_size
        if not response.streaming:
            response.close()
        return response

    async def _stream(self, response, receive, send) -> None:
        """Send a streamed answer until its end or the client's leaving, whichever comes first,
        then close it (``request_finished``) in the same thread context as its blocks."""
        sending = asyncio.create_task(self.send_response(response, send))
        leaving = asyncio.create_task(self.listen_for_disconnect(receive))
        try:
            await asyncio.wait([sending, leaving], return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in (leaving, sending):
                task.cancel()
            results = await asyncio.gather(sending, leaving, return_exceptions=True)
            await sync_to_async(response.close)()
        for result in results:
            if isinstance(result, BaseException) and not isinstance(result, RequestAborted | asyncio.CancelledError):
                raise result

    async def get_response_async(self, request):
        # Only on Django's own path (__call__): in the synchronous caller's thread and connection.
        return await sync_to_async(self.get_response, thread_sensitive=True)(request)
