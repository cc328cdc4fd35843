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


@pytest.mark.django_db(transaction=True)
def test_a_decisions_timeline_lines_are_made_after_its_commit_and_cannot_fail_it(world, submit, client, monkeypatch):
    """The lines are rendered once the decision has committed (the chain head's lock is released
    by then); a line that cannot be made loses that live update only, not the decision."""
    from django.db import connection
    from rest_framework.authtoken.models import Token

    from audit.models import AuditEntry
    from governance import reports
    from governance.models import OpsTask

    steps = [submit("SERVICE_RESTART", targets=world.servers[:1]).steps.get(step_order=1) for _ in range(2)]
    token = Token.objects.create(user=world.owner).key
    made_in_transaction: list[bool] = []
    real = reports.live_lines
    monkeypatch.setattr(
        reports, "live_lines", lambda sources: made_in_transaction.append(connection.in_atomic_block) or real(sources)
    )
    sent: list[tuple[str, events.LiveEvent]] = []
    monkeypatch.setattr(events, "send_many", sent.extend)

    def decide(step):
        body = {"step_id": step.pk, "decision": "APPROVED"}
        return client.post("/api/v1/approval/process", body, "application/json", HTTP_AUTHORIZATION=f"Token {token}")

    assert decide(steps[0]).status_code == 200
    assert made_in_transaction and not any(made_in_transaction)
    timeline = [event.data["action"] for _, event in sent if event.kind == "timeline"]
    assert timeline == ["notification", "approval.decided", "task.transition"]  # queued in that order
    assert {event.kind for _, event in sent} >= {"transition", "notification", "timeline"}

    monkeypatch.setattr(reports, "live_lines", lambda sources: 1 / 0)
    sent.clear()
    entries = AuditEntry.objects.count()
    assert decide(steps[1]).status_code == 200
    assert OpsTask.objects.get(pk=steps[1].task_id).status == "APPROVED" and AuditEntry.objects.count() == entries + 2
    assert "timeline" not in {event.kind for _, event in sent} and "transition" in {event.kind for _, event in sent}
