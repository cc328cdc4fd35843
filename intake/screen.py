"""Destructive requests are refused at intake, before anyone is asked to approve them.

Two layers over the request's text and its parameter values:

1. the command sanitizer that guards every remote command (reached by the dotted name in
   ``INTAKE_COMMAND_SANITIZER``: intake never imports the execution layer), applied to
   every command-looking fragment: quoted or back-ticked spans and the Latin runs of a
   text that carries shell syntax or a destructive program name;
2. intake's own rules for what a sanitizer cannot see in a command: "rm -rf" written
   anywhere (a request that contains it is refused outright), and destructive orders in
   words ("DB 전체 삭제", "서버 포맷", "drop the database").

Either layer refusing is enough.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable

from .catalog import compact

_RM_RF = re.compile(
    r"\brm\s+(?:-[a-z]*r[a-z]*f|-[a-z]*f[a-z]*r|-r\s+-f|-f\s+-r|--recursive\s+--force|"
    r"--force\s+--recursive|-r\b|--recursive)",
    re.I,
)
_COMMAND_WORDS = re.compile(
    r"\b(?:rm|rmdir|dd|mkfs(?:\.\w+)?|fdisk|parted|wipefs|shred|shutdown|reboot|halt|poweroff|init\s+[06]|"
    r"kill(?:all)?|pkill|chmod|chown|truncate|drop|delete\s+from|format|mv|crontab\s+-r|iptables\s+-F|"
    r"userdel|passwd|sudo|su\s+-|curl|wget|nc|bash|sh|python|perl|eval|find|tee|rsync|mysql|sqlplus|psql)\b",
    re.I,
)
_SHELL_SYNTAX = re.compile(r"[|;&`$<>]|:\(\)|\b\w+=\S")

# Destructive orders in plain words (matched on the compact text: no spaces).
_WORD_RULES: list[tuple[str, re.Pattern[str]]] = [
    (
        "데이터베이스 또는 테이블 전체 삭제",
        re.compile(
            r"(?:db|데이터베이스|디비|database|테이블|table|스키마|schema)(?:를|을|의)?(?:전체|전부|모두|몽땅|싹|통째로?|다)"
            r"(?:삭제|지워|지우|날려|날리|드랍|드롭|drop|비워|밀어)"
        ),
    ),
    (
        "데이터베이스 또는 테이블 전체 삭제",
        re.compile(
            r"(?:전체|전부|모든|모두|몽땅|싹)(?:db|데이터베이스|디비|테이블|스키마|데이터)(?:를|을)?(?:다|전부|모두)?"
            r"(?:삭제|지워|지우|날려|날리|드랍|드롭|drop|비워|밀어|초기화)"
        ),
    ),
    ("테이블 드롭", re.compile(r"(?:테이블|table|db|디비)(?:을|를)?(?:드랍|드롭|drop)")),
    (
        "디스크 또는 서버 포맷",
        re.compile(
            r"(?:디스크|서버|파티션|볼륨|하드|disk|drive|루트|/)(?:를|을)?(?:전체|전부|통째로?)?(?:포맷|포멧|format|초기화|밀어|날려)"
        ),
    ),
    (
        "서버 전체 파일 삭제",
        re.compile(
            r"(?:서버|루트|루트디렉터리|루트디렉토리|/|시스템파일|전체파일|모든파일|파일전부|파일전체)(?:를|을|의)?"
            r"(?:전체|전부|모두|싹|다)?(?:삭제|지워|지우|날려|날리|밀어)(?:버려|줘|주세요|라|요)?"
        ),
    ),
    (
        "서버 전원 차단",
        re.compile(
            r"(?:서버|시스템|장비)(?:를|을)?(?:셧다운|shutdown|전원(?:을)?(?:내려|꺼|차단|off)|"
            r"종료시켜|강제종료|halt|poweroff)"
        ),
    ),
    (
        "파괴적 지시",
        re.compile(
            r"(?:drop|delete|wipe|erase|destroy|nuke|purge)(?:the|all|every|entire|whole)+(?:database|db|tables?|schema|"
            r"disk|server|filesystem|files|data)"
        ),
    ),
    ("파괴적 지시", re.compile(r"(?:format|wipe)(?:the)?(?:disk|drive|server|partition|volume)")),
    ("파괴적 지시", re.compile(r"(?:shutdown|poweroff|poweroff|turnoff)(?:the)?(?:server|host|machine)")),
    ("재귀 강제 삭제(rm -rf)", re.compile(r"rm-rf|rm-fr|rm-r-f")),
    (
        "데이터베이스 또는 테이블 초기화",
        re.compile(
            r"(?:db|데이터베이스|디비|database|테이블|table|스키마|schema)(?:를|을)?(?:전체|전부|모두|다)?(?:초기화|포맷|포멧)"
        ),
    ),
    (
        "데이터 전체 삭제",
        re.compile(r"데이터(?:를|을)?(?:전체|전부|모두|몽땅|싹|통째로?|다)(?:삭제|지워|지우|날려|날리|비워|밀어)"),
    ),
    (
        "SQL TRUNCATE",
        re.compile(r"(?:테이블|table|db|디비|데이터베이스).{0,12}truncate|truncate.{0,12}(?:테이블|table|db)"),
    ),
    (
        "서버 전원 차단 또는 재부팅",
        re.compile(
            r"(?:전원(?:을|를)?(?:내려|꺼|끄|차단|off)|재부팅|리부팅|리부트(?!서비스)|reboot|셧다운|shutdown|poweroff|halt)"
            r"(?!말고|아니고|없이|하지말|금지)"
        ),
    ),
    ("계정 파일 변경", re.compile(r"etc(?:passwd|shadow|sudoers|group)")),
    (
        "디렉터리 통째 삭제",
        re.compile(
            r"(?:디렉터리|디렉토리|폴더|directory|folder)(?:를|을)?(?:통째로?|전체|전부|모두|다)(?:삭제|지워|지우|날려|날리|밀어)"
        ),
    ),
]

REFUSAL_TEXT = (
    "파괴적인 명령이 포함된 요청은 접수할 수 없습니다 ({reason}: {pattern}). 이 요청은 감사 기록에 남았고 "
    "시스템 담당자와 PM에게 알렸습니다. 필요한 작업은 정해진 작업 유형(로그 정리, 데이터 정리 등)으로 요청하세요."
)


@functools.cache
def _sanitizer() -> Callable[[str], None] | None:
    try:
        from django.conf import settings
        from django.utils.module_loading import import_string

        path = getattr(settings, "INTAKE_COMMAND_SANITIZER", "execution.sanitizer.check")
    except Exception:  # no Django settings: the intake rules alone
        return None
    return import_string(path) if path else None


def _fragments(text: str) -> list[str]:
    spans = re.findall(r"`([^`]{1,2000})`|\"([^\"]{1,2000})\"|'([^']{1,2000})'|“([^”]{1,2000})”", text)
    found = [next(part for part in span if part) for span in spans]
    if _COMMAND_WORDS.search(text) or _SHELL_SYNTAX.search(text):
        # The non-Korean runs: "WAS1번에서 rm -rf /app/* 해줘" -> "rm -rf /app/*".
        found += [run.strip() for run in re.split(r"[가-힣ㄱ-ㅎㅏ-ㅣ]+[?!.,]*", text) if run.strip()]
    # A command may follow other words ("0 3 * * * mkfs.ext4 /dev/sda1"): each from its program name on too.
    for fragment in list(found):
        found += [fragment[m.start() :] for m in _COMMAND_WORDS.finditer(fragment) if m.start() > 0]
    return found


def screen_text(text: str) -> dict | None:
    """``{"reason", "pattern"}`` when the text orders something destructive, else None."""
    if not text:
        return None
    match = _RM_RF.search(text)
    if match:
        return {"reason": "재귀 삭제(rm -rf)", "pattern": match.group(0)}
    squeezed = compact(text)
    for reason, pattern in _WORD_RULES:
        found = pattern.search(squeezed)
        if found:
            return {"reason": reason, "pattern": found.group(0)}
    check = _sanitizer()
    if check is None or not (_COMMAND_WORDS.search(text) or _SHELL_SYNTAX.search(text) or "`" in text):
        return None
    for fragment in _fragments(text):
        if not (_COMMAND_WORDS.search(fragment) or _SHELL_SYNTAX.search(fragment)):
            continue
        try:
            check(fragment)
        except Exception as exc:  # the sanitizer's SecurityViolation (not importable from here)
            return {"reason": str(getattr(exc, "reason", exc)), "pattern": str(getattr(exc, "pattern", fragment))}
    return None


def screen_values(value, path: str = "parameters") -> tuple[str, dict] | None:
    """The first parameter value (walking dicts and lists) that orders something destructive."""
    if isinstance(value, str):
        verdict = screen_text(value)
        return (path, verdict) if verdict else None
    if isinstance(value, dict):
        for key, item in value.items():
            found = screen_values(item, f"{path}.{key}")
            if found:
                return found
    if isinstance(value, list):
        for index, item in enumerate(value):
            found = screen_values(item, f"{path}.{index}")
            if found:
                return found
    return None
