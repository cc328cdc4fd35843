"""docs/security.md names, for every attack class, the test that performs it: each named test
must exist, so a renamed or deleted test cannot leave the security page pointing at nothing."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
REFERENCE = re.compile(r"(tests/[\w/]+\.py)?::(\w+)")


def named_tests(text: str) -> list[tuple[str, str]]:
    """(file, name) for every ``tests/x.py::name`` and every ``::name`` that continues it on a line."""
    found = []
    for line in text.splitlines():
        current = None
        for match in REFERENCE.finditer(line):
            current = match.group(1) or current
            if current:
                found.append((current, match.group(2)))
    return found


def test_every_test_named_by_the_security_page_exists():
    references = named_tests((ROOT / "docs" / "security.md").read_text(encoding="utf-8"))
    assert len(references) > 100  # the page names a test for every attack class
    missing = []
    for path, name in references:
        source = ROOT / path
        if not source.exists() or not re.search(rf"(def|class) {name}\b", source.read_text(encoding="utf-8")):
            missing.append(f"{path}::{name}")
    assert not missing, f"docs/security.md names tests that do not exist: {missing}"


def test_the_reference_reader_follows_continuations():
    line = "| x | y | tests/a.py::test_one, ::test_two; tests/b.py::test_three |"
    assert named_tests(line) == [("tests/a.py", "test_one"), ("tests/a.py", "test_two"), ("tests/b.py", "test_three")]
