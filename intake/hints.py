"""History hints at intake: what happened on the same servers lately, among the tasks the
caller may see, with a first step to suggest when the same symptom comes back
("이 서버는 지난주에도 같은 로그 용량 경보가 있었습니다 — 로그 정리를 먼저 할까요?").

Read only; shown in the parse preview (API and PWA), never filed.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import asdict, dataclass

from django.utils import timezone

from governance.models import OpsTask, Status

from .catalog import compact
from .parser import SUBTYPE_LABELS, Parsed

LOOKBACK_DAYS = 30
MAX_HINTS = 3

# A symptom is what the request is about, whatever task it asks for: (name, words in the
# text, playbooks that mean it, what it is called, the first step to suggest and how to ask).
SYMPTOMS = (
    (
        "disk",
        ("용량", "디스크", "disk", "꽉찼", "가득", "full", "공간부족"),
        {"LOG_CLEANUP", "LOGROTATE"},
        "로그 용량 경보",
        "LOG_CLEANUP",
        "로그 정리를 먼저 할까요?",
    ),
    (
        "memory",
        ("메모리", "oom", "outofmemory", "heap", "힙", "메로리"),
        {"MEMORY_CHECK"},
        "메모리 경보",
        "MEMORY_CHECK",
        "메모리 점검을 먼저 할까요?",
    ),
)
_CLOSED_WITHOUT_WORK = (Status.REJECTED, Status.CANCELLED)


@dataclass
class Hint:
    text: str
    task_id: str
    server: str
    when: str
    suggest_sub_type: str = ""

    def as_dict(self) -> dict:
        return asdict(self)


def symptoms_of(text: str, sub_type: str | None) -> set[str]:
    squeezed = compact(text or "")
    return {
        name for name, words, sub_types, *_ in SYMPTOMS if sub_type in sub_types or any(w in squeezed for w in words)
    }


def when_text(then: dt.datetime, now: dt.datetime) -> str:
    days = (timezone.localtime(now).date() - timezone.localtime(then).date()).days
    if days <= 0:
        return "오늘"
    if days == 1:
        return "어제"
    if 7 <= days <= 13:
        return "지난주"
    return f"{days}일 전"


def _also(when: str) -> str:
    return f"{when}도" if when in ("오늘", "어제") else f"{when}에도"


def for_request(user, parsed: Parsed, now: dt.datetime | None = None) -> list[Hint]:
    """Hints for a request the parser mapped onto servers, from the caller's visible tasks."""
    if not parsed.system or not parsed.servers:
        return []
    now = now or timezone.now()
    through = OpsTask.targets.through
    on_servers = through.objects.filter(
        server__system__code=parsed.system, server__server_id__in=parsed.servers
    ).values("opstask_id")
    past = (
        OpsTask.objects.visible_to(user)
        .filter(pk__in=on_servers, created_at__gte=now - dt.timedelta(days=LOOKBACK_DAYS))
        .exclude(status__in=_CLOSED_WITHOUT_WORK)
        .prefetch_related("targets")
        .order_by("-created_at")[:20]
    )
    wanted = set(parsed.servers)
    current = symptoms_of(parsed.text, parsed.sub_type)
    hints: list[Hint] = []
    seen: set[str] = set()
    for task in past:
        server = next((s.server_id for s in task.targets.all() if s.server_id in wanted), parsed.servers[0])
        when = when_text(task.created_at, now)
        for name, _words, _types, label, first_step, question in SYMPTOMS:
            if name in current and name not in seen and name in symptoms_of(task.raw_request, task.sub_type):
                seen.add(name)
                ask = question if parsed.sub_type != first_step else "원인도 함께 점검할까요?"
                hints.append(
                    Hint(
                        f"이 서버({server})는 {_also(when)} 같은 {label}가 있었습니다 ({task.task_id}) — {ask}",
                        task.task_id,
                        server,
                        when,
                        first_step if parsed.sub_type != first_step else "",
                    )
                )
        if parsed.sub_type and task.sub_type == parsed.sub_type and "same" not in seen:
            seen.add("same")
            label = SUBTYPE_LABELS.get(task.sub_type, task.sub_type)
            hints.append(
                Hint(
                    f"이 서버({server})는 {_also(when)} 같은 작업({label}, {task.task_id})이 있었습니다.",
                    task.task_id,
                    server,
                    when,
                )
            )
        if len(hints) >= MAX_HINTS:
            break
    return hints[:MAX_HINTS]
