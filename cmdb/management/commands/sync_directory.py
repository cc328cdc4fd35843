"""Deactivate the directory accounts the directory has removed or disabled.

    manage.py sync_directory

Run it on a schedule (or from the site's cron) when directory login is on: a login
refuses a disabled account at once, but someone who never logs in again could still
decide by messenger or API token until this runs. Needs a service bind
(GUARDIA_LDAP_BIND_DN and GUARDIA_LDAP_BIND_PASSWORD).
"""

from __future__ import annotations

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError


class Command(BaseCommand):
    help = "Deactivate directory accounts removed or disabled in the directory (LDAP / AD)."

    def handle(self, *args, **options):
        if not getattr(settings, "LDAP_ENABLED", False):
            raise CommandError("directory login is off (GUARDIA_LDAP_ENABLED)")
        if not settings.AUTH_LDAP_BIND_DN or settings.AUTH_LDAP_BIND_AS_AUTHENTICATING_USER:
            raise CommandError("sync_directory needs a service bind: GUARDIA_LDAP_BIND_DN and _BIND_PASSWORD")
        import ldap  # type: ignore[import-untyped]

        from cmdb.ldap import sync_directory_accounts

        try:
            counts = sync_directory_accounts()
        except ldap.LDAPError as exc:
            raise CommandError(f"directory unreachable, nothing changed: {exc}") from exc
        self.stdout.write(f"checked {counts['checked']}, deactivated {counts['deactivated']}")
