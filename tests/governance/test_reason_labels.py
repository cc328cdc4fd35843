"""Every reason the code writes with a transition is shown in Korean on the timeline: the
stored reason stays a stable English key (the audit chain keeps it as written), and
`governance.labels.reason_label` must know its shape. The test reads every
`apply_transition(..., reason=...)` in the apps, fills its placeholders and checks that a
pattern turns it into Korean."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

from governance.labels import reason_label

ROOT = Path(__file__).resolve().parents[2]
HANGUL = re.compile(r"[\uac00-\ud7a3]")


def written_reasons() -> list[tuple[str, str]]:
    found = []
    for app in ("governance", "execution", "intake"):
        for path in sorted((ROOT / app).rglob("*.py")):
            if "migrations" in path.parts:
                continue
            for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
                if not (
                    isinstance(node, ast.Call)
                    and getattr(node.func, "id", getattr(node.func, "attr", "")) == "apply_transition"
                ):
                    continue
                for keyword in node.keywords:
                    if keyword.arg != "reason":
                        continue
                    if isinstance(keyword.value, ast.Constant) and isinstance(keyword.value.value, str):
                        sample = keyword.value.value
                    elif isinstance(keyword.value, ast.JoinedStr):
                        sample = "".join(
                            part.value if isinstance(part, ast.Constant) else "1" for part in keyword.value.values
                        )
                    else:
                        continue  # a reason passed through from elsewhere (already labelled there)
                    found.append((f"{path.relative_to(ROOT)}:{node.lineno}", sample))
    return found


REASONS = written_reasons()


def test_the_scan_finds_the_transitions():
    assert len(REASONS) >= 8  # approvals, auto-approval, expiry, kill switch, validation, rework, take-over, agent


@pytest.mark.parametrize(("where", "sample"), REASONS, ids=[where for where, _ in REASONS])
def test_every_written_reason_reads_in_korean(where, sample):
    shown = reason_label(sample)
    assert shown != sample and HANGUL.search(shown), f"{where}: {sample!r} has no Korean label"
