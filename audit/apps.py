from __future__ import annotations

from django.apps import AppConfig
from django.db.models.signals import post_migrate
from django.utils.translation import gettext_lazy as _


class AuditConfig(AppConfig):
    default_auto_field = "django.db.models.BigAutoField"
    name = "audit"
    verbose_name = _("감사 (해시 체인)")

    def ready(self) -> None:
        # Logins are audited through Django's own auth signals (not another app's code).
        from django.contrib.auth.signals import user_logged_in, user_login_failed

        from . import receivers, schedules

        user_logged_in.connect(receivers.login_succeeded, dispatch_uid="audit.login")
        user_login_failed.connect(receivers.login_failed, dispatch_uid="audit.login_failed")
        post_migrate.connect(schedules.ensure_schedules, sender=self, dispatch_uid="audit.schedules")
