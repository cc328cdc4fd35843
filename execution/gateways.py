"""Site gateways: worker clusters inside networks the central workers cannot reach.

A gateway is a CMDB row (``cmdb.Gateway``); an institution, or one server on another network
segment, is assigned to it. ``GUARDIA_GATEWAY=A manage.py qcluster`` runs a django-q2 cluster
whose cluster name is gateway A's queue, on the same broker (ORM or Redis) as everyone else,
so it takes only A's work. What runs where:

- **Routing.** Governance queues a run by task name through ``EXECUTION_QUEUE``
  (``queue_for_task``): the queue of the gateway of the task's servers, or the central queue
  when none is assigned. A task whose servers span two gateways (or a gateway and the central
  workers) is refused at filing, naming ``targets`` (``check_single_gateway``, called by the
  plan renderer, so the same check refuses it again before it runs if the CMDB changed): one
  task, one network, one worker cluster that can reach every server it touches. The requester
  files one task per gateway.
- **Recovery.** A gateway recovers its own dead executions (``recovers_here``: the reaper's
  sweep skips tasks of other gateways), because only it can reach their servers; a task left
  by a killed gateway reaches a definite state when the gateway is back.
- **Heartbeat.** Each worker process of a gateway cluster starts a thread (django-q2's
  ``post_spawn`` signal) that stamps ``Gateway.heartbeat_at`` every
  ``GATEWAY_HEARTBEAT_SECONDS``, queues the gateway's reaper sweep and its institutions' due
  inspections on its own queue every ``GATEWAY_SWEEP_SECONDS`` (one per interval across its
  workers, decided by a conditional update), and watches the other gateways.
- **Alarm.** ``raise_silent_alarms`` (every heartbeat of every gateway, and the central
  reaper's minute) marks a gateway silent once its heartbeat is older than
  ``GATEWAY_SILENT_SECONDS``: one audit entry and one alert to the admins per outage (the
  conditional update on ``silent_since`` decides who raises it); the first heartbeat after it
  clears the mark and audits the return.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from django.conf import settings
from django.db import close_old_connections
from django.db.models import Q
from django.utils import timezone
from django.utils.translation import gettext as _

import audit
from cmdb.models import Gateway, Server
from governance.compiled import CompiledValues
from governance.models import OpsTask
from governance.notify import Message, notify
from governance.queries import visible_tasks
from governance.transitions import users_in

from .errors import ParameterError
from .models import Execution, Outcome, this_gateway, this_worker

log = logging.getLogger(__name__)
CENTRAL = ""  # the gateway name of the central workers


def current() -> str:
    """The gateway this process works for ("" for the central workers)."""
    return this_gateway()


def queue_name(gateway: str) -> str | None:
    """The django-q2 cluster (queue) name of a gateway; None is the central cluster's."""
    return f"{settings.Q_CLUSTER['name']}-gw-{gateway}" if gateway else None


def _gateway_names(rows: Iterable[tuple[str | None, str | None]]) -> set[str]:
    """From (server's gateway, its institution's gateway) rows: the server's own (its network
    segment), else its institution's, else "" (central)."""
    return {own or institution or CENTRAL for own, institution in rows}


def gateways_of(servers: Iterable[Server]) -> set[str]:
    """The gateway names the servers are reached through (see _gateway_names)."""
    pks = [s.pk for s in servers]
    return _gateway_names(
        Server.objects.filter(pk__in=pks).values_list("gateway__name", "system__institution__gateway__name")
    )


def label(gateway: str) -> str:
    return gateway or _("중앙")


def check_single_gateway(servers: Iterable[Server]) -> None:
    """Refuse a target set that spans two gateways: no single worker cluster reaches them all."""
    names = gateways_of(servers)
    if len(names) > 1:
        spans = ", ".join(label(n) for n in sorted(names))
        raise ParameterError(
            {
                "targets": _(
                    "대상 서버가 여러 게이트웨이에 걸쳐 있습니다 (%(gateways)s): 게이트웨이마다 따로 요청하세요"
                )
                % {"gateways": spans}
            }
        )


# A task's servers' gateways, read from the CMDB as it is now in one query compiled once (queuing
# an approved run asks it on every final approval): the server's own, else its institution's.
_TARGET_GATEWAYS = CompiledValues(
    lambda task: OpsTask.targets.through.objects.filter(opstask_id=task).values_list(
        "server__gateway__name", "server__system__institution__gateway__name"
    ),
    "task",
)


def task_gateway(task: OpsTask) -> str:
    """The gateway that runs a task: its servers' one gateway. Were they to span several (the CMDB
    changed after filing), the institution's; the plan rendered before the run then refuses it."""
    names = _gateway_names(_TARGET_GATEWAYS.rows(task=task.pk))
    if len(names) == 1:
        return names.pop()
    gateway = task.system.institution.gateway
    return gateway.name if gateway is not None else CENTRAL


def queue_for_task(task: OpsTask) -> str | None:
    """EXECUTION_QUEUE: the django-q2 cluster a task's run is queued on."""
    return queue_name(task_gateway(task))


def inspections_here() -> Q:
    """The inspection schedules this process runs: those of its gateway's institutions (the
    central workers: institutions without a gateway)."""
    name = current()
    if not name:
        return Q(system__institution__gateway__isnull=True)
    return Q(system__institution__gateway__name=name)


def recovers_here(task: OpsTask) -> bool:
    """Whether this process's reaper recovers the task: only the gateway that ran it reaches its servers."""
    return task_gateway(task) == current()


# --- heartbeat, sweep and alarm -------------------------------------------------------------


def beat(name: str, now: datetime | None = None) -> bool:
    """One heartbeat of gateway ``name`` from this process; False when the CMDB has no such gateway."""
    now = now or timezone.now()
    if not Gateway.objects.filter(name=name).update(heartbeat_at=now, heartbeat_by=this_worker()):
        log.error("GUARDIA_GATEWAY=%s is not a gateway in the CMDB: no heartbeat written", name)
        return False
    if Gateway.objects.filter(name=name, silent_since__isnull=False).update(silent_since=None):
        audit.record(
            "system",
            "gateway.back",
            target=name,
            payload={"gateway": name, "worker": this_worker(), "text": f"게이트웨이 {name} 응답 재개"},
        )
    return True


def queue_sweep_if_due(name: str, now: datetime | None = None) -> bool:
    """Queue this gateway's reaper sweep and its due inspections on its own queue, once per
    GATEWAY_SWEEP_SECONDS across all its workers (the conditional update picks one)."""
    from django_q.tasks import async_task

    now = now or timezone.now()
    due = now - timedelta(seconds=settings.GATEWAY_SWEEP_SECONDS)
    won = Gateway.objects.filter(name=name).filter(Q(sweep_queued_at__isnull=True) | Q(sweep_queued_at__lt=due))
    if not won.update(sweep_queued_at=now):
        return False
    async_task("execution.tasks.reap_executions", cluster=queue_name(name), task_name=f"reap-{name}")
    async_task("execution.tasks.run_inspections", cluster=queue_name(name), task_name=f"inspect-{name}")
    return True


def raise_silent_alarms(now: datetime | None = None) -> list[str]:
    """Mark every gateway whose heartbeat stopped more than GATEWAY_SILENT_SECONDS ago as silent,
    once per outage: an audit entry and an alert to the admins. Returns the names alarmed now."""
    now = now or timezone.now()
    limit = now - timedelta(seconds=settings.GATEWAY_SILENT_SECONDS)
    raised = []
    for gateway in Gateway.objects.filter(heartbeat_at__lt=limit, silent_since__isnull=True):
        claimed = Gateway.objects.filter(pk=gateway.pk, heartbeat_at=gateway.heartbeat_at, silent_since__isnull=True)
        if not claimed.update(silent_since=now):
            continue  # it beat again, or another watcher raised the alarm
        assert gateway.heartbeat_at is not None
        age = int((now - gateway.heartbeat_at).total_seconds())
        text = f"게이트웨이 {gateway.name} 응답 없음: 마지막 하트비트 {age}초 전 ({gateway.heartbeat_by or '-'})"
        audit.record(
            "system",
            "gateway.silent",
            target=gateway.name,
            payload={"gateway": gateway.name, "heartbeat_at": gateway.heartbeat_at.isoformat(), "text": text},
        )
        for person in users_in("admin"):
            notify(person, Message(text, kind="alert", link=f"{settings.BASE_URL}/execution/gateways/"))
        raised.append(gateway.name)
    return raised


def tick(name: str) -> None:
    """What a gateway worker's heartbeat thread does each period."""
    if beat(name):
        queue_sweep_if_due(name)
    raise_silent_alarms()


def _beat_forever(name: str) -> None:
    while True:
        close_old_connections()
        try:
            tick(name)
        except Exception:  # a database hiccup must not end the heartbeat for good
            log.exception("gateway %s heartbeat failed", name)
        time.sleep(settings.GATEWAY_HEARTBEAT_SECONDS)


_heartbeat_started = False


def start_heartbeat(sender=None, **kwargs) -> None:
    """django-q2 ``post_spawn`` receiver: in each worker process of a gateway cluster, one daemon
    thread that beats for as long as the process lives (a killed worker stops beating)."""
    global _heartbeat_started
    name = current()
    if not name or _heartbeat_started:
        return
    _heartbeat_started = True
    threading.Thread(target=_beat_forever, args=(name,), name=f"gateway-{name}-heartbeat", daemon=True).start()


# --- the console -----------------------------------------------------------------------------


@dataclass
class GatewayStatus:
    name: str
    description: str
    heartbeat_at: datetime | None
    heartbeat_by: str
    age_seconds: int | None
    silent: bool
    queue_depth: int | None
    running: list[str] = field(default_factory=list)


def queue_depth(gateway: str) -> int | None:
    """Messages waiting on a gateway's queue (None when the broker cannot be asked)."""
    from django_q.brokers import get_broker

    try:
        return get_broker(queue_name(gateway)).queue_size()
    except Exception:  # the console must render while Redis is down; that shows as "-"
        log.warning("queue size of gateway %r unavailable", gateway, exc_info=True)
        return None


def statuses(user, now: datetime | None = None) -> list[GatewayStatus]:
    """Every gateway (and the central workers) with heartbeat age, queue depth and the running
    executions the user may see."""
    now = now or timezone.now()
    limit = settings.GATEWAY_SILENT_SECONDS
    running: dict[str, list[str]] = {}
    rows = (
        Execution.objects.filter(outcome=Outcome.RUNNING, task__in=visible_tasks(user))
        .order_by("started_at")
        .values_list("gateway", "task_ref")
    )
    for gateway, task_ref in rows:
        running.setdefault(gateway, []).append(task_ref)

    def status(name: str, description: str, gw: Gateway | None = None) -> GatewayStatus:
        """A row with its queue and the runs it holds; the central workers have no heartbeat row."""
        beat = gw.heartbeat_at if gw else None
        age = int((now - beat).total_seconds()) if beat else None
        silent = gw is not None and (age is None or age > limit)
        by = gw.heartbeat_by if gw else ""
        return GatewayStatus(name, description, beat, by, age, silent, queue_depth(name), running.get(name, []))

    return [status(CENTRAL, _("중앙 워커"))] + [status(gw.name, gw.description, gw) for gw in Gateway.objects.all()]
