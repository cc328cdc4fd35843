"""The SR request (TB_SR_REQUEST): one request as it arrived, what the parser read in it,
the question asked back when it could not be read, and the OpsTask it became.

A request that needs a clarification waits here (``NEEDS_CLARIFICATION``) under its
``draft_id``; the follow-up call names that id and the request is read again with the
answer. A destructive request is kept as ``REFUSED`` beside its audit entry.
"""

from __future__ import annotations

import uuid

from django.conf import settings
from django.db import models
from django.utils.translation import gettext_lazy as _


class IntakeRequestQuerySet(models.QuerySet):
    def for_user(self, user) -> IntakeRequestQuerySet:
        """A caller sees only their own requests (drafts carry unfiled text)."""
        if not (user and user.is_authenticated and user.is_active):
            return self.none()
        return self.filter(requester=user)


class IntakeRequest(models.Model):
    class Status(models.TextChoices):
        NEEDS_CLARIFICATION = "NEEDS_CLARIFICATION", _("확인 필요")  # waiting for the requester's answer
        FILED = "FILED", _("접수됨")  # became an OpsTask
        REFUSED = "REFUSED", _("거부됨")  # destructive: refused, audited, owner and PM alerted

    draft_id = models.UUIDField(_("요청 참조 ID"), default=uuid.uuid4, unique=True, editable=False)
    requester = models.ForeignKey(
        settings.AUTH_USER_MODEL, verbose_name=_("요청자"), on_delete=models.PROTECT, related_name="intake_requests"
    )
    channel = models.CharField(_("접수 경로"), max_length=16)
    raw_text = models.TextField(_("요청 원문"))
    sr_number = models.CharField(_("SR 번호"), max_length=64, blank=True)
    parsed = models.JSONField(_("분석 결과"), default=dict, blank=True)
    clarification = models.JSONField(_("확인 질문"), default=dict, blank=True)
    status = models.CharField(_("상태"), max_length=24, choices=Status.choices, db_index=True)
    system_code = models.CharField(_("시스템 코드"), max_length=64, blank=True)
    task = models.ForeignKey(
        "governance.OpsTask",
        verbose_name=_("작업"),
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="intake_requests",
    )
    created_at = models.DateTimeField(_("접수 시각"), auto_now_add=True)
    updated_at = models.DateTimeField(_("수정 시각"), auto_now=True)

    objects = IntakeRequestQuerySet.as_manager()

    class Meta:
        db_table = "TB_SR_REQUEST"
        ordering = ["-created_at"]
        verbose_name = _("SR 요청 (TB_SR_REQUEST)")
        verbose_name_plural = _("SR 요청 (TB_SR_REQUEST)")

    def __str__(self) -> str:
        return f"{self.draft_id} ({self.status})"
