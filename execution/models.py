"""What the engine did: one Execution per run of a task, one ServerRun per server
(TB_DEPLOY_HISTORY, the deploy history), one StepResult per remote command.

Rows are written by the engine's orchestrating thread only (the SSH worker threads
hand their results over a queue), so a run never contends with itself for SQLite's
write lock. Plus InspectionSchedule: recurring read-only playbooks.
"""

from __future__ import annotations

import os
import socket
from typing import ClassVar

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from audit.tables import optional_ref, table_meta
from cmdb.models import Server, System


def this_gateway() -> str:
    """The site gateway this process works for (GUARDIA_GATEWAY; "" for the central workers)."""
    return settings.GATEWAY


def this_worker() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


class Outcome(models.TextChoices):
    RUNNING = "RUNNING", _("실행 중")
    SUCCEEDED = "SUCCEEDED", _("성공")  # every server done and healthy; PM validation next
    FAILED_ROLLED_BACK = "FAILED_ROLLED_BACK", _("실패(롤백 완료)")
    MANUAL_INTERVENTION_REQUIRED = "MANUAL_INTERVENTION_REQUIRED", _("수동 조치 필요")  # a rollback failed
    STATE_UNCERTAIN = "STATE_UNCERTAIN", _("상태 불확실")  # lost contact mid-step
    ABORTED = "ABORTED", _("중단")  # kill switch; current group restored


class Execution(models.Model):
    """One run of a playbook over a task's targets (or of an inspection schedule)."""

    task = optional_ref("governance.OpsTask", _("작업"), on_delete=models.CASCADE, related_name="executions")
    inspection = optional_ref(
        "InspectionSchedule", _("정기 점검"), on_delete=models.SET_NULL, related_name="executions"
    )
    # The task id as text too, so the history survives a deleted task row.
    task_ref = models.CharField(_("작업 ID"), max_length=32, blank=True, db_index=True)
    playbook = models.CharField(_("플레이북"), max_length=32)
    playbook_version = models.CharField(_("플레이북 버전"), max_length=16)
    outcome = models.CharField(
        _("결과"), max_length=32, choices=Outcome.choices, default=Outcome.RUNNING, db_index=True
    )
    reason = models.TextField(_("사유"), blank=True)
    # The rollout strategy actually used (see execution.rolling.RolloutStrategy).
    canary_share = models.FloatField(
        _("카나리 비율"), default=0.01, validators=[MinValueValidator(0.0), MaxValueValidator(1.0)]
    )
    batch_size = models.PositiveIntegerField(_("배치 크기"), default=50, validators=[MinValueValidator(1)])
    max_parallel = models.PositiveIntegerField(
        _("최대 동시 실행"), default=16, validators=[MinValueValidator(1), MaxValueValidator(256)]
    )
    failures_allowed = models.PositiveIntegerField(_("허용 실패 수"), default=0)
    safety_gate = models.BooleanField(_("그룹 간 안전 확인"), default=True)
    rollback_all = models.BooleanField(_("실패 시 완료된 모든 그룹 롤백"), default=False)
    plan = models.JSONField(_("실행 계획"), default=list, blank=True)  # [[server_id, ...], ...] per group
    summary = models.JSONField(_("요약"), default=dict, blank=True)
    started_at = models.DateTimeField(_("시작 시각"), default=timezone.now)
    finished_at = models.DateTimeField(_("종료 시각"), null=True, blank=True)
    # Where it ran, stamped by the process that creates the row: the site gateway's name ("" for
    # the central workers) and the worker's host:pid.
    gateway = models.CharField(_("게이트웨이"), max_length=32, blank=True, db_index=True, default=this_gateway)
    worker = models.CharField(_("워커"), max_length=128, blank=True, default=this_worker)

    Meta = table_meta(
        "TB_EXECUTION",
        _("실행 (TB_DEPLOY_HISTORY)"),
        plural=_("실행 이력 (TB_DEPLOY_HISTORY)"),
        ordering=["-started_at"],
    )

    def __str__(self) -> str:
        return f"{self.task_ref or 'inspection'} {self.playbook} v{self.playbook_version} ({self.outcome})"

    def clean(self) -> None:
        if not self.task_id and not self.inspection_id:
            raise ValidationError({"task": _("실행은 작업 또는 정기 점검 일정에 속해야 합니다")})


class RunState(models.TextChoices):
    PENDING = "PENDING", _("대기")
    RUNNING = "RUNNING", _("실행 중")
    SUCCEEDED = "SUCCEEDED", _("성공")
    FAILED = "FAILED", _("실패")  # forward steps failed (rollback follows)
    ROLLED_BACK = "ROLLED_BACK", _("롤백 완료")  # restored and healthy on the old version
    ROLLBACK_FAILED = "ROLLBACK_FAILED", _("롤백 실패")
    UNCERTAIN = "UNCERTAIN", _("상태 불확실")
    ABORTED = "ABORTED", _("중단")
    REFUSED = "REFUSED", _("거부")  # host key, sanitizer, pre-check: nothing was changed


class ServerRun(models.Model):
    """TB_DEPLOY_HISTORY: what happened on one server in one execution."""

    execution = models.ForeignKey(
        Execution, verbose_name=_("실행"), on_delete=models.CASCADE, related_name="server_runs"
    )
    server = models.ForeignKey(
        Server, verbose_name=_("서버"), null=True, on_delete=models.SET_NULL, related_name="runs"
    )
    server_ref = models.CharField(_("서버 ID"), max_length=64)  # survives deletion of the CMDB row
    group_index = models.PositiveIntegerField(_("그룹"), default=0)
    tier = models.CharField(_("단계(티어)"), max_length=16, default="batch")  # canary / batch
    playbook_version = models.CharField(_("플레이북 버전"), max_length=16)
    state = models.CharField(
        _("상태"), max_length=16, choices=RunState.choices, default=RunState.PENDING, db_index=True
    )
    message = models.TextField(_("메시지"), blank=True)
    health = models.JSONField(_("헬스 체크"), default=dict, blank=True)
    log_tail = models.TextField(_("로그 끝부분"), blank=True)  # catalina.out tail dumped after a failure
    started_at = models.DateTimeField(_("시작 시각"), null=True, blank=True)
    finished_at = models.DateTimeField(_("종료 시각"), null=True, blank=True)

    Meta = table_meta(
        "TB_DEPLOY_HISTORY",
        _("서버별 실행"),
        ordering=["execution", "group_index", "server_ref"],
        constraints=[models.UniqueConstraint(fields=["execution", "server_ref"], name="one_run_per_server")],
    )

    def __str__(self) -> str:
        return f"{self.server_ref}: {self.state}"


class StepResult(models.Model):
    class Phase(models.TextChoices):
        FORWARD = "forward", _("적용")
        ROLLBACK = "rollback", _("롤백")
        CHECK = "check", _("점검")
        HOOK = "hook", _("드레인")

    class State(models.TextChoices):
        OK = "OK", "OK"
        FAILED = "FAILED", _("실패")
        TIMEOUT = "TIMEOUT", _("시간 초과")
        BLOCKED = "BLOCKED", _("차단")  # refused by the sanitizer, never sent
        LOST = "LOST", _("연결 끊김")
        KILLED = "KILLED", _("중지됨")  # kill switch killed the remote process group

    server_run = models.ForeignKey(
        ServerRun, verbose_name=_("서버 실행"), on_delete=models.CASCADE, related_name="steps"
    )
    seq = models.PositiveIntegerField(_("순번"))
    name = models.CharField(_("단계명"), max_length=64)
    phase = models.CharField(_("국면"), max_length=10, choices=Phase.choices, default=Phase.FORWARD)
    command = models.TextField(_("명령"), blank=True)  # redacted
    exit_code = models.IntegerField(_("종료 코드"), null=True, blank=True)
    output_excerpt = models.TextField(_("출력 발췌"), blank=True)
    output_sha256 = models.CharField(_("출력 해시 (SHA-256)"), max_length=64, blank=True)
    duration_ms = models.PositiveIntegerField(_("소요 시간(ms)"), default=0)
    state = models.CharField(_("상태"), max_length=8, choices=State.choices, default=State.OK)
    started_at = models.DateTimeField(_("시작 시각"), default=timezone.now)

    Meta = table_meta("TB_STEP_RESULT", _("단계 결과"), ordering=["server_run", "seq"])

    def __str__(self) -> str:
        return f"{self.name}: {self.state}"


class InspectionKind(models.TextChoices):
    MEMORY_CHECK = "MEMORY_CHECK", _("메모리 점검")
    DISK_CHECK = "DISK_CHECK", _("디스크 점검")
    ERROR_COUNT = "ERROR_COUNT", _("오류 로그 건수")


class InspectionSchedule(models.Model):
    """A recurring read-only check: a pre-approved standard change, every run audited.

    thresholds: MEMORY_CHECK {"max_used_percent": 90}; DISK_CHECK {"min_free_mb": 1024};
    ERROR_COUNT {"max_errors": 10} (matches of the system's error pattern in the log tail).
    """

    name = models.CharField(_("이름"), max_length=100, unique=True)
    system = models.ForeignKey(System, verbose_name=_("시스템"), on_delete=models.CASCADE, related_name="inspections")
    servers = models.ManyToManyField(
        Server, verbose_name=_("서버"), blank=True, help_text=_("비우면 시스템의 사용 중인 모든 서버")
    )
    kind = models.CharField(_("점검 종류"), max_length=16, choices=InspectionKind.choices)
    thresholds = models.JSONField(_("임계치"), default=dict)
    interval_minutes = models.PositiveIntegerField(_("주기(분)"), default=60, validators=[MinValueValidator(1)])
    enabled = models.BooleanField(_("사용"), default=True)
    last_run_at = models.DateTimeField(_("마지막 실행"), null=True, blank=True)
    next_run_at = models.DateTimeField(_("다음 실행"), default=timezone.now, db_index=True)
    last_result = models.JSONField(_("마지막 결과"), default=dict, blank=True)

    Meta = table_meta("TB_INSPECTION_SCHEDULE", _("정기 점검 일정"), ordering=["name"])

    def __str__(self) -> str:
        return self.name

    REQUIRED_THRESHOLD: ClassVar[dict[str, str]] = {
        InspectionKind.MEMORY_CHECK: "max_used_percent",
        InspectionKind.DISK_CHECK: "min_free_mb",
        InspectionKind.ERROR_COUNT: "max_errors",
    }

    def clean(self) -> None:
        key = self.REQUIRED_THRESHOLD.get(self.kind)
        value = (self.thresholds or {}).get(key) if key else None
        if key and not isinstance(value, int | float):
            raise ValidationError({"thresholds": _("'%(key)s'에 숫자가 필요합니다") % {"key": key}})

    def target_servers(self):
        chosen = self.servers.filter(active=True)
        if chosen.exists():
            return chosen.with_related()
        return Server.objects.filter(system=self.system, active=True).with_related()


class ExecutionLeaseQuerySet(models.QuerySet):
    def expired(self, now=None):
        return self.filter(expires_at__lt=now or timezone.now())


class ExecutionLease(models.Model):
    """A task's claim to run, held by one worker and renewed by its heartbeat.

    Created before the task leaves APPROVED and deleted only after governance has been told
    how the run ended, so a task that is EXECUTING always has either a live holder or an
    expired lease the reaper recovers. Its ServerLease rows are the servers it may change."""

    task = models.OneToOneField(
        "governance.OpsTask", verbose_name=_("작업"), on_delete=models.CASCADE, related_name="execution_lease"
    )
    task_ref = models.CharField(_("작업 ID"), max_length=32)
    holder = models.CharField(_("보유 워커"), max_length=128)  # host:pid of the worker (or the reaper)
    acquired_at = models.DateTimeField(_("획득 시각"), default=timezone.now)
    renewed_at = models.DateTimeField(_("갱신 시각"), default=timezone.now)
    expires_at = models.DateTimeField(_("만료 시각"), db_index=True)
    recoveries = models.PositiveIntegerField(_("복구 시도 횟수"), default=0)

    objects = ExecutionLeaseQuerySet.as_manager()

    Meta = table_meta("TB_EXECUTION_LEASE", _("실행 임대"))

    def __str__(self) -> str:
        return f"{self.task_ref} @ {self.holder} (until {self.expires_at:%H:%M:%S})"


class ServerLease(models.Model):
    """One change per server at a time: the unique server column makes a second holder
    impossible in the database itself, whichever worker or gateway asks."""

    server = models.OneToOneField(Server, verbose_name=_("서버"), on_delete=models.CASCADE, related_name="lease")
    server_ref = models.CharField(_("서버 ID"), max_length=64)
    lease = models.ForeignKey(
        ExecutionLease, verbose_name=_("실행 임대"), on_delete=models.CASCADE, related_name="servers"
    )
    acquired_at = models.DateTimeField(_("획득 시각"), default=timezone.now)

    Meta = table_meta("TB_SERVER_LEASE", _("서버 임대"))

    def __str__(self) -> str:
        return f"{self.server_ref} → {self.lease.task_ref}"


class ExecutionWait(models.Model):
    """An approved task waiting for servers another task holds; served in approval order."""

    task = models.OneToOneField(
        "governance.OpsTask", verbose_name=_("작업"), on_delete=models.CASCADE, related_name="execution_wait"
    )
    task_ref = models.CharField(_("작업 ID"), max_length=32)
    queued_at = models.DateTimeField(_("승인 시각"), db_index=True)  # the order key: first approved, first served
    servers = models.JSONField(_("대상 서버"), default=list)
    blocked_server = models.CharField(_("사용 중인 서버"), max_length=64, blank=True)
    blocked_by = models.CharField(_("사용 중인 작업"), max_length=32, blank=True)
    since = models.DateTimeField(_("대기 시작"), default=timezone.now)
    dispatched_at = models.DateTimeField(_("재시도 요청 시각"), null=True, blank=True)

    Meta = table_meta("TB_EXECUTION_WAIT", _("실행 대기"), ordering=["queued_at", "task_id"])

    def __str__(self) -> str:
        return f"{self.task_ref} waits for {self.blocked_server} ({self.blocked_by})"
