#!/usr/bin/env python3
"""Tests of the demo application: the page has one heading and its tags are balanced."""

import re
import sys

page = open("src/index.html", encoding="utf-8").read()
failures = []
if len(re.findall(r"<h1>", page)) != 1:
    failures.append("index.html must have exactly one <h1>")
for tag in ("html", "head", "body", "title", "h1", "p"):
    if len(re.findall(f"<{tag}[ >]", page)) != len(re.findall(f"</{tag}>", page)):
        failures.append(f"unbalanced <{tag}>")
for failure in failures:
    print(f"FAIL {failure}")
print(f"{3 - min(len(failures), 3)} passed, {len(failures)} failed")
sys.exit(1 if failures else 0)
