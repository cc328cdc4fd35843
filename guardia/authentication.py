"""API token authentication (a module of its own: DRF imports it while its views load)."""

from __future__ import annotations

from rest_framework import authentication
from rest_framework.authtoken.models import Token

from governance.compiled import CompiledSelect

# The token with its user: every API request asks it (compiled once, see CompiledSelect).
_TOKEN = CompiledSelect(lambda key: Token.objects.select_related("user").filter(key=key), text=("key",))


class TokenAuthentication(authentication.TokenAuthentication):
    """DRF's token authentication (``Authorization: Token <key>``) with its one query compiled
    once: Django built and compiled the token-and-user select on every request. An unknown
    key or an inactive user goes DRF's own way, so the refusals and their texts are DRF's."""

    def authenticate_credentials(self, key):
        token = _TOKEN.first(key=key)
        if token is None or not token.user.is_active:
            return super().authenticate_credentials(key)
        return token.user, token
