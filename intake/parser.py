"""The request parser as a pipeline: receive -> permission filter -> intent -> CMDB mapping ->
(validation, in intake.services, against the playbook's typed parameters).

``parse(text, catalog)`` is pure: the catalog carries the CMDB (and which systems the caller
may use), so the evaluation set and the benchmark run it without a database. It never
guesses: two systems that fit, no system at all, a server number the system does not have,
or two intents of equal weight come back as a clarification question with the choices.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import difflib
import functools
import re
from dataclasses import asdict, dataclass, field

from . import rules, screen
from .catalog import Catalog, ServerRef, SystemRef, compact, jamo

MAX_TEXT = 4000

SUBTYPE_LABELS = {
    "APP_DEPLOY": "애플리케이션 배포",
    "STATIC_SYNC": "정적 파일 동기화",
    "SERVICE_RESTART": "서비스 재시작",
    "SSL_REPLACE": "SSL 인증서 교체",
    "DATA_CLEANUP": "데이터 정리",
    "LOG_MINING": "로그 분석",
    "LOG_CLEANUP": "로그 정리",
    "LOGROTATE": "로그 로테이트",
    "MEMORY_CHECK": "메모리 점검",
    "CRON_MANAGE": "크론 관리",
    "RAW_COMMAND": "직접 명령",
    "CODE_FIX": "코드 수정",
}

# Which servers a playbook runs on when the request names none: application work goes to
# the application servers, not the database.
_APP_ROLES = {"was", "web", "api", ""}
_ROLES_FOR = {
    "APP_DEPLOY": {"was", "api", ""},
    "SERVICE_RESTART": _APP_ROLES,
    "STATIC_SYNC": {"web", "was", ""},
    "SSL_REPLACE": {"web", "was", ""},
    "DATA_CLEANUP": {"db"},
}


@dataclass
class Clarification:
    field: str  # sub_type / system / targets
    question: str
    choices: list[dict] = dataclasses.field(default_factory=list)


@dataclass(kw_only=True)  # built by name only: one positional slip would shift every field
class Parsed:
    text: str
    sub_type: str | None = None
    category: str | None = None
    institution: str | None = None
    system: str | None = None
    servers: list[str] = field(default_factory=list)
    all_servers: bool = False
    sr_number: str = ""
    ops_reference: str = ""
    schedule: str | None = None  # ISO start of the requested window
    immediate: bool = False
    time_text: str = ""
    parameters: dict = field(default_factory=dict)
    clarification: Clarification | None = None
    refused: dict | None = None  # {"reason", "pattern"} for a destructive request
    forbidden_system: str | None = None  # named a system outside the caller's scope
    notes: list[str] = field(default_factory=list)
    backend: str = "rules"  # which backend's reading this is: "rules" or "llm"
    backend_note: str = ""  # why the rules read it although the LLM backend is on

    def as_dict(self) -> dict:
        data = asdict(self)
        data.pop("text")
        return data


def parse(
    text: str,
    catalog: Catalog,
    *,
    now: dt.datetime | None = None,
    sub_type: str | None = None,
    system: str | None = None,
    targets: list[str] | None = None,
) -> Parsed:
    """``sub_type`` / ``system`` / ``targets`` are what the client already chose (a template,
    a picker); the text fills in the rest and never overrides them."""
    text = (text or "")[:MAX_TEXT]
    result = Parsed(text=text)
    verdict = screen.screen_text(text)
    if verdict:
        # Refused whatever else it says; the system, when named, is whom to alert.
        result.refused = verdict
        chosen = _map_system(text, catalog, system, targets, result)
        if chosen is not None:
            result.system, result.institution = chosen.code, chosen.institution
        result.clarification = None
        return result
    result.sr_number = rules.sr_number(text)
    result.ops_reference = rules.ops_reference(text)
    if now is not None:
        phrase = rules.time_phrase(text, now)
        if phrase:
            result.schedule = phrase.start.isoformat() if phrase.start else None
            result.immediate = phrase.immediate
            result.time_text = phrase.text

    # intent
    if sub_type:
        result.sub_type = sub_type
    else:
        intent = rules.detect_intent(text)
        if intent.sub_type is None and not intent.ambiguous:
            intent = _fuzzy_intent(text)
        result.sub_type = intent.sub_type
        if intent.ambiguous:
            result.clarification = Clarification(
                "sub_type",
                "어떤 작업을 요청하시는지 하나를 골라 주세요.",
                [{"value": s, "label": SUBTYPE_LABELS.get(s, s)} for s in intent.ambiguous],
            )
    if result.sub_type:
        result.category = rules.CATEGORY_BY_SUBTYPE.get(result.sub_type)
        result.parameters = rules.sentence_parameters(result.sub_type, text)

    # CMDB mapping
    chosen = _map_system(text, catalog, system, targets, result)
    if chosen is not None:
        result.system = chosen.code
        result.institution = chosen.institution
        if not chosen.in_scope:
            result.forbidden_system = chosen.code
            return result
        if targets:
            result.servers = list(targets)
        else:
            _map_servers(text, chosen, result)
    if result.clarification is None and result.sub_type is None:
        result.clarification = Clarification(
            "sub_type",
            "어떤 작업이 필요한지 알려 주세요 (예: 재시작, 배포, 로그 정리, 로그 분석, 메모리 점검).",
            [{"value": s, "label": label} for s, label in SUBTYPE_LABELS.items()],
        )
    return result


@functools.cache
def _intent_keys() -> list[tuple[str, str]]:
    keys = []
    for sub_type, keywords in rules.INTENT_KEYWORDS.items():
        for keyword in keywords:
            key = jamo(keyword.replace(" ", ""))
            if len(key) >= 5:
                keys.append((sub_type, key))
    return keys


def _fuzzy_intent(text: str) -> rules.Intent:
    """Typos in the task word ("재싲작", "로그졍리"): each word is compared letter by letter
    (Hangul split into jamo) with the keywords; only a close match (>= 0.8) counts."""
    best: tuple[float, str | None] = (0.0, None)
    matcher = difflib.SequenceMatcher(autojunk=False)
    for word in re.findall(r"[가-힣a-zA-Z]{2,}", text):
        word_j = jamo(word.lower())
        for sub_type, key in _intent_keys():
            if word_j[0] != key[0] or abs(len(word_j) - len(key)) > 6:
                continue  # a typo rarely hits the first letter; a word far longer is another word
            for piece in {word_j[: len(key) + 1], word_j[: len(key)], word_j[-len(key) :]}:
                if abs(len(piece) - len(key)) > 1:
                    continue
                matcher.set_seqs(piece, key)
                if matcher.real_quick_ratio() <= best[0] or matcher.quick_ratio() <= best[0]:
                    continue
                ratio = matcher.ratio()
                if ratio > best[0]:
                    best = (ratio, sub_type)
    if best[0] >= 0.8 and best[1]:
        return rules.Intent(best[1], {best[1]: best[0]}, [])
    return rules.Intent(None, {}, [])


def _mentions(text_compact: str, keys: list[str]) -> int:
    """Length of the longest key found in the text (0 when none)."""
    for key in keys:  # longest first
        if len(key) >= 2 and key in text_compact:
            return len(key)
    return 0


# "was1", "web02", "srv3": ids that say only a role and a number name no system by themselves.
_GENERIC_SERVER = re.compile(r"^(?:was|web|ws|db|dbms|app|ap|api|batch|bat|mq|lb|if|srv|server|node|host)\d+$")
_ASCII_KEY = re.compile(r"^[a-z0-9]+$")


def _key_in(text_compact: str, words: set[str], key: str) -> bool:
    # Short Latin codes ("hr", "edu") only as whole words: they hide inside other words.
    if _ASCII_KEY.match(key) and len(key) <= 4:
        return key in words
    return key in text_compact


def _found_keys(text_compact: str, words: set[str], keys: list[str]) -> int:
    for key in keys:
        if _key_in(text_compact, words, key):
            return len(key)
    return 0


def _span(text_compact: str, keys: list[str]) -> tuple[int, int] | None:
    for key in keys:
        at = text_compact.find(key)
        if at >= 0:
            return at, at + len(key)
    return None


def _outside_longer_names(text_compact: str, catalog: Catalog, systems: dict[str, int]) -> dict[str, int]:
    """A name found only inside a longer one ("예산" inside "디지털예산회계") is not a second
    mention; two names side by side ("예산시스템과 나이스") are, and the request asks back."""
    spans = {code: _span(text_compact, catalog.systems[code].keys) for code in systems}
    kept = {}
    for code, n in systems.items():
        span = spans[code]
        inside = span is not None and any(
            other != code
            and (o := spans[other]) is not None
            and o[0] <= span[0]
            and span[1] <= o[1]
            and (o[1] - o[0]) > (span[1] - span[0])
            for other in systems
        )
        if not inside:
            kept[code] = n
    if len({spans[code] for code in kept}) == 1 and len(kept) > 1:
        return kept  # the same words name several systems: ask
    return kept or systems


def _fuzzy_found(text_compact: str, keys: list[str], threshold: float = 0.8) -> float:
    """Best similarity of any key with a window of the text, letter by letter (Hangul split
    into jamo): typos, a dropped or doubled letter. Short keys are never matched fuzzily."""
    text_j = jamo(text_compact)
    best = 0.0
    for key in keys:
        key_j = jamo(key)
        n = len(key_j)
        if n < 5:
            continue
        matcher = difflib.SequenceMatcher(None, "", key_j, autojunk=False)
        for width in (n - 1, n, n + 1):
            if width > len(text_j):
                continue
            for start in range(0, len(text_j) - width + 1):
                window = text_j[start : start + width]
                if window[0] != key_j[0] and window[-1] != key_j[-1]:
                    continue
                matcher.set_seq1(window)
                if matcher.real_quick_ratio() < threshold or matcher.quick_ratio() < threshold:
                    continue
                best = max(best, matcher.ratio())
    return best if best >= threshold else 0.0


def _map_system(
    text: str, catalog: Catalog, system: str | None, targets: list[str] | None, result: Parsed
) -> SystemRef | None:
    if system:
        chosen = catalog.systems.get(system)
        if chosen is None:
            result.clarification = Clarification(
                "system", f"'{system}' 시스템을 찾을 수 없습니다. 시스템을 골라 주세요."
            )
        return chosen
    text_compact = compact(text)
    words = set(re.findall(r"[a-z0-9]+", text.lower())) | set(re.findall(r"[a-z0-9]+", text_compact))
    # Servers named by id or host name pin the system directly.
    named_servers = [
        s
        for key, s in catalog.server_index.items()
        if len(key) >= 4 and not _GENERIC_SERVER.match(key) and key in text_compact
    ]
    if targets:
        named_servers += [catalog.server_index[compact(t)] for t in targets if compact(t) in catalog.server_index]
    server_systems = {s.system for s in named_servers}
    if len(server_systems) == 1:
        result.servers = sorted({s.server_id for s in named_servers})
        return catalog.systems[server_systems.pop()]

    institutions = {code: _found_keys(text_compact, words, inst.keys) for code, inst in catalog.institutions.items()}
    institutions = {code: n for code, n in institutions.items() if n}
    systems = {code: _found_keys(text_compact, words, s.keys) for code, s in catalog.systems.items()}
    systems = {code: n for code, n in systems.items() if n}
    # Typos are looked for only when nothing matched as written (the slow path).
    if not systems:
        fuzzy = {code: _fuzzy_found(text_compact, s.keys) for code, s in catalog.systems.items()}
        top = max(fuzzy.values(), default=0.0)
        systems = {code: 1 for code, score in fuzzy.items() if score and score >= top - 0.02}
    if not institutions and not systems:
        fuzzy = {code: _fuzzy_found(text_compact, inst.keys, 0.85) for code, inst in catalog.institutions.items()}
        institutions = {code: 1 for code, score in fuzzy.items() if score}
    # A system named inside an institution's name is not a second mention ("교육부" vs "교육").
    if institutions and systems:
        narrowed = {code: n for code, n in systems.items() if catalog.systems[code].institution in institutions}
        if narrowed:
            systems = narrowed
    if len(systems) > 1:
        systems = _outside_longer_names(text_compact, catalog, systems)
    if len(systems) == 1:
        return catalog.systems[next(iter(systems))]
    if len(systems) > 1:
        names = sorted(systems)
        result.clarification = Clarification(
            "system",
            "여러 시스템이 해당됩니다. 어느 시스템인지 골라 주세요.",
            [{"value": code, "label": f"{catalog.systems[code].name} ({code})"} for code in names],
        )
        return None
    if len(institutions) == 1:
        inst = next(iter(institutions))
        candidates = catalog.systems_of(inst)
        if len(candidates) == 1:
            return candidates[0]
        if candidates:
            result.clarification = Clarification(
                "system",
                f"{catalog.institutions[inst].name}의 어느 시스템인지 골라 주세요.",
                [{"value": s.code, "label": f"{s.name} ({s.code})"} for s in candidates if s.in_scope],
            )
            return None
    if len(institutions) > 1:
        result.clarification = Clarification(
            "system",
            "여러 기관이 해당됩니다. 어느 기관의 어느 시스템인지 알려 주세요.",
            [
                {"value": s.code, "label": f"{s.name} ({s.code})"}
                for code in sorted(institutions)
                for s in catalog.systems_of(code)
                if s.in_scope
            ],
        )
        return None
    if result.clarification is None:
        result.clarification = Clarification(
            "system",
            "어느 기관의 어느 시스템(서버)에 대한 요청인지 알려 주세요.",
            [{"value": s.code, "label": f"{s.name} ({s.code})"} for s in catalog.systems.values() if s.in_scope][:50],
        )
    return None


_ROLE_WORD = re.compile(r"(?<![a-z])(was|web|db|dbms|batch)(?![a-z])|웹\s*서버|웹(?=\s|\d|$)|와스|디비|배치", re.I)


def _role_context(text: str) -> str:
    """The one server role the text speaks of ("DB", "웹서버", "WAS"), or "" for none or several."""
    roles = {rules._role(m.group(1) or m.group(0).replace(" ", "")) for m in _ROLE_WORD.finditer(text)}
    roles.discard("")
    return roles.pop() if len(roles) == 1 else ""


def _ask_servers(result: Parsed, question: str, servers: list[ServerRef]) -> None:
    result.clarification = result.clarification or Clarification(
        "targets", question, [{"value": s.server_id, "label": s.server_id} for s in servers]
    )


def usual_servers(system: SystemRef, sub_type: str | None) -> list[ServerRef]:
    """The servers a playbook runs on when the request names none."""
    preferred = _ROLES_FOR.get(sub_type or "")
    servers = system.active_servers()
    return [s for s in servers if preferred is None or s.role in preferred] or servers


def _map_servers(text: str, system: SystemRef, result: Parsed) -> None:
    if result.servers:  # named by id or host name
        return
    servers = system.active_servers()
    mentions = rules.server_mentions(text)
    context = _role_context(text)
    preferred = _ROLES_FOR.get(result.sub_type or "")
    if not mentions:
        if context:
            picked = [s for s in servers if s.role == context]
            if not picked:
                _ask_servers(
                    result, f"{system.name}에는 {context.upper()} 서버가 없습니다. 서버를 골라 주세요.", servers
                )
                return
        else:
            picked = usual_servers(system, result.sub_type)
        result.servers = sorted(s.server_id for s in picked)
        result.all_servers = True
        if not result.servers:
            _ask_servers(result, f"{system.name}에 사용 중인 서버가 없습니다.", servers)
        return
    chosen: list[ServerRef] = []
    for mention in mentions:
        role = mention.role or context
        for number in mention.numbers:
            fits = [s for s in servers if s.number == number and (not role or s.role == role)]
            if not role and len({s.role for s in fits}) > 1 and preferred is not None:
                # "행복이음 1번 배포": a deploy never targets the database server numbered 1.
                fits = [s for s in fits if s.role in preferred] or fits
            if len({s.role for s in fits}) > 1:
                _ask_servers(result, f"{number}번 서버가 여러 개입니다. 어느 서버인지 골라 주세요.", fits)
                return
            if not fits:
                label = f"{role.upper()}{number}" if role else f"{number}번"
                _ask_servers(result, f"{system.name}에는 {label} 서버가 없습니다. 서버를 골라 주세요.", servers)
                return
            chosen.extend(fits)
    result.servers = sorted({s.server_id for s in chosen})
