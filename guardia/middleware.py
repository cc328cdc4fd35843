"""Client-network allowlist: only bastion ranges may reach the application, over HTTP and
WebSocket alike; and the one rule for which address a request comes from.

The address is the TCP peer's. A reverse proxy's X-Forwarded-For is believed only when the
peer is one of GUARDIA_TRUSTED_PROXIES; anyone else's header is the client's to forge. The
allowlist, login throttling (django-axes, through ``client_ip``) and the WebSocket guard
all call ``resolve_client`` so they can never disagree about who is asking.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable, Iterable
from functools import lru_cache

from channels.security.websocket import WebsocketDenier
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.http import HttpRequest, HttpResponse, HttpResponseForbidden

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def parse_networks(entries: Iterable[str], setting: str = "GUARDIA_CLIENT_ALLOWLIST") -> list[Network]:
    networks = []
    for entry in entries:
        try:
            networks.append(ipaddress.ip_network(entry.strip(), strict=False))
        except ValueError as exc:
            raise ImproperlyConfigured(f"{setting}: {entry!r} is not a network") from exc
    return networks


@lru_cache(maxsize=16)
def _networks(entries: tuple[str, ...], setting: str) -> tuple[Network, ...]:
    return tuple(parse_networks(entries, setting))


def allowlist_networks() -> tuple[Network, ...]:
    return _networks(tuple(settings.CLIENT_ALLOWLIST), "GUARDIA_CLIENT_ALLOWLIST")


def trusted_proxy_networks() -> tuple[Network, ...]:
    return _networks(tuple(getattr(settings, "TRUSTED_PROXIES", [])), "GUARDIA_TRUSTED_PROXIES")


def _in(address: str, networks) -> bool:
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    return any(ip in net for net in networks)


def client_allowed(address: str, networks) -> bool:
    if not networks:
        return True
    return _in(address, networks)


def resolve_client(peer: str, forwarded_for: str = "", proxies=None) -> str:
    """The client's address: the peer, or, when the peer is a trusted proxy, the nearest
    address in X-Forwarded-For that is not itself a trusted proxy (read right to left,
    because only the entries our own proxies appended can be believed). A malformed entry
    yields "" (no address), which the allowlist refuses."""
    proxies = trusted_proxy_networks() if proxies is None else proxies
    if not forwarded_for or not proxies or not _in(peer, proxies):
        return peer
    hops = [hop.strip() for hop in forwarded_for.split(",")]
    for hop in reversed(hops):
        try:
            ipaddress.ip_address(hop)
        except ValueError:
            return ""
        if not _in(hop, proxies):
            return hop
    return hops[0]


def client_ip(request: HttpRequest) -> str:
    """The client address of an HTTP request (also django-axes' AXES_CLIENT_IP_CALLABLE)."""
    return resolve_client(request.META.get("REMOTE_ADDR", ""), request.META.get("HTTP_X_FORWARDED_FOR", ""))


class ClientAllowlistMiddleware:
    """Refuse requests from addresses outside GUARDIA_CLIENT_ALLOWLIST."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]):
        self.get_response = get_response
        allowlist_networks()  # a bad entry stops the start-up, not the first request
        trusted_proxy_networks()

    def __call__(self, request: HttpRequest) -> HttpResponse:
        if not client_allowed(client_ip(request), allowlist_networks()):
            return HttpResponseForbidden("client network not allowed")
        return self.get_response(request)


class ClientAllowlistASGIMiddleware:
    """The same allowlist in front of the WebSocket routes: a connection from outside the
    bastion ranges is refused at the handshake (HTTP 403), before any consumer runs."""

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] == "websocket":
            peer = (scope.get("client") or ("", 0))[0] or ""
            forwarded = ""
            for name, value in scope.get("headers", []):
                if name.lower() == b"x-forwarded-for":
                    forwarded = ", ".join(filter(None, [forwarded, value.decode("latin-1")]))
            if not client_allowed(resolve_client(peer, forwarded), allowlist_networks()):
                return await WebsocketDenier()(scope, receive, send)
        return await self.app(scope, receive, send)


class KoreanFirstLocaleMiddleware:
    """Korean unless the user chose another language (the language switch sets a cookie).

    Django's LocaleMiddleware would follow the browser's Accept-Language, so an office PC
    with an English browser would get an English console; the spec says the UI speaks
    Korean by default, with English available on request.
    """

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]):
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        from django.utils import translation

        chosen = request.COOKIES.get(settings.LANGUAGE_COOKIE_NAME, "")
        supported = {code for code, _name in settings.LANGUAGES}
        language = chosen if chosen in supported else settings.LANGUAGE_CODE
        translation.activate(language)
        request.LANGUAGE_CODE = translation.get_language()
        response = self.get_response(request)
        response.headers.setdefault("Content-Language", translation.get_language())
        return response


class DatabaseBusyMiddleware:
    """A request that could not get the database's write lock in time answers 503 with
    Retry-After instead of a 500.

    SQLite admits one writer at a time: writers wait up to the busy timeout (OPTIONS
    "timeout") and then fail with "database is locked". That write ran inside the service's
    transaction.atomic(), which is rolled back, so nothing of the change was kept and the
    client may simply send the request again.
    """

    RETRY_AFTER_SECONDS = 2

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]):
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        return self.get_response(request)

    def process_exception(self, request: HttpRequest, exception: Exception) -> HttpResponse | None:
        from django.db import OperationalError
        from django.http import JsonResponse

        if not isinstance(exception, OperationalError) or "locked" not in str(exception).lower():
            return None
        message = "데이터베이스가 잠시 사용 중입니다. 잠시 후 다시 시도하세요. (변경된 내용은 없습니다)"
        if request.path.startswith("/api/"):
            response: HttpResponse = JsonResponse({"detail": message}, status=503)
        else:
            response = HttpResponse(message, status=503, content_type="text/plain; charset=utf-8")
        response["Retry-After"] = str(self.RETRY_AFTER_SECONDS)
        return response
