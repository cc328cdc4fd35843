"""The rule-based parser on its own (no database): the evaluation set's targets, and the
pieces of language it is built from."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from bench.parser_eval import DEFAULT_SET, evaluate, load
from intake.catalog import Catalog, role_and_number
from intake.parser import parse
from intake.rules import server_mentions, time_phrase

DATA = Path(__file__).resolve().parent.parent / "data"
NOW = dt.datetime(2026, 5, 23, 9, 0, tzinfo=ZoneInfo("Asia/Seoul"))


@pytest.fixture(scope="module")
def catalog() -> Catalog:
    return Catalog.from_dict(json.loads((DATA / "intake_cmdb.json").read_text(encoding="utf-8")))


def test_the_evaluation_set_meets_its_targets():
    cases, catalog, now = load(DEFAULT_SET)
    assert len(cases) >= 200
    assert sum(1 for c in cases if c.get("expect") == "clarify") >= 30
    assert sum(1 for c in cases if c.get("expect") == "refuse") >= 20
    report = evaluate(cases, catalog, now, repeat=1)
    assert report.exact_rate >= 0.97, report.errors
    assert report.clarify_rate == 1.0, report.errors
    assert report.refuse_rate == 1.0, report.errors
    assert report.false_refusals == 0


@pytest.mark.parametrize(
    "text, role, numbers",
    [
        ("WAS1번 재시작", "was", [1]),
        ("1번 서버", "", [1]),
        ("was #2", "was", [2]),
        ("1~3번 서버", "", [1, 2, 3]),
        ("WAS 2, 3번", "was", [2, 3]),
        ("웹 1,2번", "web", [1, 2]),
        ("servers 2-4", "", [2, 3, 4]),
        ("세번째 서버", "", [3]),
        ("2호기", "", [2]),
    ],
)
def test_server_ordinals(text, role, numbers):
    found = server_mentions(text)
    assert [(m.role, m.numbers) for m in found] == [(role, numbers)]


@pytest.mark.parametrize("text", ["오늘 밤 10시", "22:00", "SR-2026-0012", "30일 지난 로그", "포트 8080", "v2.1.3"])
def test_times_dates_and_numbers_are_not_servers(text):
    assert server_mentions(text) == []


@pytest.mark.parametrize(
    "text, expected",
    [
        ("오늘 밤 10시", "2026-05-23T22:00"),
        ("내일 새벽 2시", "2026-05-24T02:00"),
        ("오후 3시 30분", "2026-05-23T15:30"),
        ("새벽 3시", "2026-05-24T03:00"),  # already past today: tomorrow
        ("tomorrow 2am", "2026-05-24T02:00"),
        ("tonight at 11pm", "2026-05-23T23:00"),
        ("모레 오후 2시", "2026-05-25T14:00"),
    ],
)
def test_time_phrases(text, expected):
    phrase = time_phrase(text, NOW)
    assert phrase is not None and phrase.start is not None
    assert phrase.start.strftime("%Y-%m-%dT%H:%M") == expected


def test_roles_and_numbers_from_server_names():
    assert role_and_number("bgt-was01") == ("was", 1)
    assert role_and_number("moef-bgt-db1") == ("db", 1)
    assert role_and_number("srv-0007") == ("", 7)


def test_a_system_outside_the_scope_is_named_not_guessed(catalog):
    scoped = Catalog.from_dict(
        json.loads((DATA / "intake_cmdb.json").read_text(encoding="utf-8")), scope={"MOEF-BUDGET"}
    )
    result = parse("교육부 나이스 WAS1 재시작", scoped, now=NOW)
    assert result.forbidden_system == "MOE-NEIS"
    assert parse("예산시스템 WAS1 재시작", scoped, now=NOW).forbidden_system is None


def test_two_matching_systems_are_offered_as_choices(catalog):
    result = parse("홈페이지 재시작", catalog, now=NOW)
    assert result.clarification is not None and result.clarification.field == "system"
    assert {c["value"] for c in result.clarification.choices} == {"MOEF-HOME", "MOE-HOME"}
    assert result.system is None and result.servers == []


def test_the_client_choice_wins_over_the_text(catalog):
    result = parse("로그 정리", catalog, now=NOW, sub_type="LOGROTATE", system="MOE-NEIS", targets=["neis-was02"])
    assert (result.sub_type, result.system, result.servers) == ("LOGROTATE", "MOE-NEIS", ["neis-was02"])


def test_sentence_parameters(catalog):
    assert parse("나이스 WAS1 30일 지난 로그 삭제", catalog, now=NOW).parameters == {"older_than_days": 30}
    mined = parse("나이스 WAS1 로그 분석 ORA-01555", catalog, now=NOW)
    assert mined.parameters == {"pattern": "ORA-01555"}


def test_an_unknown_server_number_is_asked_back(catalog):
    result = parse("나이스 WAS7번 재시작", catalog, now=NOW)
    assert result.clarification is not None and result.clarification.field == "targets"
    assert "WAS7" in result.clarification.question
