"""System check: in production a vault key that cannot be read stops the start-up."""

from __future__ import annotations

from django.conf import settings
from django.core.checks import Error, register


@register(deploy=True)
def vault_key_check(app_configs, **kwargs):
    from . import vault

    if not settings.PRODUCTION:
        return []
    try:
        vault.load_key()
    except vault.VaultError as exc:
        return [Error(f"credential vault: {exc}", id="cmdb.E001")]
    return []
