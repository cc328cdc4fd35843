"""The SR request (TB_SR_REQUEST): one request as it arrived, what the parser read in it,
the question asked back when it could not be read, and the OpsTask it became.

A request that needs a clarification waits here (``NEEDS_CLARIFICATION``) under its
``draft_id``; the follow-up call names that id and the request is read again with the
answer. A destructive request is kept as ``REFUSED`` beside its audit entry.
"""

from __future__ import annotations

import uuid

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.validators import RegexValidator
from django.db import models
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from audit.tables import optional_ref, table_meta


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
    task = optional_ref("governance.OpsTask", _("작업"), on_delete=models.SET_NULL, related_name="intake_requests")
    created_at = models.DateTimeField(_("접수 시각"), auto_now_add=True)
    updated_at = models.DateTimeField(_("수정 시각"), auto_now=True)

    objects = IntakeRequestQuerySet.as_manager()

    Meta = table_meta("TB_SR_REQUEST", _("SR 요청 (TB_SR_REQUEST)"), ordering=["-created_at"])

    def __str__(self) -> str:
        return f"{self.draft_id} ({self.status})"


# --- the messenger (intake/messenger/) ----------------------------------------------
MATRIX_ID = RegexValidator(
    r"^@[a-z0-9._=\-/]+:[A-Za-z0-9.\-]+(:[0-9]{1,5})?$",
    _("Matrix 사용자 ID 형식: @이름:서버 (예: @lead:guardia.local)"),
)
CHAT_USER_ID = RegexValidator(r"^[A-Za-z0-9._\-]{1,64}$", _("영문, 숫자와 . _ - 만 쓸 수 있습니다"))


class ChatChannel(models.TextChoices):
    MATRIX = "MATRIX", _("Matrix (봇과 1:1 대화방)")  # the bot's direct room on the homeserver
    MATTERMOST = "MATTERMOST", _("Mattermost 웹훅")  # incoming webhook with interactive buttons
    SLACK = "SLACK", _("Slack 호환 웹훅")  # incoming webhook with Block Kit buttons
    WEBHOOK = "WEBHOOK", _("일반 JSON 웹훅")  # any HTTP receiver


class ChatWebhook(models.Model):
    """An incoming webhook of a Mattermost/Slack-compatible server (or any JSON receiver)
    that notifications are posted to: one per institution, or one for a single person."""

    name = models.CharField(_("이름"), max_length=100, unique=True)
    kind = models.CharField(_("종류"), max_length=16, choices=[c for c in ChatChannel.choices if c[0] != "MATRIX"])
    institution = optional_ref(
        "cmdb.Institution", _("기관"), related_name="chat_webhooks", help_text=_("비워 두면 개인용 웹훅입니다")
    )
    url = models.URLField(_("수신 웹훅 URL"), max_length=500)
    enabled = models.BooleanField(_("사용"), default=True)

    Meta = table_meta("TB_CHAT_WEBHOOK", _("메신저 웹훅"))

    def __str__(self) -> str:
        return f"{self.name} ({self.get_kind_display()})"


class MessengerIdentity(models.Model):
    """Who a GUARDiA user is on the messenger. The homeserver (or the chat server's signed
    request) authenticates the sender; only a mapped sender's commands are obeyed."""

    user = models.OneToOneField(
        settings.AUTH_USER_MODEL, verbose_name=_("사용자"), on_delete=models.CASCADE, related_name="messenger"
    )
    channel = models.CharField(_("알림 경로"), max_length=16, choices=ChatChannel.choices, default=ChatChannel.MATRIX)
    matrix_id = models.CharField(
        _("Matrix 사용자 ID"), max_length=255, unique=True, null=True, blank=True, validators=[MATRIX_ID]
    )
    chat_user_id = models.CharField(
        _("채팅 서버 사용자 ID"),
        max_length=64,
        blank=True,
        validators=[CHAT_USER_ID],
        help_text=_("Mattermost/Slack이 요청에 보내는 user_id"),
    )
    webhook = optional_ref(ChatWebhook, _("웹훅"), related_name="identities")
    room_id = models.CharField(_("1:1 대화방"), max_length=255, blank=True, editable=False)
    enabled = models.BooleanField(_("사용"), default=True)
    updated_at = models.DateTimeField(_("수정 시각"), auto_now=True)

    Meta = table_meta(
        "TB_MESSENGER_IDENTITY",
        _("메신저 계정"),
        constraints=[
            models.UniqueConstraint(
                fields=["chat_user_id", "webhook"],
                condition=~models.Q(chat_user_id=""),
                name="messenger_chat_user_once_per_webhook",
            )
        ],
    )

    def __str__(self) -> str:
        return f"{self.user} → {self.matrix_id or self.chat_user_id or '-'}"

    def clean(self) -> None:
        if self.channel == ChatChannel.MATRIX and not self.matrix_id:
            raise ValidationError({"matrix_id": _("Matrix로 알림을 받으려면 Matrix ID가 필요합니다")})
        if self.channel != ChatChannel.MATRIX:
            if self.webhook is None:
                raise ValidationError({"webhook": _("웹훅 경로에는 웹훅을 지정해야 합니다")})
            if self.webhook.kind != self.channel:
                raise ValidationError({"webhook": _("웹훅 종류가 알림 경로와 다릅니다")})


class OutboxQuerySet(models.QuerySet):
    def due(self, now) -> OutboxQuerySet:
        return self.filter(status=OutboxMessage.Status.PENDING, next_attempt_at__lte=now).order_by(
            "next_attempt_at", "pk"
        )

    def backlog(self) -> OutboxQuerySet:
        return self.filter(status=OutboxMessage.Status.PENDING)


class OutboxMessage(models.Model):
    """One message to one person on one messenger. Written in the transaction that caused
    it (a rolled-back decision sends nothing); sent by the bot process with retries and
    backoff; ``key`` is the idempotency key (the Matrix transaction id, the webhook's
    Idempotency-Key header), so a send repeated after a crash is not shown twice."""

    class Status(models.TextChoices):
        PENDING = "PENDING", _("대기")  # not delivered yet (new, or waiting for its next retry)
        SENT = "SENT", _("전달됨")  # the messenger accepted it

    key = models.UUIDField(_("멱등 키"), default=uuid.uuid4, unique=True, editable=False)
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, verbose_name=_("받는 사람"), on_delete=models.CASCADE, related_name="outbox"
    )
    channel = models.CharField(_("경로"), max_length=16, choices=ChatChannel.choices)
    kind = models.CharField(_("종류"), max_length=32, default="info")
    text = models.TextField(_("내용"))
    link = models.CharField(_("링크"), max_length=500, blank=True)
    task_ref = models.CharField(_("작업"), max_length=32, blank=True, db_index=True)
    plan_sha256 = models.CharField(_("보여 준 계획 해시"), max_length=64, blank=True)
    payload = models.JSONField(_("버튼/대상"), default=dict, blank=True)
    status = models.CharField(_("상태"), max_length=8, choices=Status.choices, default=Status.PENDING)
    attempts = models.PositiveIntegerField(_("시도 횟수"), default=0)
    next_attempt_at = models.DateTimeField(_("다음 시도"), default=timezone.now)
    last_error = models.CharField(_("마지막 오류"), max_length=300, blank=True)
    created_at = models.DateTimeField(_("만든 시각"), default=timezone.now)
    sent_at = models.DateTimeField(_("전달 시각"), null=True, blank=True)

    objects = OutboxQuerySet.as_manager()

    Meta = table_meta(
        "TB_MESSENGER_OUTBOX", _("메신저 발송 대기열"), indexes=[models.Index(fields=["status", "next_attempt_at"])]
    )

    def __str__(self) -> str:
        return f"{self.user} {self.kind} {self.get_status_display()}"


class ActionToken(models.Model):
    """A signed callback's server half: single use, expiring, bound to one approver, one
    step and the plan hash the message showed. The signed string carries only ``jti``."""

    class Purpose(models.TextChoices):
        APPROVE = "APPROVED", _("승인 버튼")
        REJECT = "REJECTED", _("반려 버튼")
        STEP_UP = "STEP_UP", _("재인증 결정 링크")

    jti = models.CharField(_("토큰 ID"), max_length=43, unique=True)
    group = models.UUIDField(_("같은 메시지의 버튼"), default=uuid.uuid4, db_index=True)
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, verbose_name=_("승인자"), on_delete=models.CASCADE, related_name="+"
    )
    step = models.ForeignKey(
        "governance.ApprovalStep", verbose_name=_("승인 단계"), on_delete=models.CASCADE, related_name="+"
    )
    purpose = models.CharField(_("용도"), max_length=16, choices=Purpose.choices)
    plan_sha256 = models.CharField(_("계획 해시"), max_length=64)
    expires_at = models.DateTimeField(_("만료"))
    used_at = models.DateTimeField(_("사용 시각"), null=True, blank=True)

    Meta = table_meta("TB_MESSENGER_ACTION_TOKEN", _("메신저 결정 토큰"))

    def __str__(self) -> str:
        return f"{self.purpose} {self.step_id} {self.user}"


class PhotoReading(models.Model):
    """A photo of an error screen waiting to be read (OCR runs in the worker, not in the
    request): the image is kept under DATA_DIR/intake-photos until it is read, then removed;
    what stays is the text, the error codes and the parser's suggestion."""

    class Status(models.TextChoices):
        PENDING = "PENDING", _("판독 대기")  # stored, queued for the worker
        DONE = "DONE", _("판독 완료")  # text and suggestion ready
        FAILED = "FAILED", _("판독 실패")  # the worker could not read it; error says why

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    requester = models.ForeignKey(
        settings.AUTH_USER_MODEL, verbose_name=_("요청자"), on_delete=models.CASCADE, related_name="photo_readings"
    )
    status = models.CharField(_("상태"), max_length=12, choices=Status.choices, default=Status.PENDING)
    size = models.PositiveIntegerField(_("크기(바이트)"), default=0)
    result = models.JSONField(_("판독 결과"), default=dict, blank=True)
    error = models.CharField(_("오류"), max_length=300, blank=True)
    created_at = models.DateTimeField(_("접수 시각"), auto_now_add=True)
    finished_at = models.DateTimeField(_("판독 시각"), null=True, blank=True)

    Meta = table_meta("TB_SR_PHOTO", _("오류 화면 사진 판독"), ordering=["-created_at"])

    def __str__(self) -> str:
        return f"{self.id} ({self.status})"
