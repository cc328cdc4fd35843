from __future__ import annotations

from django.apps import AppConfig
from django.db.models.signals import post_migrate
from django.utils.translation import gettext_lazy as _


def _ensure_inspection_schedule(sender, **kwargs) -> None:
    from .inspections import ensure_schedule

    ensure_schedule()


def _start_gateway_heartbeat(sender=None, **kwargs) -> None:
    from .gateways import start_heartbeat

    start_heartbeat(sender, **kwargs)


def _ensure_reaper_schedule(sender, **kwargs) -> None:
    from .reaper import ensure_schedule

    ensure_schedule()


def _ensure_env_scan_schedule(**kwargs) -> None:
    from .profiles import ensure_schedule

    ensure_schedule()


class ExecutionConfig(AppConfig):
    default_auto_field = "django.db.models.BigAutoField"
    name = "execution"
    verbose_name = _("실행")

    def ready(self) -> None:
        # The recurring inspection runner is a django-q2 Schedule, created once after migrate.
        post_migrate.connect(_ensure_inspection_schedule, sender=self, dispatch_uid="execution-inspection-schedule")
        # The reaper sweeps every minute for tasks whose worker is gone.
        post_migrate.connect(_ensure_reaper_schedule, sender=self, dispatch_uid="execution-reaper-schedule")
        # The runtime scan of every server keeps the drift report and the plans' notes fresh.
        post_migrate.connect(_ensure_env_scan_schedule, sender=self, dispatch_uid="execution-env-scan-schedule")
        # Each worker process of a site gateway's cluster writes the gateway's heartbeat.
        from django_q.signals import post_spawn

        post_spawn.connect(_start_gateway_heartbeat, dispatch_uid="execution-gateway-heartbeat")
