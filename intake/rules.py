"""The rule-based reading of a request: intent, SR numbers, server ordinals, time phrases.

Pure functions over text; the CMDB side (which system, which servers) is intake.mapping.
Keywords are matched on the *compact* text (no spaces), so "재 시작", "재시작" and
"재시 작" are one word, and a few common typos are listed as keywords of their own.
"""

from __future__ import annotations

import datetime as dt
import functools
import re
from dataclasses import dataclass

from .catalog import ROLE_ALIASES, compact

# sub_type -> keywords (compact form; English in lower case). A longer keyword is more
# specific and weighs more, so "로그정리" beats "로그" and "데이터정리" beats "정리".
INTENT_KEYWORDS: dict[str, tuple[str, ...]] = {
    "LOGROTATE": (
        "logrotate",
        "로그로테이트",
        "로테이트",
        "로그순환",
        "로그로테이션",
        "로테이션",
        "rotate",
        "로그분할",
        "로그회전",
    ),
    "LOG_CLEANUP": (
        "디스크사용률",
        "디스크사용량",
        "디렉토리용량",
        "디렉터리용량",
        "로그용량",
        "oldlog",
        "clearlog",
        "removelog",
        "deletelog",
        "out비워",
        "로그비워",
        "로그파일비워",
        "로그정리",
        "로그삭제",
        "로그지워",
        "로그지우",
        "로그파일정리",
        "로그파일삭제",
        "로그용량",
        "로그비워",
        "로그청소",
        "디스크정리",
        "디스크용량",
        "디스크부족",
        "디스크꽉",
        "디스크가꽉",
        "디스크full",
        "용량부족",
        "용량이부족",
        "용량확보",
        "용량정리",
        "임시파일",
        "cleanlog",
        "cleanuplog",
        "logcleanup",
        "deletelog",
        "purgelog",
        "diskfull",
        "diskspace",
        "freeupdisk",
        "freedisk",
        "cleanup",
        "tmp정리",
        "로그가꽉",
        "로그쌓",
        "로그너무",
        "오래된로그",
        "로그정릐",
        "로그졍리",
        "로그 정리",
    ),
    "LOG_MINING": (
        "로그수집",
        "로그보내",
        "로그받아",
        "로그전달",
        "로그확보",
        "lookatthelog",
        "lookattheerrorlog",
        "errorlogs",
        "로그점검",
        "로그tail",
        "tail로그",
        "로그분석",
        "로그확인",
        "로그조회",
        "로그봐",
        "로그보",
        "로그검색",
        "로그추출",
        "에러로그",
        "오류로그",
        "에러원인",
        "오류원인",
        "장애원인",
        "원인분석",
        "원인파악",
        "exception",
        "익셉션",
        "에러확인",
        "오류확인",
        "에러찾",
        "오류찾",
        "에러내역",
        "오류내역",
        "에러분석",
        "로그좀봐",
        "로그좀보",
        "로그좀확인",
        "로그에서",
        "loganalysis",
        "analyzelog",
        "analyselog",
        "checklog",
        "checkthelog",
        "greplog",
        "grepthelog",
        "errorlog",
        "logs",
        "로그뽑",
        "로그마이닝",
        "logmining",
        "에러건수",
        "로그분서",
        "로그 분석",
        "stacktrace",
        "스택트레이스",
    ),
    "SERVICE_RESTART": (
        "재시작",
        "재기동",
        "리스타트",
        "restart",
        "재구동",
        "껐다켜",
        "껐다가켜",
        "내렸다올려",
        "내렸다가올려",
        "다시띄워",
        "다시올려",
        "재실행",
        "bounce",
        "재시잗",
        "제시작",
        "재시작좀",
        "재기둥",
        "리부트서비스",
        "서비스재시",
        "재가동",
        "톰캣재",
        "tomcat재",
    ),
    "APP_DEPLOY": (
        "소스올려",
        "war올려",
        "jar올려",
        "신규소스",
        "배포",
        "디플로이",
        "deploy",
        "반영",
        "war",
        "jar",
        "패치적용",
        "릴리즈",
        "release",
        "신규버전",
        "새버전",
        "버전업",
        "업데이트적용",
        "소스반영",
        "배표",
        "베포",
        "빌드올려",
        "redeploy",
        "rollout",
    ),
    "STATIC_SYNC": (
        "정적파일",
        "정적리소스",
        "정적컨텐츠",
        "정적콘텐츠",
        "static",
        "html",
        "css",
        "javascript",
        "js파일",
        "이미지파일",
        "이미지교체",
        "화면파일",
        "동기화",
        "sync",
        "웹리소스",
        "배너이미지",
    ),
    "SSL_REPLACE": ("ssl", "인증서", "certificate", "cert", "tls", "https인증", "보안서버인증"),
    "DATA_CLEANUP": (
        "db정리",
        "디비정리",
        "데이터베이스정리",
        "테이블데이터정리",
        "세션정리",
        "세션삭제",
        "세션데이터",
        "테이블비워",
        "데이터정리",
        "데이터삭제",
        "데이터정비",
        "이력데이터",
        "테이블정리",
        "레코드삭제",
        "레코드정리",
        "이력정리",
        "이력삭제",
        "오래된데이터",
        "dataclean",
        "cleanupdata",
        "purgedata",
        "purgerecords",
        "deleterecords",
        "old records",
        "oldrecords",
        "데이터퍼지",
        "퍼지",
        "데이타정리",
        "데이터 정리",
        "세션테이블",
        "임시테이블",
    ),
    "MEMORY_CHECK": (
        "memoryerror",
        "heapspace",
        "힙덤프",
        "스레드덤프",
        "쓰레드덤프",
        "threaddump",
        "heapusage",
        "메모리사용률",
        "메모리",
        "memory",
        "힙",
        "heap",
        "oom",
        "outofmemory",
        "메모리누수",
        "메모리점검",
        "메모리사용",
        "메모리확인",
        "gc",
        "가비지",
        "스왑",
        "swap",
        "메모리부족",
        "메모리가",
        "메로리",
        "메모리 점검",
        "memcheck",
        "ram",
    ),
    "CRON_MANAGE": (
        "배치추가",
        "배치작업추가",
        "크론추가",
        "스케줄변경",
        "배치스케줄",
        "크론",
        "cron",
        "crontab",
        "크론탭",
        "배치등록",
        "배치스케줄",
        "스케줄등록",
        "예약작업",
        "정기작업",
        "스케줄러등록",
        "배치작업등록",
    ),
    "RAW_COMMAND": (
        "명령실행",
        "명령어실행",
        "커맨드실행",
        "runcommand",
        "executecommand",
        "명령어돌려",
        "쉘명령",
        "shellcommand",
        "명령을실행",
        "명령어를실행",
    ),
    "CODE_FIX": (
        "오류수정",
        "기능수정",
        "화면수정",
        "소스코드수정",
        "프로그램오류수정",
        "코드수정",
        "소스수정",
        "버그수정",
        "버그픽스",
        "bugfix",
        "fixbug",
        "fixthebug",
        "codefix",
        "코드변경",
        "소스변경",
        "로직수정",
        "프로그램수정",
        "오타수정",
        "문구수정",
    ),
}

# Words that suggest a task only when nothing stronger is said ("응답이 느려요", "용량 95%").
WEAK_KEYWORDS: dict[str, tuple[str, ...]] = {
    "SERVICE_RESTART": ("기동", "띄워", "살려"),
    "MEMORY_CHECK": (
        "cpu",
        "사용률",
        "부하",
        "상태확인",
        "상태점검",
        "프로세스확인",
        "프로세스점검",
        "헬스체크",
        "healthcheck",
        "느려",
        "느림",
        "응답지연",
        "slow",
        "스레드덤프",
        "쓰레드덤프",
        "threaddump",
        "덤프",
    ),
    "LOG_CLEANUP": ("용량", "비워", "clear", "꽉찼", "가득"),
    "LOG_MINING": ("tail", "에러", "오류", "error", "장애"),
}

CATEGORY_BY_SUBTYPE = {
    "APP_DEPLOY": "DEPLOY",
    "STATIC_SYNC": "DEPLOY",
    "SERVICE_RESTART": "INFRA_CONTROL",
    "SSL_REPLACE": "INFRA_CONTROL",
    "CRON_MANAGE": "INFRA_CONTROL",
    "RAW_COMMAND": "INFRA_CONTROL",
    "LOG_CLEANUP": "INFRA_CONTROL",
    "LOGROTATE": "INFRA_CONTROL",
    "DATA_CLEANUP": "DATA",
    "LOG_MINING": "INSPECTION",
    "MEMORY_CHECK": "INSPECTION",
    "CODE_FIX": "CODE_CHANGE",
}

# Short English words are matched as words, not inside others ("war" in "software", "gc" in "gcc").
_WORD_ONLY = {
    "war",
    "jar",
    "gc",
    "ram",
    "oom",
    "ssl",
    "tls",
    "cert",
    "sync",
    "html",
    "css",
    "static",
    "logs",
    "heap",
    "swap",
    "cron",
    "deploy",
    "restart",
    "release",
    "bounce",
    "cleanup",
    "memory",
    "rollout",
    "redeploy",
    "rotate",
    "logrotate",
    "crontab",
    "certificate",
    "javascript",
}

# When one request names two intents, some pairs have an obvious reading: "OOM 나서 재시작"
# is a restart, "배포 후 로그 확인" a deploy. The first of each pair wins over the second.
_PRECEDENCE = [
    ("LOGROTATE", "LOG_CLEANUP"),
    ("LOGROTATE", "LOG_MINING"),
    ("LOG_CLEANUP", "LOG_MINING"),
    ("SERVICE_RESTART", "MEMORY_CHECK"),
    ("SERVICE_RESTART", "LOG_MINING"),
    ("APP_DEPLOY", "LOG_MINING"),
    ("APP_DEPLOY", "SERVICE_RESTART"),
    ("STATIC_SYNC", "APP_DEPLOY"),
    ("SSL_REPLACE", "SERVICE_RESTART"),
    ("SSL_REPLACE", "APP_DEPLOY"),
    ("CRON_MANAGE", "DATA_CLEANUP"),
    ("DATA_CLEANUP", "LOG_CLEANUP"),
    ("CODE_FIX", "APP_DEPLOY"),
    ("CODE_FIX", "LOG_MINING"),
    ("SSL_REPLACE", "LOG_MINING"),
    ("CRON_MANAGE", "LOG_CLEANUP"),
    ("LOG_CLEANUP", "MEMORY_CHECK"),
    ("LOGROTATE", "MEMORY_CHECK"),
    ("CODE_FIX", "SERVICE_RESTART"),
]
_BEATS = list(_PRECEDENCE)  # applied in this order: the outcome never depends on hashing

_LOOK_ONLY = re.compile(r"확인|조회|점검|알려|check|show|when")
_SSL_CHANGE = re.compile(r"교체|갱신|적용|변경|설치|바꿔|replace|renew|update|install|swap")
_DATA_WORDS = re.compile(r"데이터|데이타|data|테이블|table|레코드|record|세션|db|디비")
_WEAK_WORDS = {"slow", "clear", "tail", "error", "cpu"}
_MEMORY_ACTION = re.compile(
    r"메모리(?:점검|확인|사용|상태|누수|부족|체크|봐|좀)|memory(?:check|usage|leak)|heapdump|힙덤프|"
    r"checkmemory|메모리가|메모리를"
)
_ENGLISH_TOKEN = re.compile(r"[a-z][a-z0-9]*")


@dataclass
class Intent:
    sub_type: str | None
    scores: dict[str, float]
    ambiguous: list[str]


# Word orders a list of keywords cannot hold: "로그 전체 삭제", "로그 좀 확인해".
PATTERN_KEYWORDS: dict[str, re.Pattern[str]] = {
    "LOG_CLEANUP": re.compile(
        r"로그(?:파일)?.{0,6}?(?:삭제|지워|지우|정리|비워|청소|줄여|꽉|가득)|logs?(?:are|is)?full"
    ),
    "LOG_MINING": re.compile(r"로그.{0,6}?(?:확인|분석|조회|봐|보여|검색|추출|뽑|살펴|찾)"),
    "SERVICE_RESTART": re.compile(r"(?:다시|재)(?:시작|기동|구동)|내렸다.{0,3}올|껐다.{0,3}켜|restart"),
    "MEMORY_CHECK": re.compile(r"메모리.{0,6}?(?:확인|점검|봐|체크|조회)"),
}


@functools.cache
def _matchers() -> list[tuple[str, re.Pattern[str] | None, frozenset[str]]]:
    """Per sub-type: one alternation of its compact keywords (longest first) and its
    whole-word English keywords."""
    table = []
    for sub_type, keywords in INTENT_KEYWORDS.items():
        keys = {k.replace(" ", "") for k in keywords}
        words = frozenset(k for k in keys if k in _WORD_ONLY)
        inner = sorted(keys - words, key=len, reverse=True)
        pattern = re.compile("|".join(re.escape(k) for k in inner)) if inner else None
        table.append((sub_type, pattern, words))
    return table


def detect_intent(text: str) -> Intent:
    lowered = text.lower()
    text_compact = compact(text)
    words = set(_ENGLISH_TOKEN.findall(lowered))
    # English keywords written apart ("clean up logs") are found in the compact text too.
    scores: dict[str, float] = {}
    for sub_type, pattern, whole_words in _matchers():
        best = 0.0
        if pattern is not None:
            longest = max((len(m.group(0)) for m in pattern.finditer(text_compact)), default=0)
            if longest:
                best = 1.0 + longest / 10
        for word in whole_words & words:
            best = max(best, 1.0 + len(word) / 10)
        extra = PATTERN_KEYWORDS.get(sub_type)
        if extra is not None and not best and extra.search(text_compact):
            best = 1.3
        if best:
            scores[sub_type] = best
    # Contextual corrections.
    if "SSL_REPLACE" in scores and "APP_DEPLOY" in scores and re.search(r"인증서|ssl|cert", lowered):
        scores.pop("APP_DEPLOY")
    if "STATIC_SYNC" in scores and "APP_DEPLOY" in scores and not re.search(r"\b(war|jar)\b", lowered):
        scores.pop("APP_DEPLOY")
    if "LOG_CLEANUP" in scores and "DATA_CLEANUP" in scores:
        # Rows in a database are data; files on a disk are logs.
        scores.pop("LOG_CLEANUP" if _DATA_WORDS.search(text_compact) else "DATA_CLEANUP")
    # "OutOfMemoryError", "OOM", "heap" name a symptom; with "로그 분석" the log is what is asked for.
    if "MEMORY_CHECK" in scores and "LOG_MINING" in scores:
        if _MEMORY_ACTION.search(text_compact):
            scores.pop("LOG_MINING")
        else:
            scores.pop("MEMORY_CHECK")
    # "인증서 만료일 확인" asks about the certificate; replacing it is a change nobody asked for.
    if "SSL_REPLACE" in scores and _LOOK_ONLY.search(text_compact) and not _SSL_CHANGE.search(text_compact):
        return Intent(None, scores, ["SSL_REPLACE", "LOG_MINING"])
    if not scores:
        for sub_type, keywords in WEAK_KEYWORDS.items():
            if any(k in text_compact if k not in _WEAK_WORDS else k in words for k in keywords):
                scores[sub_type] = 0.5
    if not scores:
        return Intent(None, {}, [])
    remaining = set(scores)
    for winner, loser in _BEATS:
        if winner in remaining and loser in remaining:
            remaining.discard(loser)
    if len(remaining) == 1:
        return Intent(remaining.pop(), scores, [])
    ordered = sorted(remaining, key=lambda s: -scores[s])
    return Intent(None, scores, ordered)


# --- SR / OPS numbers -------------------------------------------------------------------------------------
SR_NUMBER = re.compile(r"\b(SR|CSR|REQ)[-_ ]?(\d{4}[-_]?\d{2,4}[-_]?\d{0,6}|\d{3,12})\b", re.IGNORECASE)
OPS_NUMBER = re.compile(r"\bOPS-\d{8}-\d{3,6}\b", re.IGNORECASE)


def sr_number(text: str) -> str:
    match = SR_NUMBER.search(text)
    return match.group(0).upper().replace(" ", "-").replace("_", "-") if match else ""


def ops_reference(text: str) -> str:
    match = OPS_NUMBER.search(text)
    return match.group(0).upper() if match else ""


# --- server ordinals ----------------------------------------------------------------------------------------
_ROLE_WORDS = "|".join(sorted(ROLE_ALIASES, key=len, reverse=True))
_SERVER_WORD = r"\s*(?:서버|servers?|nodes?|instances?)?\s*"
_ROLE_KO = {"웹": "web", "와스": "was", "디비": "db", "배치": "batch"}
_ROLE = rf"(?P<role>{_ROLE_WORDS}|웹서버|웹|와스|디비|배치)"
_NUM = r"(?P<a>\d{1,3})"
_RANGE_SEP = r"\s*(?:~|∼|〜|-|–|부터|에서|to|through|thru)\s*"
_LIST_SEP = r"\s*(?:,|·|/|및|와|과|랑|하고|이랑|&|and|\+)\s*"

_KO_ORDINALS = {
    "첫": 1,
    "한": 1,
    "두": 2,
    "둘": 2,
    "세": 3,
    "셋": 3,
    "네": 4,
    "넷": 4,
    "다섯": 5,
    "여섯": 6,
    "일곱": 7,
    "여덟": 8,
    "아홉": 9,
    "열": 10,
}
_KO_ORDINAL = re.compile(r"(첫|두|둘|세|셋|네|넷|다섯|여섯|일곱|여덟|아홉|열)\s*번\s*째")
_DIGIT_ORDINAL = re.compile(
    r"(?:(?P<role>was|web|db|웹|와스|디비)\s*)?(?<![\d:.])(?P<a>\d{1,2})\s*번\s*째", re.IGNORECASE
)
_ENGLISH_ORDINAL = {"first": 1, "second": 2, "third": 3, "fourth": 4, "fifth": 5}

# role + range:  WAS 1~3번, was1-3, WEB#1~2
_ROLE_RANGE = re.compile(
    _ROLE + _SERVER_WORD + r"#?\s*(?P<a>\d{1,3})" + _RANGE_SEP + r"#?(?P<b>\d{1,3})(?!\d)\s*(?:번|호기|호)?",
    re.IGNORECASE,
)
# role + list: WAS1,2번 / was 1 and 2 / WAS1번, 2번
_ROLE_LIST = re.compile(
    _ROLE
    + _SERVER_WORD
    + r"#?\s*(?P<list>\d{1,3}(?:\s*(?:번|호기)?"
    + _LIST_SEP
    + r"#?\d{1,3}(?!\d))+)\s*(?:번|호기|호)?",
    re.IGNORECASE,
)
# role + one: WAS1번, was #2, WAS 02, web-1, 웹1
_ROLE_ONE = re.compile(
    _ROLE + _SERVER_WORD + r"[#-]?\s*0*(?P<a>\d{1,3})(?![\d.:시분일])\s*(?:번|호기|호)?", re.IGNORECASE
)
# range without role: 1~3번 서버 / 1-3번 / servers 1-3
_RANGE = re.compile(
    r"(?<![\d:.])(?P<a>\d{1,3})\s*(?:번|호기)?" + _RANGE_SEP + r"(?P<b>\d{1,3})\s*(?:번|호기|호|(?=\s*서버))(?!째)",
    re.IGNORECASE,
)
_EN_RANGE = re.compile(
    r"\b(?:servers?|nodes?|hosts?)\s*#?(?P<a>\d{1,3})" + _RANGE_SEP + r"#?(?P<b>\d{1,3})\b", re.IGNORECASE
)
# list without role: 1,2번 서버 / 1번, 3번 서버 / 1번이랑 2번
_LIST = re.compile(
    r"(?<![\d:.])(?P<list>\d{1,3}\s*(?:번|호기)?(?:"
    + _LIST_SEP
    + r"\d{1,3}\s*(?:번|호기)?)+)(?=\s*(?:번|호기|서버|장비|노드))",
    re.IGNORECASE,
)
# one without role: 1번 서버 / 2호기 / server 2 / server #2 / #3
_ONE = re.compile(r"(?<![\d:.#])(?P<a>\d{1,3})\s*(?:번|호기)(?!\s*째)", re.IGNORECASE)
_EN_ONE = re.compile(
    r"\b(?:servers?|nodes?|hosts?|box)\s*(?:no\.?|number)?\s*#?(?P<a>\d{1,3})\b|(?<![\w#])#(?P<b>\d{1,3})\b",
    re.IGNORECASE,
)
ALL_SERVERS = re.compile(
    r"전체\s*서버|서버\s*전체|모든\s*서버|서버\s*(?:모두|다|전부)|전\s*서버|all\s+(?:the\s+)?servers"
    r"|every\s+server|전체\s*노드|모든\s*노드|전체\s*(?:was|web)|(?:was|web)\s*전체|모든\s*(?:was|web)"
    r"|all\s+(?:was|web)",
    re.IGNORECASE,
)


@dataclass
class ServerMention:
    role: str  # "" when not said
    numbers: list[int]
    text: str


def _role(word: str | None) -> str:
    if not word:
        return ""
    word = word.lower()
    if word == "웹서버":
        return "web"
    return _ROLE_KO.get(word) or ROLE_ALIASES.get(word, "")


def _numbers(text: str) -> list[int]:
    return [int(n) for n in re.findall(r"\d{1,3}", text)]


def server_mentions(text: str) -> list[ServerMention]:
    """Every "WAS1번" / "1~3번" / "was #2" in the text, with the role when one was said."""
    found: list[ServerMention] = []
    taken: list[tuple[int, int]] = []
    # Time, dates, SR numbers and ports are not servers: blank them out first.
    masked = _mask_non_servers(text)

    def free(span: tuple[int, int]) -> bool:
        return all(span[1] <= a or span[0] >= b for a, b in taken)

    def add(match: re.Match, role: str, numbers: list[int]) -> None:
        if numbers and free(match.span()):
            taken.append(match.span())
            found.append(ServerMention(role, numbers, match.group(0)))

    for match in _ROLE_RANGE.finditer(masked):
        a, b = int(match.group("a")), int(match.group("b"))
        if a <= b <= a + 50:
            add(match, _role(match.group("role")), list(range(a, b + 1)))
    for match in _ROLE_LIST.finditer(masked):
        add(match, _role(match.group("role")), _numbers(match.group("list")))
    for match in _ROLE_ONE.finditer(masked):
        add(match, _role(match.group("role")), [int(match.group("a"))])
    for pattern in (_RANGE, _EN_RANGE):
        for match in pattern.finditer(masked):
            a, b = int(match.group("a")), int(match.group("b"))
            if a <= b <= a + 50:
                add(match, "", list(range(a, b + 1)))
    for match in _LIST.finditer(masked):
        add(match, "", _numbers(match.group("list")))
    for match in _ONE.finditer(masked):
        add(match, "", [int(match.group("a"))])
    for match in _EN_ONE.finditer(masked):
        add(match, "", [int(match.group("a") or match.group("b"))])
    for match in _KO_ORDINAL.finditer(masked):
        if free(match.span()):
            add(match, "", [_KO_ORDINALS[match.group(1)]])
    for match in _DIGIT_ORDINAL.finditer(masked):  # "2번째 WAS", "WAS 2번째"
        add(match, _role(match.group("role")), [int(match.group("a"))])
    for word, number in _ENGLISH_ORDINAL.items():
        for match in re.finditer(rf"\b{word}\s+(?:(?P<role>was|web|db)\s+)?(?:server|node|instance)\b", masked, re.I):
            add(match, _role(match.group("role")), [number])
    return found


_NOT_SERVERS = [
    re.compile(
        # A unit, not the start of another word: "1 분석", "1 시작", "1 프로세스" are not times.
        r"\d{1,3}\s*(?:시간|시(?![스작점행키켜])|분(?![석리산류기])|초(?![기과])|일(?![괄부반정단시])|주(?![세소기요])|"
        r"개월|달|월|년|개(?![발선편])|건|줄|라인|lines?|days?|hours?|mins?|minutes?|"
        r"am|pm|h|mb|gb|kb|%|퍼센트|프로(?![세그젝파])|대)(?![a-z])",
        re.I,
    ),
    re.compile(r"\d{1,2}:\d{2}"),
    re.compile(r"\b(?:SR|CSR|REQ|OPS|ORA|ERR|HTTP)[-_ ]?[\d-]+", re.I),
    re.compile(r"\b\d{4,}\b"),
    re.compile(r"\bv?\d+\.\d+(?:\.\d+)*\b"),
    re.compile(r"(?:port|포트)\s*\d+", re.I),
]


def _mask_non_servers(text: str) -> str:
    for pattern in _NOT_SERVERS:
        text = pattern.sub(lambda m: " " * len(m.group(0)), text)
    return text


# --- time phrases -------------------------------------------------------------------------------------------
_DAY_WORDS = {"오늘": 0, "금일": 0, "today": 0, "tonight": 0, "내일": 1, "명일": 1, "tomorrow": 1, "모레": 2}
_TIME_KO = re.compile(
    r"(?P<day>오늘|금일|내일|명일|모레)?\s*(?P<part>새벽|아침|오전|오후|저녁|밤|낮)?\s*"
    r"(?P<h>\d{1,2})\s*시\s*(?:(?P<m>\d{1,2})\s*분|(?P<half>반))?"
)
_TIME_HHMM = re.compile(
    r"(?P<day>오늘|금일|내일|명일|모레|today|tomorrow|tonight)?\s*(?:밤|새벽|오후|오전|at)?\s*"
    r"(?<!\d)(?P<h>[01]?\d|2[0-3]):(?P<m>[0-5]\d)(?!\d)",
    re.I,
)
_TIME_EN = re.compile(
    r"(?P<day>today|tonight|tomorrow)?\s*(?:at\s*)?(?P<h>\d{1,2})(?::(?P<m>\d{2}))?\s*(?P<ampm>am|pm)\b"
    r"(?:\s*(?P<day2>today|tonight|tomorrow))?",
    re.I,
)
_DAY_ONLY = re.compile(
    r"(오늘\s*밤|오늘\s*저녁|내일\s*새벽|내일\s*아침|tonight|업무\s*시간\s*(?:이후|후|끝나고)|퇴근\s*(?:후|이후))", re.I
)
_NOW = re.compile(r"지금\s*바로|즉시|바로|지금|긴급|ASAP|right\s+now|immediately|now\b", re.I)


@dataclass
class TimePhrase:
    start: dt.datetime | None
    immediate: bool
    text: str


def time_phrase(text: str, now: dt.datetime) -> TimePhrase | None:
    """ "오늘 밤 10시" -> today 22:00; "내일 새벽 2시" -> tomorrow 02:00; a time already past
    today with no day word means tomorrow. ``now`` is timezone-aware local time."""
    match = _DATE_TIME.search(text)
    if match:
        hour = _hour(int(match.group("h")), match.group("part") or "")
        minute = int(match.group("m") or (30 if match.group("half") else 0))
        month = int(match.group("mo") or now.month)
        try:
            when = now.replace(
                month=month, day=int(match.group("d")), hour=hour, minute=minute, second=0, microsecond=0
            )
        except ValueError:
            when = None
        if when is not None and minute <= 59:
            if when < now - dt.timedelta(days=1) and not match.group("mo"):
                when = _next_month(when)
            return TimePhrase(when, False, match.group(0).strip())
    match = _MIDNIGHT.search(text)
    if match:
        day = match.group("day") or ""
        base = now + dt.timedelta(days=_DAY_WORDS.get(day, 0))
        if match.group("what") == "자정":
            when = base.replace(hour=0, minute=0, second=0, microsecond=0) + dt.timedelta(days=1)
        else:
            when = base.replace(hour=12, minute=0, second=0, microsecond=0)
            if not day and when <= now:
                when += dt.timedelta(days=1)
        return TimePhrase(when, False, match.group(0).strip())
    match = _TIME_KO.search(text)
    if match:
        hour = int(match.group("h"))
        minute = int(match.group("m") or (30 if match.group("half") else 0))
        part = match.group("part") or ""
        if part in ("오후", "저녁", "밤") and hour < 12:
            hour += 12
        if part == "밤" and hour == 24:
            hour = 0
        if part in ("새벽",) and hour == 12:
            hour = 0
        if 0 <= hour <= 23 and 0 <= minute <= 59:
            return TimePhrase(_at(now, match.group("day"), hour, minute, part), False, match.group(0).strip())
    match = _TIME_EN.search(text)
    if match:
        hour = int(match.group("h")) % 12 + (12 if match.group("ampm").lower() == "pm" else 0)
        minute = int(match.group("m") or 0)
        if minute <= 59:
            day = match.group("day") or match.group("day2")
            return TimePhrase(_at(now, day, hour, minute, ""), False, match.group(0).strip())
    match = _TIME_HHMM.search(text)
    if match:
        hour, minute = int(match.group("h")), int(match.group("m"))
        return TimePhrase(_at(now, match.group("day"), hour, minute, ""), False, match.group(0).strip())
    match = _DAY_ONLY.search(text)
    if match:
        phrase = compact(match.group(0))
        hour = {"오늘밤": 22, "오늘저녁": 19, "내일새벽": 2, "내일아침": 8, "tonight": 22}.get(phrase, 19)
        day = "내일" if phrase.startswith("내일") else "오늘"
        return TimePhrase(_at(now, day, hour, 0, ""), False, match.group(0).strip())
    match = _NOW.search(text)
    if match:
        return TimePhrase(None, True, match.group(0).strip())
    return None


_DATE_TIME = re.compile(
    r"(?:(?P<mo>\d{1,2})\s*월\s*)?(?P<d>\d{1,2})\s*일\s*(?:(?P<part>새벽|아침|오전|오후|저녁|밤|낮)\s*)?"
    r"(?P<h>\d{1,2})\s*시(?:\s*(?P<m>\d{1,2})\s*분|(?P<half>반))?"
)
_MIDNIGHT = re.compile(r"(?P<day>오늘|내일|모레)?\s*(?P<what>자정|정오)")


def _hour(hour: int, part: str) -> int:
    if part in ("오후", "저녁", "밤") and hour < 12:
        hour += 12
    if part in ("새벽", "밤") and hour in (12, 24):
        hour = 0
    return hour


def _next_month(when: dt.datetime) -> dt.datetime:
    month = when.month % 12 + 1
    try:
        return when.replace(year=when.year + (when.month == 12), month=month)
    except ValueError:
        return when


def _at(now: dt.datetime, day: str | None, hour: int, minute: int, part: str) -> dt.datetime:
    offset = _DAY_WORDS.get((day or "").lower())
    when = now.replace(hour=hour, minute=minute, second=0, microsecond=0)
    if offset is not None:
        return when + dt.timedelta(days=offset)
    if when <= now:
        when += dt.timedelta(days=1)
    return when


# --- parameters a request sentence carries ------------------------------------------------------------------
_DAYS = re.compile(r"(\d{1,4})\s*(?:일|days?)\s*(?:이상|이전|전|지난|넘은|경과|초과|보다|older|old|ago|$)?", re.I)
_KEEP = re.compile(r"(\d{1,3})\s*(?:개|일치|일분|copies|generations?)\s*(?:보관|유지|남기|keep)", re.I)
_PATTERN = re.compile(r"(ORA-\d{5}|java\.[\w.]+(?:Exception|Error)|\b\w+(?:Exception|Error)\b|HTTP\s*5\d\d)", re.I)


def sentence_parameters(sub_type: str, text: str) -> dict:
    params: dict = {}
    if sub_type == "LOG_CLEANUP":
        match = _DAYS.search(text)
        if match and 1 <= int(match.group(1)) <= 3650:
            params["older_than_days"] = int(match.group(1))
    elif sub_type == "LOGROTATE":
        match = _KEEP.search(text)
        if match and 1 <= int(match.group(1)) <= 365:
            params["keep"] = int(match.group(1))
    elif sub_type == "LOG_MINING":
        found = list(dict.fromkeys(m.group(1) for m in _PATTERN.finditer(text)))
        if found:
            params["pattern"] = "|".join(re.escape(f) if "." in f else f for f in found)[:200]
    return params
