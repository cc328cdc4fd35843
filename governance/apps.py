from __future__ import annotations

from django.apps import AppConfig
from django.db.models.signals import post_migrate
from django.utils.translation import gettext_lazy as _


def ensure_schedules(sender, **kwargs) -> None:
    """The SLA sweep runs every minute and the attachment sweep daily, as django-q2 Schedules (idempotent)."""
    from django_q.models import Schedule

    Schedule.objects.update_or_create(
        name="governance.sweep_escalations",
        defaults={
            "func": "governance.tasks.sweep_escalations",
            "schedule_type": Schedule.MINUTES,
            "minutes": 1,
            "repeats": -1,
        },
    )
    # Unreferenced uploads (refused or abandoned filings) are removed once a day.
    Schedule.objects.update_or_create(
        name="governance.sweep_attachments",
        defaults={"func": "governance.tasks.sweep_attachments", "schedule_type": Schedule.DAILY, "repeats": -1},
    )
    # The statistics rollup moves to the new month on the first run after a month turns.
    Schedule.objects.update_or_create(
        name="governance.rollup_statistics",
        defaults={"func": "governance.rollup.scheduled_rebuild", "schedule_type": Schedule.DAILY, "repeats": -1},
    )
    from .schedules import ensure_schedules as ensure_owner_check

    ensure_owner_check(**kwargs)


class GovernanceConfig(AppConfig):
    default_auto_field = "django.db.models.BigAutoField"
    name = "governance"
    verbose_name = _("거버넌스 (TB_OPS_TASK)")

    def ready(self) -> None:
        from django_fsm.signals import post_transition, pre_transition

        from audit import signals as audit_signals

        from . import receivers, rollup
        from .models import OpsTask

        post_migrate.connect(ensure_schedules, sender=self)
        audit_signals.chain_broken.connect(receivers.on_chain_broken, dispatch_uid="governance-chain-broken")
        pre_transition.connect(rollup.before_transition, sender=OpsTask, dispatch_uid="governance-statistics-rollup")
        post_transition.connect(rollup.on_transition, sender=OpsTask, dispatch_uid="governance-statistics-rollup")
