"""Evaluate the rule-based intake parser on a labelled set and measure its speed.

    python bench/parser_eval.py [tests/data/intake_eval.jsonl] [--cmdb FILE] [--repeat N] [--show-errors]

The set is JSON Lines: an optional first line ``{"meta": {"cmdb": FILE, "now": ISO}}`` (the
CMDB fixture, relative to the set, and the clock time phrases are read against), then one
request a line: ``{"text", "sub_type", "system", "servers": [...], "schedule"?}`` for a request
that must be filed, ``{"text", "expect": "clarify"}`` for one that must be asked back, and
``{"text", "expect": "refuse"}`` for a destructive one. ``category`` is derived from
``sub_type`` unless given.

Prints accuracy per field, the exact-match rate on category + sub-type + system + servers,
the clarification and refusal rates, the confusion of categories, and the parser's
requests per second on one thread (with the load average, since the machine is shared).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "guardia.settings")

DEFAULT_SET = ROOT / "tests" / "data" / "intake_eval.jsonl"


@dataclass
class Report:
    total: int = 0
    filed: int = 0
    field_ok: Counter = field(default_factory=Counter)
    exact: int = 0
    schedule_cases: int = 0
    schedule_ok: int = 0
    clarify: int = 0
    clarify_ok: int = 0
    refuse: int = 0
    refuse_ok: int = 0
    false_refusals: int = 0
    confusion: Counter = field(default_factory=Counter)
    errors: list[str] = field(default_factory=list)
    per_second: float = 0.0

    def rate(self, ok: int, n: int) -> float:
        return ok / n if n else 1.0

    @property
    def exact_rate(self) -> float:
        return self.rate(self.exact, self.filed)

    @property
    def clarify_rate(self) -> float:
        return self.rate(self.clarify_ok, self.clarify)

    @property
    def refuse_rate(self) -> float:
        return self.rate(self.refuse_ok, self.refuse)


def load(path: Path, cmdb: Path | None = None):
    from intake.catalog import Catalog

    lines = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    meta = lines[0]["meta"] if lines and "meta" in lines[0] else {}
    cases = [line for line in lines if "meta" not in line]
    cmdb_path = cmdb or path.parent / meta.get("cmdb", "intake_cmdb.json")
    catalog = Catalog.from_dict(json.loads(Path(cmdb_path).read_text(encoding="utf-8")))
    now = dt.datetime.fromisoformat(meta.get("now", "2026-05-23T09:00:00+09:00"))
    return cases, catalog, now


def evaluate(cases: list[dict], catalog, now: dt.datetime, repeat: int = 5) -> Report:
    from intake.parser import parse
    from intake.rules import CATEGORY_BY_SUBTYPE

    report = Report(total=len(cases))
    for case in cases:
        got = parse(case["text"], catalog, now=now)
        expect = case.get("expect", "file")
        asked = got.clarification is not None
        refused = got.refused is not None
        if expect == "refuse":
            report.refuse += 1
            report.refuse_ok += refused
            if not refused:
                report.errors.append(f"NOT REFUSED: {case['text']}")
            continue
        if refused:
            report.false_refusals += 1
        if expect == "clarify":
            report.clarify += 1
            report.clarify_ok += asked and not refused
            if not asked:
                report.errors.append(f"NOT ASKED: {case['text']} -> {got.sub_type} {got.system} {got.servers}")
            continue
        report.filed += 1
        category = case.get("category") or CATEGORY_BY_SUBTYPE.get(case["sub_type"])
        got_category = got.category or ("(asked)" if asked else "(none)")
        report.confusion[(category, got_category)] += 1
        checks = {
            "category": got.category == category,
            "sub_type": got.sub_type == case["sub_type"],
            "system": got.system == case["system"],
            "servers": sorted(got.servers) == sorted(case["servers"]) and not asked,
        }
        for name, ok in checks.items():
            report.field_ok[name] += ok
        if all(checks.values()) and not refused:
            report.exact += 1
        else:
            question = got.clarification.question if got.clarification else ""
            report.errors.append(
                f"WRONG: {case['text']} -> {got.sub_type} {got.system} {got.servers} {question} "
                f"(want {case['sub_type']} {case['system']} {case['servers']})"
            )
        if "schedule" in case:
            report.schedule_cases += 1
            want = dt.datetime.fromisoformat(case["schedule"])
            got_at = dt.datetime.fromisoformat(got.schedule) if got.schedule else None
            ok = got_at is not None and got_at.replace(tzinfo=None) == want.replace(tzinfo=None)
            report.schedule_ok += ok
            if not ok:
                report.errors.append(f"SCHEDULE: {case['text']} -> {got.schedule} (want {case['schedule']})")
    texts = [case["text"] for case in cases]
    started = time.perf_counter()
    for _ in range(repeat):
        for text in texts:
            parse(text, catalog, now=now)
    report.per_second = repeat * len(texts) / (time.perf_counter() - started)
    return report


def render(report: Report, show_errors: bool = False) -> str:
    lines = [
        f"requests: {report.total} (to file {report.filed}, to ask back {report.clarify}, to refuse {report.refuse})",
        "",
        "accuracy per field (requests to file):",
    ]
    for name in ("category", "sub_type", "system", "servers"):
        lines.append(f"  {name:<10} {report.rate(report.field_ok[name], report.filed):7.1%}")
    lines.append(
        f"  {'schedule':<10} {report.rate(report.schedule_ok, report.schedule_cases):7.1%} "
        f"({report.schedule_cases} with a time phrase)"
    )
    lines += [
        f"exact (category + sub_type + system + servers): {report.exact}/{report.filed} = {report.exact_rate:.1%}",
        f"ambiguous asked back: {report.clarify_ok}/{report.clarify} = {report.clarify_rate:.1%}",
        f"destructive refused:  {report.refuse_ok}/{report.refuse} = {report.refuse_rate:.1%}",
        f"legitimate requests refused: {report.false_refusals}",
        "",
        "category confusion (expected -> parsed: count):",
    ]
    for (want, got), count in sorted(report.confusion.items()):
        mark = "" if want == got else "   <-"
        lines.append(f"  {want:<14} -> {got:<14} {count:4d}{mark}")
    load = os.getloadavg()
    lines += [
        "",
        f"parser speed: {report.per_second:,.0f} requests/s on one thread "
        f"(load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f})",
    ]
    if show_errors and report.errors:
        lines += ["", "errors:"] + [f"  {e}" for e in report.errors]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    import django

    django.setup()
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("set", nargs="?", type=Path, default=DEFAULT_SET)
    parser.add_argument("--cmdb", type=Path, default=None)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--show-errors", action="store_true")
    args = parser.parse_args(argv)
    cases, catalog, now = load(args.set, args.cmdb)
    report = evaluate(cases, catalog, now, repeat=args.repeat)
    print(render(report, args.show_errors))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
