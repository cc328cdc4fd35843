from __future__ import annotations

from django.apps import AppConfig, apps
from django.db.models.signals import post_migrate


def _sync_roles(sender, using="default", **kwargs) -> None:
    # post_migrate is sent once per app, in INSTALLED_APPS order, and each app's
    # permissions are created by its own sending. Sync after the last one, when the
    # permissions of governance and audit exist too.
    last = [config for config in apps.get_app_configs() if config.models_module is not None][-1]
    if sender.label != last.label:
        return
    from .roles import ensure_roles

    ensure_roles(verbose=True)


class CmdbConfig(AppConfig):
    default_auto_field = "django.db.models.BigAutoField"
    name = "cmdb"
    verbose_name = "CMDB"

    def ready(self) -> None:
        post_migrate.connect(_sync_roles, dispatch_uid="cmdb.roles.sync")
        from . import schedules

        post_migrate.connect(schedules.ensure_schedules, sender=self, dispatch_uid="cmdb.schedules")
        from . import account_audit, checks  # noqa: F401  (checks registers the vault key check)

        account_audit.connect()  # account changes made outside the services reach the audit
        from . import auth_policy

        auth_policy.connect()  # password history, first-login change, login notices, one session
        from django.contrib import admin
        from django_otp.plugins.otp_static.models import StaticDevice
        from django_otp.plugins.otp_totp.models import TOTPDevice

        # Second-factor devices are enrolled by their holder only (cmdb.otp), never in the admin.
        for model in (TOTPDevice, StaticDevice):
            if admin.site.is_registered(model):
                admin.site.unregister(model)
