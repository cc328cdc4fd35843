"""Client-network allowlist: only bastion ranges may reach the application."""

from __future__ import annotations

import ipaddress
from collections.abc import Callable

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.http import HttpRequest, HttpResponse, HttpResponseForbidden


def parse_networks(entries: list[str]) -> list[ipaddress.IPv4Network | ipaddress.IPv6Network]:
    networks = []
    for entry in entries:
        try:
            networks.append(ipaddress.ip_network(entry, strict=False))
        except ValueError as exc:
            raise ImproperlyConfigured(f"GUARDIA_CLIENT_ALLOWLIST: {entry!r} is not a network") from exc
    return networks


def client_allowed(address: str, networks) -> bool:
    if not networks:
        return True
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    return any(ip in net for net in networks)


class ClientAllowlistMiddleware:
    """Refuse requests from addresses outside GUARDIA_CLIENT_ALLOWLIST.

    REMOTE_ADDR is used, not X-Forwarded-For: a header is the client's to forge. Behind a
    reverse proxy, list the proxy's address and let the proxy enforce its own ranges.
    """

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]):
        self.get_response = get_response
        self.networks = parse_networks(settings.CLIENT_ALLOWLIST)

    def __call__(self, request: HttpRequest) -> HttpResponse:
        if not client_allowed(request.META.get("REMOTE_ADDR", ""), self.networks):
            return HttpResponseForbidden("client network not allowed")
        return self.get_response(request)


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
