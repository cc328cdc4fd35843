"""The text a browser reads for a live event (governance.events.group_messages): every field of
the event, nested data as it is, the same JSON as the dataclass's own asdict would give."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, fields

import pytest

from governance import events


@dataclass
class _Progress:
    done: int
    of: int


def test_every_field_of_the_event_reaches_the_browser_as_asdict_gives_it():
    line = {"text": "승인 완료", "time": "2026-12-01 09:00", "tags": ["a", "b"]}
    event = events.LiveEvent(
        kind="timeline", task_id="OPS-1", status="APPROVED", message="메시지", data={"line": line, "n": 2}
    )
    ((group, message),) = events.group_messages([("task.OPS-1", event)])
    assert group == "task.OPS-1" and message["task_id"] == "OPS-1"
    assert json.loads(message["text"]) == asdict(event)
    assert set(json.loads(message["text"])) == {f.name for f in fields(events.LiveEvent)}
    # Two events of one group: one message, an array in order.
    other = events.LiveEvent(kind="transition", task_id="OPS-1", status="APPROVED")
    ((_, both),) = events.group_messages([("task.OPS-1", event), ("task.OPS-1", other)])
    assert json.loads(both["text"]) == [asdict(event), asdict(other)]


def test_a_dataclass_in_the_data_is_sent_as_its_fields_and_anything_else_is_refused():
    event = events.LiveEvent(kind="server", task_id="OPS-2", data={"progress": _Progress(3, 10)})
    ((_, message),) = events.group_messages([("task.OPS-2", event)])
    assert json.loads(message["text"])["data"] == {"progress": {"done": 3, "of": 10}}
    with pytest.raises(TypeError, match="object is not JSON serializable"):
        events.group_messages([("task.OPS-2", events.LiveEvent(kind="server", data={"x": object()}))])
