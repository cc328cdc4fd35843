"""One change per server at a time, across every worker and gateway.

A task that is about to run takes an ExecutionLease (its claim to run, renewed by the
worker's heartbeat) and one ServerLease per server it will change, all in one transaction:
either it gets every server or none, so two tasks can never hold half of each other's
servers and wait forever. The unique server column decides a race in the database itself.

A task whose servers are busy does not occupy a worker while it waits: it is recorded as an
ExecutionWait with the reason the task page shows ("대기: srv-01 사용 중 (OPS-…)"), and when a
holder releases its servers the first waiter for them is queued again. Waiters are served by
the priority a PM set on the task (higher first), then in approval order. A task whose
requested window has not opened ("오늘 밤 10시") waits the same way without blocking anyone, and
the reaper's sweep (every minute) queues it once the window opens. Read-only inspections take
the claim (so the reaper watches them) but no server.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
from dataclasses import dataclass
from datetime import timedelta

from django.conf import settings
from django.db import IntegrityError, close_old_connections, connections, transaction
from django.db.models import Q
from django.utils import timezone

import audit
from governance import events
from governance.models import OpsTask, Status
from governance.transitions import enqueue_execution, publish_line

from .models import ExecutionLease, ExecutionWait, ServerLease

log = logging.getLogger(__name__)


def lease_seconds() -> float:
    """How long a claim lives without a heartbeat: the longest a dead worker's task stays EXECUTING
    before the reaper may act, so a few missed heartbeats (a slow database) are tolerated."""
    return float(getattr(settings, "EXECUTION_LEASE_SECONDS", 60))


def heartbeat_seconds() -> float:
    return max(0.2, lease_seconds() / 6)


def holder_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


@dataclass(frozen=True)
class Blocked:
    server: str
    holder_task: str
    waiting: bool = False  # held back by an earlier-approved waiter, not by a running task

    def text(self) -> str:
        if self.waiting:
            return f"대기: {self.server} 선행 작업 대기 중 ({self.holder_task})"
        return f"대기: {self.server} 사용 중 ({self.holder_task})"


def changed_servers(task: OpsTask) -> list:
    """The servers a run of this task may change; a read-only inspection changes none."""
    from . import playbooks

    try:
        read_only = playbooks.get(task.playbook or task.sub_type).READ_ONLY
    except Exception:  # an unknown playbook is refused by the run itself; lease what it targets
        read_only = False
    if read_only or (task.plan or {}).get("read_only"):
        return []
    return sorted(task.targets.filter(active=True), key=lambda s: s.server_id)


def _order_key(task: OpsTask):
    return task.approved_at or task.created_at


def window_open(task: OpsTask, now=None) -> bool:
    """No requested window, or it has opened."""
    return task.window_start is None or task.window_start <= (now or timezone.now())


def _served_before(wait: ExecutionWait, task: OpsTask, mine) -> bool:
    """Does this waiter come first? Higher priority first, then earlier approval, then task id."""
    return (-wait.task.priority, wait.queued_at, wait.task_id) < (-task.priority, mine, task.pk)


def acquire(task: OpsTask, servers: list, holder: str) -> Blocked | None:
    """Take the claim and every server, or nothing. Returns what blocks the task, if anything."""
    ids = [s.server_id for s in servers]
    now = timezone.now()
    mine = _order_key(task)
    try:
        with transaction.atomic():
            ahead = ExecutionWait.objects.exclude(task_id=task.pk).filter(
                Q(task__priority__gt=task.priority) | Q(task__priority=task.priority, queued_at__lte=mine)
            )
            for wait in ahead.select_related("task"):
                if _served_before(wait, task, mine) and window_open(wait.task, now):
                    shared = sorted(set(wait.servers) & set(ids))
                    if shared:
                        return Blocked(shared[0], wait.task_ref, waiting=True)
            held = ServerLease.objects.filter(server__in=servers).select_related("lease").order_by("server_ref").first()
            if held is not None:
                return Blocked(held.server_ref, held.lease.task_ref)
            lease = ExecutionLease.objects.create(
                task=task,
                task_ref=task.task_id,
                holder=holder,
                acquired_at=now,
                renewed_at=now,
                expires_at=now + timedelta(seconds=lease_seconds()),
            )
            ServerLease.objects.bulk_create(
                [ServerLease(server=s, server_ref=s.server_id, lease=lease, acquired_at=now) for s in servers]
            )
            ExecutionWait.objects.filter(task_id=task.pk).delete()
    except IntegrityError:
        # Another worker took one of the servers (or this very task) between our read and write.
        held = ServerLease.objects.filter(server__in=servers).select_related("lease").first()
        if held is not None:
            return Blocked(held.server_ref, held.lease.task_ref)
        other = ExecutionLease.objects.filter(task_id=task.pk).first()
        return Blocked(ids[0] if ids else "-", other.task_ref if other else task.task_id)
    return None


def _place_in_line(task: OpsTask, servers: list, server: str = "", holder: str = "") -> tuple[ExecutionWait, bool]:
    """Write the task's ExecutionWait row with what blocks it (nothing: it waits for its window);
    True when the row is new or its reason changed. Call inside a transaction."""
    row, created = ExecutionWait.objects.select_for_update().get_or_create(
        task=task,
        defaults={"task_ref": task.task_id, "queued_at": _order_key(task), "servers": [s.server_id for s in servers]},
    )
    changed = created or (row.blocked_server, row.blocked_by) != (server, holder)
    row.blocked_server, row.blocked_by = server, holder
    row.servers = [s.server_id for s in servers]
    if not server:
        row.dispatched_at = None  # the sweep queues it as soon as the window opens
    row.save()
    return row, changed


def wait(task: OpsTask, servers: list, blocked: Blocked) -> ExecutionWait:
    """Record (or refresh) the task's place in line; say why on its page when the reason changes."""
    with transaction.atomic():
        row, changed = _place_in_line(task, servers, blocked.server, blocked.holder_task)
        if changed:
            entry = audit.record(
                "system",
                "execution.waiting",
                task=task.task_id,
                target=blocked.server,
                payload={
                    "institution": task.system.institution.code,
                    "server": blocked.server,
                    "held_by": blocked.holder_task,
                    "text": blocked.text(),
                },
            )
            publish_line(task.task_id, entry)
            event = events.LiveEvent(
                kind="waiting",
                task_id=task.task_id,
                status=task.status,
                message=blocked.text(),
                data={"server": blocked.server, "held_by": blocked.holder_task},
            )
            events.send_on_commit(events.task_group(task.task_id), event)
            events.send_on_commit(events.CONSOLE_GROUP, event)
    return row


def scheduled_text(task: OpsTask) -> str:
    start = timezone.localtime(task.window_start).strftime("%m-%d %H:%M") if task.window_start else ""
    return f"예약: {start}에 시작 (요청한 작업 시간까지 대기)"


def hold_until_window(task: OpsTask, servers: list) -> ExecutionWait:
    """An approved task whose requested window has not opened: it waits without a worker and
    without blocking anyone; the reaper's sweep queues it once the window opens."""
    with transaction.atomic():
        row, changed = _place_in_line(task, servers)
        if changed:
            entry = audit.record(
                "system",
                "execution.scheduled",
                task=task.task_id,
                payload={
                    "institution": task.system.institution.code,
                    "window_start": task.window_start.isoformat() if task.window_start else "",
                    "text": scheduled_text(task),
                },
            )
            publish_line(task.task_id, entry)
    return row


def waiting_reason(task: OpsTask) -> str:
    """What the task page shows while the task waits for a server or its window ('' when it does not)."""
    if task.status == Status.APPROVED and not window_open(task):
        return scheduled_text(task)
    row = ExecutionWait.objects.filter(task_id=task.pk).first()
    if row is None or not row.blocked_server:
        return ""
    return Blocked(row.blocked_server, row.blocked_by).text()


def release_servers(task_pk: int, server_ids: list[str]) -> None:
    """The execution is done with these servers (before it ends): the next task may have them."""
    if ServerLease.objects.filter(lease__task_id=task_pk, server_ref__in=server_ids).delete()[0]:
        dispatch_waiters()


def release(task_pk: int, holder: str | None = None) -> None:
    """Drop the claim and every server still held; queue whoever waited for them."""
    leases = ExecutionLease.objects.filter(task_id=task_pk)
    if holder is not None:
        leases = leases.filter(holder=holder)
    leases.delete()
    dispatch_waiters()


def dispatch_waiters(resend_after: float | None = None) -> list[str]:
    """Queue, by priority then approval order, each waiter whose window is open and whose servers
    are all free and wanted by no waiter before it. ``resend_after``: only those not queued within
    that many seconds (the reaper's safety net for a lost queue message, and what starts a task
    whose window has opened)."""
    now = timezone.now()
    recent = now - timedelta(seconds=resend_after) if resend_after is not None else None
    busy = set(ServerLease.objects.values_list("server_ref", flat=True))
    claimed: set[str] = set()
    queued: list[str] = []
    for row in ExecutionWait.objects.select_related("task").order_by("-task__priority", "queued_at", "task_id"):
        wanted = set(row.servers)
        if row.task.status != Status.APPROVED:
            row.delete()
            continue
        if not window_open(row.task, now):
            continue  # holds no place in line before its window
        if not (wanted & (busy | claimed)) and (recent is None or not row.dispatched_at or row.dispatched_at < recent):
            ExecutionWait.objects.filter(pk=row.pk).update(dispatched_at=timezone.now())
            enqueue_execution(row.task)
            queued.append(row.task_ref)
        claimed |= wanted
    return queued


LOST_CLAIM_EXIT = 75  # the worker process's exit status when it stopped because its claim was taken


class Heartbeat:
    """Renews the claim from a thread of the running worker; it stops when the process dies.

    ``fence``: a worker that finds its claim gone (it stalled past the lease and the reaper took
    the task over) ends its own process at once, so it never touches a server the reaper is
    restoring. The reaper's own heartbeat does not fence (it runs inside the sweep)."""

    def __init__(self, task_pk: int, holder: str, fence: bool = False):
        self.task_pk = task_pk
        self.holder = holder
        self.fence = fence
        self.lost = False
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._beat, name=f"lease-{task_pk}", daemon=True)

    def __enter__(self) -> Heartbeat:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join(timeout=10)

    def renew(self) -> bool:
        now = timezone.now()
        updated = ExecutionLease.objects.filter(task_id=self.task_pk, holder=self.holder).update(
            renewed_at=now, expires_at=now + timedelta(seconds=lease_seconds())
        )
        return bool(updated)

    def _beat(self) -> None:
        try:
            while not self._stop.wait(heartbeat_seconds()):
                try:
                    close_old_connections()
                    if not self.renew() and not self.lost and not self._stop.is_set():
                        self.lost = True
                        log.critical(
                            "claim of task %s is no longer held by %s%s",
                            self.task_pk,
                            self.holder,
                            ": stopping this worker" if self.fence else "",
                        )
                        if self.fence:
                            logging.shutdown()
                            os._exit(LOST_CLAIM_EXIT)
                except Exception:  # a locked database for a moment: try again at the next beat
                    log.warning("lease renewal of task %s failed", self.task_pk, exc_info=True)
        finally:
            connections.close_all()


def run_leased(task_pk: int, run) -> str | None:
    """Run ``run(task_pk)`` (the execution service) holding the task's claim and servers, or wait."""
    from governance import control

    task = OpsTask.objects.select_related("system__institution").filter(pk=task_pk).first()
    if task is None or task.status != Status.APPROVED:
        ExecutionWait.objects.filter(task_id=task_pk).delete()
        return None
    if task.stop_requested or not control.execution_allowed():
        ExecutionWait.objects.filter(task_id=task_pk).delete()
        return run(task_pk)  # it will not run: the service aborts or records the block
    servers = changed_servers(task)
    if not window_open(task):
        hold_until_window(task, servers)
        log.info("%s waits for its window (%s)", task.task_id, task.window_start)
        return "SCHEDULED"
    holder = holder_id()
    blocked = acquire(task, servers, holder)
    if blocked is not None and blocked.holder_task == task.task_id:
        return None  # this task was queued twice and the other copy already runs it
    if blocked is not None:
        wait(task, servers, blocked)
        log.info("%s waits: %s", task.task_id, blocked.text())
        return "WAITING"
    try:
        with Heartbeat(task.pk, holder, fence=True):
            return run(task_pk)
    finally:
        release(task.pk, holder)
