"""A batch of live timeline lines (what the execution recorder sends for a drain's audited steps):
each the line one entry gets alone, in the site's language whatever language is active."""

from __future__ import annotations

import pytest
from django.utils import translation

import audit
from governance.reports import live_line, live_lines


@pytest.mark.django_db
def test_a_batch_of_lines_is_each_entry_s_own_line_in_the_site_language():
    entries = audit.record_many(
        [
            ("system", "execution.step", {"task": "OPS-1", "target": "srv-1", "command": "uptime", "result_code": 0,
                                          "payload": {"step": "확인", "state": "OK"}}),
            ("system", "task.transition", {"task": "OPS-1", "payload": {"source": "APPROVED", "target": "EXECUTING"}}),
            ("system", "audit.verify", {"result_code": "ok", "payload": {"source": "console"}}),
        ]
    )  # fmt: skip
    with translation.override("en"):  # the viewer's language must not leak into a line every viewer gets
        batch = live_lines(entries)
        alone = [live_line(entry) for entry in entries]
        assert translation.get_language() == "en"
    assert batch == alone
    assert [line["kind"] for line in batch] == ["execution.step", "task.transition", "audit.verify"]
    assert [line["kind_label"] for line in batch] == ["원격 명령 실행", "상태 변경", "무결성 검증"]
    assert batch[0]["text"] == "srv-1: 확인 → 0"
    assert batch[1]["text"].startswith("상태 변경: ")
    assert live_lines([]) == []
