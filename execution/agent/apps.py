from __future__ import annotations

from django.apps import AppConfig
from django.utils.translation import gettext_lazy as _


class AgentConfig(AppConfig):
    """A Django app of its own inside the execution layer, for its round records and its
    management command; it imports what the execution layer may import."""

    default_auto_field = "django.db.models.BigAutoField"
    name = "execution.agent"
    label = "agent"
    verbose_name = _("AI 작업 에이전트")
