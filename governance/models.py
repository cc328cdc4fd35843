"""The ticket (OpsTask, TB_OPS_TASK), its approval steps (TB_APPROVAL_FLOW), the in-app
inbox and the kill switch.

Transition methods only change ``self``; governance/services.py locks the row, calls the
transition, saves, audits and schedules follow-up work in one transaction.
"""

from __future__ import annotations

import json
import re

from django.conf import settings
from django.db import models
from django.db.models import Q
from django.utils import timezone
from django.utils.translation import gettext_lazy as _
from django_fsm import ConcurrentTransitionMixin, FSMField, transition

from audit.tables import optional_ref, table_meta, user_ref
from cmdb.models import Server, System, SystemOwner

from .text import shorten


class Status(models.TextChoices):
    RECEIVED = "RECEIVED", _("접수")  # filed, not yet parsed
    PARSED = "PARSED", _("분석 완료")  # intent, targets and parameters known
    PENDING_APPROVAL = "PENDING_APPROVAL", _("승인 대기")  # an approval step is open
    APPROVED = "APPROVED", _("승인 완료")  # every step approved; execution queued
    EXECUTING = "EXECUTING", _("실행 중")  # the engine is working on the servers
    PENDING_PM_VALIDATION = "PENDING_PM_VALIDATION", _("PM 검증 대기")  # result package awaits the PM
    COMPLETED = "COMPLETED", _("완료")  # PM accepted; requester told
    REJECTED = "REJECTED", _("반려")  # an approver said no (or the chain expired)
    CANCELLED = "CANCELLED", _("취소")  # withdrawn by the requester before execution
    ABORTED = "ABORTED", _("중단")  # kill switch
    FAILED_ROLLED_BACK = "FAILED_ROLLED_BACK", _("실패(롤백 완료)")  # failed and restored
    MANUAL_INTERVENTION_REQUIRED = "MANUAL_INTERVENTION_REQUIRED", _("수동 조치 필요")  # rollback failed / PM took over
    STATE_UNCERTAIN = "STATE_UNCERTAIN", _("상태 불확실")  # lost contact mid-step


# The seed's short codes (REC/PEN/APP/EXE/COM/ERR).
SEED_CODE = {
    Status.RECEIVED: "REC",
    Status.PARSED: "REC",
    Status.PENDING_APPROVAL: "PEN",
    Status.APPROVED: "APP",
    Status.EXECUTING: "EXE",
    Status.PENDING_PM_VALIDATION: "EXE",
    Status.COMPLETED: "COM",
}

ACTIVE_STATES = [Status.RECEIVED, Status.PARSED, Status.PENDING_APPROVAL, Status.APPROVED, Status.EXECUTING]
FINAL_STATES = [
    Status.COMPLETED,
    Status.REJECTED,
    Status.CANCELLED,
    Status.ABORTED,
    Status.FAILED_ROLLED_BACK,
]
# The states a task's kill switch applies to (every active one): before execution the task is
# aborted at once; while executing, the engine stops at the next step boundary.
STOPPABLE = ACTIVE_STATES
# The states a requester may still withdraw a task from: before it is fully approved.
WITHDRAWABLE = [Status.RECEIVED, Status.PARSED, Status.PENDING_APPROVAL]
# The permission behind a PM's word on a result: accept it, send it back, or take over by hand.
VALIDATE_RESULT = "governance.validate_result"


class Category(models.TextChoices):
    DEPLOY = "DEPLOY", _("배포")
    INFRA_CONTROL = "INFRA_CONTROL", _("인프라 제어")
    DATA = "DATA", _("데이터")
    INSPECTION = "INSPECTION", _("점검")
    CODE_CHANGE = "CODE_CHANGE", _("코드 수정")


class SubType(models.TextChoices):
    """What a task does: each value names its playbook (execution/playbooks/)."""

    APP_DEPLOY = "APP_DEPLOY", _("애플리케이션 배포")  # a WAR/JAR swapped in, old one backed up
    STATIC_SYNC = "STATIC_SYNC", _("정적 파일 동기화")  # a static tree replaced from a .tar.gz
    SERVICE_RESTART = "SERVICE_RESTART", _("서비스 재시작")  # stop, start, health check
    SSL_REPLACE = "SSL_REPLACE", _("SSL 인증서 교체")  # certificate, key and chain; the served one checked
    DATA_CLEANUP = "DATA_CLEANUP", _("데이터 정리")  # a registered data script, after its backup
    LOG_MINING = "LOG_MINING", _("로그 분석")  # read-only: error timeline and top messages
    LOG_CLEANUP = "LOG_CLEANUP", _("로그 정리")  # old files of one pattern under the log directory
    LOGROTATE = "LOGROTATE", _("로그 로테이트")  # one log copied, truncated and compressed
    MEMORY_CHECK = "MEMORY_CHECK", _("메모리 점검")  # read-only: memory use and its top processes
    CRON_MANAGE = "CRON_MANAGE", _("크론 관리")  # GUARDiA's block of the crontab, catalogue commands
    RAW_COMMAND = "RAW_COMMAND", _("직접 명령")  # commands the system's catalogue allows
    CODE_FIX = "CODE_FIX", _("코드 수정")  # a change prepared by the AI work agent


class Risk(models.TextChoices):
    LOW = "LOW", _("낮음")  # read-only inspection
    MEDIUM = "MEDIUM", _("보통")  # service restart
    HIGH = "HIGH", _("높음")  # deploy / data change
    CRITICAL = "CRITICAL", _("치명")  # infrastructure / security / raw command


class Channel(models.TextChoices):
    WEB = "WEB", _("웹 콘솔")
    PWA = "PWA", _("모바일")
    API = "API", "API"
    MESSENGER = "MESSENGER", _("메신저")
    SCHEDULE = "SCHEDULE", _("정기 점검")


def sees_all_tasks(user) -> bool:
    """PMs, security officers, auditors and admins read every task: the model's view
    permission says so (granted per role in cmdb/roles.py), never a group name."""
    return bool(user and user.is_active and user.has_perm("governance.view_opstask"))


# Parameter names whose values are secrets: shown as "****" on every page and API answer.
SECRET_NAME = re.compile(
    r"pass(word|wd|phrase)|secret|token|credential|private_?key|api_?key|authori[sz]ation", re.IGNORECASE
)
MASK = "****"


def masked(value, name: str = ""):
    """A copy of parameters with the values of secret-named keys replaced by ****."""
    if name and SECRET_NAME.search(name) and value not in (None, ""):
        return MASK
    if isinstance(value, dict):
        return {key: masked(item, str(key)) for key, item in value.items()}
    if isinstance(value, list):
        return [masked(item) for item in value]
    return value


class OpsTaskQuerySet(models.QuerySet):
    def visible_to(self, user) -> OpsTaskQuerySet:
        """Tasks a user may see: own requests, systems they own/deputise/supervise, steps
        assigned to them; PMs, security officers, auditors and admins see all."""
        if sees_all_tasks(user):
            return self
        # One subquery of ids, not joins: a join through the steps gives one row per step,
        # and the DISTINCT that would hide it breaks every count or GROUP BY built on top of
        # it. The ids are a UNION of three reads of one indexed column each: PostgreSQL
        # answers "requester = u OR system IN (…) OR id IN (…)" by reading every task.
        systems = SystemOwner.objects.filter(Q(owner=user) | Q(deputy=user) | Q(supervisor=user)).values("system_id")
        ids = (
            OpsTask.objects.filter(requester=user).order_by().values("pk")
            .union(
                OpsTask.objects.filter(system_id__in=systems).order_by().values("pk"),
                ApprovalStep.objects.filter(assigned_to=user).order_by().values("task_id"),
            )
        )  # fmt: skip
        return self.filter(pk__in=ids)


def not_stopping(task: models.Model) -> bool:
    """Transition condition: nobody has pulled the task's kill switch."""
    return isinstance(task, OpsTask) and not task.stop_requested


def is_requester(task: models.Model, user) -> bool:
    """Transition permission: the task's own requester (or a superuser) withdraws it."""
    return isinstance(task, OpsTask) and (user.pk == task.requester_id or user.is_superuser)


class OpsTask(ConcurrentTransitionMixin, models.Model):
    task_id = models.CharField(_("작업 ID"), max_length=32, unique=True, editable=False)
    category = models.CharField(_("분류"), max_length=16, choices=Category.choices)
    sub_type = models.CharField(_("작업 유형"), max_length=24, choices=SubType.choices)
    title = models.CharField(_("제목"), max_length=200)
    raw_request = models.TextField(_("요청 원문"), blank=True)
    sr_number = models.CharField(_("SR 번호"), max_length=64, blank=True, db_index=True)
    parsed = models.JSONField(_("분석 결과"), default=dict, blank=True)
    system = models.ForeignKey(System, verbose_name=_("시스템"), on_delete=models.PROTECT, related_name="tasks")
    targets = models.ManyToManyField(Server, verbose_name=_("대상 서버"), related_name="tasks", blank=True)
    parameters = models.JSONField(_("파라미터"), default=dict, blank=True)
    requester = models.ForeignKey(
        settings.AUTH_USER_MODEL, verbose_name=_("요청자"), on_delete=models.PROTECT, related_name="requested_tasks"
    )
    channel = models.CharField(_("접수 경로"), max_length=16, choices=Channel.choices, default=Channel.WEB)
    risk = models.CharField(_("위험도"), max_length=8, choices=Risk.choices)
    emergency = models.BooleanField(_("긴급"), default=False)
    urgent = models.BooleanField(_("독촉(에스컬레이션됨)"), default=False)
    playbook = models.CharField(_("플레이북"), max_length=32, blank=True)
    playbook_version = models.CharField(_("플레이북 버전"), max_length=16, blank=True)
    # The rendered execution plan (governance.plans): what every approver is shown, and
    # its SHA-256, which every decision records and the engine checks before running.
    plan = models.JSONField(_("실행 계획"), default=dict, blank=True)
    plan_sha256 = models.CharField(_("계획 해시 (SHA-256)"), max_length=64, blank=True)
    status = FSMField(_("상태"), default=Status.RECEIVED, choices=Status.choices, protected=True, db_index=True)
    current_approver = user_ref(_("현재 승인자"), on_delete=models.SET_NULL)
    stop_requested = models.BooleanField(_("중지 요청됨"), default=False)
    stop_reason = models.CharField(_("중지 사유"), max_length=300, blank=True)
    failure_reason = models.TextField(_("실패 사유"), blank=True)
    result_package = models.JSONField(_("결과 패키지"), default=dict, blank=True)
    rework_round = models.PositiveSmallIntegerField(_("재작업 회차"), default=0)
    pm_instructions = models.TextField(_("PM 지시 사항"), blank=True)
    # Set by a PM (audited): orders the execution queue, higher first, then approval time.
    priority = models.SmallIntegerField(_("우선순위"), default=0)
    # The start of the window the requester asked for ("오늘 밤 10시"): an approved task
    # waits in the queue until then.
    window_start = models.DateTimeField(_("작업 시작 예정"), null=True, blank=True)
    created_at = models.DateTimeField(_("접수 시각"), default=timezone.now, db_index=True)
    updated_at = models.DateTimeField(_("수정 시각"), auto_now=True)
    approved_at = models.DateTimeField(_("승인 시각"), null=True, blank=True)
    finished_at = models.DateTimeField(_("종료 시각"), null=True, blank=True)

    objects = OpsTaskQuerySet.as_manager()

    # Lists are read newest first and paged by keyset on (created_at, id): the first index
    # serves everyone who sees all tasks, the other two the OR of a limited view's
    # requester / system subqueries, each already in time order.
    Meta = table_meta(
        "TB_OPS_TASK",
        _("작업 (TB_OPS_TASK)"),
        ordering=["-created_at"],
        indexes=[
            models.Index(fields=["created_at", "id"], name="task_created_id"),
            models.Index(fields=["requester", "created_at"], name="task_requester_created"),
            models.Index(fields=["system", "created_at"], name="task_system_created"),
        ],
        permissions=[
            ("submit_task", "Can submit a request"),
            ("decide_step", "Can decide approval steps"),
            ("validate_result", "Can validate results (PM)"),
            ("use_kill_switch", "Can stop tasks and the whole system"),
        ],
    )

    def __str__(self) -> str:
        return self.task_id

    @property
    def seed_code(self) -> str:
        return SEED_CODE.get(self.status, "ERR")

    @property
    def is_final(self) -> bool:
        return self.status in FINAL_STATES

    @property
    def masked_parameters(self) -> dict:
        return masked(self.parameters or {})

    @property
    def parameters_display(self) -> str:
        """The parameters as readable JSON for decision pages (secrets masked; the
        attachment bookkeeping is shown as the artifact and the plan's uploads)."""
        shown = {key: value for key, value in self.masked_parameters.items() if key != "_meta"}
        return json.dumps(shown, ensure_ascii=False, indent=2, sort_keys=True) if shown else ""

    @property
    def artifact(self) -> dict | None:
        """The file this task deploys (name, size, SHA-256, version), or None."""
        parameters = self.parameters or {}
        record = parameters.get("artifact")
        if not isinstance(record, dict):
            record = {}
        sha256 = str(record.get("sha256") or parameters.get("artifact_sha256") or "")
        if not sha256:
            return None
        upload: dict = next((u for u in (self.plan or {}).get("uploads", []) if u.get("sha256") == sha256), {})
        return {
            "name": str(record.get("name") or upload.get("name") or ""),
            "size": record.get("size", upload.get("size")),
            "sha256": sha256,
            "version": str(parameters.get("version") or ""),
        }

    # --- lifecycle; bodies only change self ----------------------------------------
    @transition(field=status, source=Status.RECEIVED, target=Status.PARSED)
    def mark_parsed(self, parsed: dict) -> None:
        self.parsed = parsed

    @transition(field=status, source=Status.PARSED, target=Status.PENDING_APPROVAL)
    def request_approval(self) -> None:
        pass

    @transition(
        field=status,
        source=[Status.PARSED, Status.PENDING_APPROVAL],
        target=Status.APPROVED,
        conditions=[not_stopping],
        permission="governance.decide_step",
    )
    def approve(self) -> None:
        self.approved_at = timezone.now()
        self.current_approver = None

    @transition(field=status, source=Status.PENDING_APPROVAL, target=Status.REJECTED)
    def reject(self) -> None:
        self.current_approver = None
        self.finished_at = timezone.now()

    @transition(field=status, source=WITHDRAWABLE, target=Status.CANCELLED, permission=is_requester)
    def cancel(self) -> None:
        self.finished_at = timezone.now()

    @transition(field=status, source=Status.APPROVED, target=Status.EXECUTING, conditions=[not_stopping])
    def start_execution(self) -> None:
        pass

    @transition(field=status, source=Status.EXECUTING, target=Status.PENDING_PM_VALIDATION)
    def finish_execution(self, package: dict) -> None:
        self.result_package = package

    @transition(field=status, source=Status.EXECUTING, target=Status.FAILED_ROLLED_BACK)
    def fail_rolled_back(self, reason: str) -> None:
        self.failure_reason = reason
        self.finished_at = timezone.now()

    @transition(
        field=status,
        source=[Status.EXECUTING, Status.PENDING_PM_VALIDATION, Status.STATE_UNCERTAIN],
        target=Status.MANUAL_INTERVENTION_REQUIRED,
        permission=VALIDATE_RESULT,
    )
    def require_manual(self, reason: str) -> None:
        self.failure_reason = reason

    @transition(field=status, source=Status.EXECUTING, target=Status.STATE_UNCERTAIN)
    def lose_contact(self, reason: str) -> None:
        self.failure_reason = reason

    @transition(field=status, source=STOPPABLE, target=Status.ABORTED, permission="governance.use_kill_switch")
    def abort(self, reason: str) -> None:
        self.stop_reason = reason
        self.finished_at = timezone.now()

    @transition(field=status, source=Status.PENDING_PM_VALIDATION, target=Status.COMPLETED, permission=VALIDATE_RESULT)
    def complete(self) -> None:
        self.finished_at = timezone.now()

    @transition(field=status, source=Status.PENDING_PM_VALIDATION, target=Status.APPROVED, permission=VALIDATE_RESULT)
    def send_back(self, instructions: str) -> None:
        """PM rejects the result package: rework with instructions, round counted."""
        self.pm_instructions = instructions
        self.rework_round += 1


class StepStatus(models.TextChoices):
    PENDING = "P", _("대기")
    APPROVED = "A", _("승인")
    REJECTED = "R", _("반려")
    SKIPPED = "S", _("생략")  # the task ended before this step was reached


class Routing(models.TextChoices):
    """How a step reached whoever holds it."""

    DIRECT = "DIRECT", _("직접")  # first in line: the system's owner, or one of the step's role
    DELEGATED = "DELEGATED", _("대리")  # the owner's deputy, the owner being away or excluded
    ESCALATED = "ESCALATED", _("상향")  # up the ladder: no answer in time, or no one below could act
    AUTO = "AUTO", _("자동 승인")


class ApprovalStepQuerySet(models.QuerySet):
    def open(self) -> ApprovalStepQuerySet:
        return self.filter(status=StepStatus.PENDING, activated_at__isnull=False)


class ApprovalStep(models.Model):
    task = models.ForeignKey(OpsTask, verbose_name=_("작업"), on_delete=models.CASCADE, related_name="steps")
    step_order = models.PositiveSmallIntegerField(_("단계"))
    role = models.CharField(_("역할"), max_length=24)  # owner / pm / security_officer / emergency
    assigned_to = user_ref(_("배정된 승인자"), related_name="assigned_steps")
    original_owner = user_ref(_("원 담당자"))
    actual_approver = user_ref(_("실제 승인자"))
    routing = models.CharField(_("배정 경로"), max_length=10, choices=Routing.choices, default=Routing.DIRECT)
    escalation_level = models.PositiveSmallIntegerField(_("상향 단계"), default=0)  # 0 owner, 1 deputy, 2 supervisor
    status = models.CharField(
        _("상태"), max_length=1, choices=StepStatus.choices, default=StepStatus.PENDING, db_index=True
    )
    activated_at = models.DateTimeField(_("시작 시각"), null=True, blank=True)
    sla_deadline = models.DateTimeField(_("응답 기한"), null=True, blank=True, db_index=True)
    reminded_at = models.DateTimeField(_("독촉 시각"), null=True, blank=True)
    # The decision: when, and the approver's words (required for a rejection).
    decided_at = models.DateTimeField(_("결정 시각"), null=True, blank=True)
    comments = models.TextField(_("의견"), blank=True)

    objects = ApprovalStepQuerySet.as_manager()

    Meta = table_meta(
        "TB_APPROVAL_FLOW",
        _("승인 단계 (TB_APPROVAL_FLOW)"),
        ordering=["task", "step_order"],
        constraints=[models.UniqueConstraint(fields=["task", "step_order"], name="one_step_per_order")],
        indexes=[
            models.Index(fields=["status", "sla_deadline"]),
            # visible_to's subquery "tasks with a step assigned to this user", read from the index alone
            models.Index(fields=["assigned_to", "task"], name="step_assignee_task"),
        ],
    )

    def __str__(self) -> str:
        return f"{self.task.task_id} step {self.step_order} ({self.role})"


class Notification(models.Model):
    """The in-app inbox: every notification, whatever adapter also carried it."""

    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, verbose_name=_("받는 사람"), on_delete=models.CASCADE, related_name="notifications"
    )
    task = optional_ref(OpsTask, _("작업"), on_delete=models.CASCADE, related_name="notifications")
    kind = models.CharField(_("종류"), max_length=32, default="info")
    message = models.TextField(_("내용"))
    actions = models.JSONField(_("버튼"), default=list, blank=True)
    link = models.CharField(_("링크"), max_length=300, blank=True)
    created_at = models.DateTimeField(_("시각"), default=timezone.now, db_index=True)
    read_at = models.DateTimeField(_("읽은 시각"), null=True, blank=True)

    # (user, created_at): the inbox, newest first, paged by keyset without a sort.
    Meta = table_meta(
        "TB_NOTIFICATION",
        _("알림 (TB_NOTIFICATION)"),
        ordering=["-created_at"],
        indexes=[
            models.Index(fields=["user", "read_at"]),
            models.Index(fields=["user", "created_at", "id"], name="note_user_created"),
        ],
    )

    def __str__(self) -> str:

        return f"{self.user}: {shorten(self.message, 40)}"


class GlobalStop(models.Model):
    """The global kill switch: one row. While engaged no execution starts."""

    id = models.PositiveSmallIntegerField(_("ID"), primary_key=True, default=1)
    engaged = models.BooleanField(_("정지 중"), default=False)
    reason = models.CharField(_("사유"), max_length=300, blank=True)
    engaged_by = models.CharField(_("정지한 사람"), max_length=150, blank=True)
    engaged_at = models.DateTimeField(_("정지 시각"), null=True, blank=True)
    requires_ack = models.BooleanField(_("관리자 확인 필요"), default=False)  # set by an audit-chain break

    Meta = table_meta("TB_GLOBAL_STOP", _("전체 정지"))


class TaskSequence(models.Model):
    """Per-day counter behind task ids like OPS-20260523-001 (row locked while issuing)."""

    day = models.DateField(_("날짜"), primary_key=True)
    last = models.PositiveIntegerField(_("마지막 번호"), default=0)

    Meta = table_meta("TB_TASK_SEQUENCE", _("작업 번호 순서"))


class StatisticsRollup(models.Model):
    """Tasks counted per server-zone month of filing, system, category and status, for the
    statistics page of the roles that see every task. Every status change (a transition)
    and every escalation moves a task's count between rows (governance/rollup.py, which
    builds and maintains them). Keyed by system, not institution, so a system that moves
    between institutions is counted under its current one when the page reads the rows.
    Which tasks are counted is said by StatisticsRollupState."""

    month = models.DateField(_("월"))
    system = models.ForeignKey(System, verbose_name=_("시스템"), on_delete=models.CASCADE, related_name="+")
    category = models.CharField(_("분류"), max_length=16)
    status = models.CharField(_("상태"), max_length=32)
    tasks = models.PositiveIntegerField(_("작업 수"), default=0)
    approved = models.PositiveIntegerField(_("승인된 작업 수"), default=0)
    with_steps = models.PositiveIntegerField(_("승인 단계가 있는 작업 수"), default=0)
    escalated = models.PositiveIntegerField(_("상향된 작업 수"), default=0)

    Meta = table_meta(
        "TB_STATISTICS_ROLLUP",
        _("통계 집계"),
        constraints=[
            models.UniqueConstraint(fields=["month", "system", "category", "status"], name="statistics_rollup_key")
        ],
    )


class StatisticsRollupState(models.Model):
    """One row: the rollup counts every task filed before ``through`` (a server-zone first of
    the month); tasks filed since are counted live."""

    id = models.PositiveSmallIntegerField(_("ID"), primary_key=True, default=1)
    through = models.DateField(_("집계 기준일"), null=True, blank=True)
    built_at = models.DateTimeField(_("집계 시각"), null=True, blank=True)

    Meta = table_meta("TB_STATISTICS_ROLLUP_STATE", _("통계 집계 상태"))
