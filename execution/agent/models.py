"""One agent round (TB_AGENT_ROUND): what GUARDiA gave the agent, what it changed, how the
build and the tests went. The PM's decision on a round is in the audit chain
(``validation.decided`` with the round number); export_agent_feedback joins the two."""

from __future__ import annotations

from django.db import models
from django.utils import timezone
from django.utils.translation import gettext_lazy as _


class RoundStatus(models.TextChoices):
    RUNNING = "RUNNING", _("실행 중")
    SUCCEEDED = "SUCCEEDED", _("검증 대기")  # diff, build and tests passed; the PM decides
    FAILED = "FAILED", _("실패")  # error_code and reason say why; the worktree is kept


class AgentRound(models.Model):
    task = models.ForeignKey(
        "governance.OpsTask", verbose_name=_("작업"), on_delete=models.CASCADE, related_name="agent_rounds"
    )
    number = models.PositiveSmallIntegerField(_("회차"))
    status = models.CharField(_("상태"), max_length=12, choices=RoundStatus.choices, default=RoundStatus.RUNNING)
    error_code = models.CharField(_("오류 코드"), max_length=64, blank=True)
    reason = models.TextField(_("사유"), blank=True)
    instruction = models.TextField(_("이 회차를 연 PM 지시"), blank=True)
    branch = models.CharField(_("브랜치"), max_length=160, blank=True)
    worktree = models.CharField(_("작업 트리"), max_length=500, blank=True)
    base_commit = models.CharField(_("기준 커밋"), max_length=40, blank=True)
    start_commit = models.CharField(_("시작 커밋"), max_length=40, blank=True)
    head_commit = models.CharField(_("결과 커밋"), max_length=40, blank=True)
    os_user = models.CharField(_("실행 계정"), max_length=64, blank=True)
    context = models.TextField(_("에이전트 컨텍스트 (context.md)"), blank=True)
    result = models.JSONField(_("에이전트 결과 (result.json)"), default=dict, blank=True)
    diff = models.TextField(_("변경 내용 (diff)"), blank=True)
    changed_files = models.JSONField(_("변경 파일 (git)"), default=list, blank=True)
    agent_log = models.TextField(_("에이전트 출력"), blank=True)
    build_log = models.TextField(_("빌드 출력"), blank=True)
    test_log = models.TextField(_("테스트 출력"), blank=True)
    artifact = models.JSONField(_("산출물"), default=dict, blank=True)
    started_at = models.DateTimeField(_("시작 시각"), default=timezone.now)
    finished_at = models.DateTimeField(_("종료 시각"), null=True, blank=True)

    class Meta:
        db_table = "TB_AGENT_ROUND"
        verbose_name = _("에이전트 회차 (TB_AGENT_ROUND)")
        verbose_name_plural = _("에이전트 회차 (TB_AGENT_ROUND)")
        ordering = ["task", "number"]
        constraints = [models.UniqueConstraint(fields=["task", "number"], name="one_agent_round_per_number")]

    def __str__(self) -> str:
        return f"{self.task_id} round {self.number}"
