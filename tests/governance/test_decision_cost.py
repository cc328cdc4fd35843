"""What one approval decision costs the database, and that its shortcuts change nothing:
the step locked by one compiled query is the ORM's own step, and the decision, the
transition and the next assignment go into the audit chain with one append."""

from __future__ import annotations

from django.db import connection, transaction
from django.test.utils import CaptureQueriesContext
from django_q.models import OrmQ
from rest_framework.test import APIClient

from audit.models import AuditEntry
from audit.verify import verify_chain
from governance import transitions
from governance.models import ApprovalStep

URL = "/api/v1/approval/process"


def decide(user, step_id: int):
    client = APIClient()
    client.force_authenticate(user)
    with CaptureQueriesContext(connection) as queries:
        response = client.post(URL, {"step_id": step_id, "decision": "APPROVED", "comments": "ok"}, format="json")
    assert response.status_code == 200, response.content
    return response.json(), [q["sql"] for q in queries.captured_queries]


def test_the_locked_step_is_the_orms_own_with_its_task_and_people(world, submit):
    task = submit("APP_DEPLOY")
    step_id = task.steps.get(step_order=1).pk
    related = ["task__" + name for name in transitions.TASK_RELATED]
    expected = ApprovalStep.objects.select_related("task", *related).get(pk=step_id)
    with transaction.atomic():
        step = transitions.lock_step(world.owner, step_id)
        again = transitions.lock_step(world.owner, step_id)  # the second call runs the compiled SQL
    for found in (step, again):
        fields = [f.attname for f in ApprovalStep._meta.concrete_fields]
        assert [getattr(found, f) for f in fields] == [getattr(expected, f) for f in fields]
        assert found.activated_at.tzinfo is not None and found.activated_at == expected.activated_at
        assert found.task.plan == expected.task.plan and found.task.created_at == expected.task.created_at
        assert found.task.requester.username == world.requester.username
        assert found.task.system.institution.code == expected.task.system.institution.code
        assert found.task.system.ownership.owner == world.owner


def test_a_decision_appends_once_and_queues_its_run_in_the_same_transaction(world, submit):
    task = submit("APP_DEPLOY")
    before = AuditEntry.objects.count()
    first, sql = decide(world.owner, task.steps.get(step_order=1).pk)
    assert first["result"] == "NEXT_STEP"
    # The decision and the pm step's assignment: two entries, one chain-head round.
    assert AuditEntry.objects.count() == before + 2
    assert sum(s.startswith('SELECT seq, entry_hash FROM "TB_AUDIT_HEAD"') for s in sql) == 1
    assert sum('INSERT INTO "TB_AUDIT_LOG"' in s for s in sql) == 1  # one executemany ("2 times: INSERT ...")
    final, sql = decide(world.pm, task.steps.get(step_order=2).pk)
    assert final["result"] == "APPROVED" and final["task_status"] == "APPROVED"
    assert sum(s.startswith('SELECT seq, entry_hash FROM "TB_AUDIT_HEAD"') for s in sql) == 1
    assert len(sql) <= 22, "\n".join(sql)
    # The run was queued inside the decision's transaction (before its audit append, the last
    # thing the transaction writes), not by an on-commit hook after it.
    head = next(i for i, s in enumerate(sql) if s.startswith('SELECT seq, entry_hash FROM "TB_AUDIT_HEAD"'))
    queued = [i for i, s in enumerate(sql) if s.startswith('INSERT INTO "django_q_ormq"')]
    assert len(queued) == 1 and queued[0] < head
    assert [q.task["args"] for q in OrmQ.objects.all()] == [(task.pk,)]
    actions = list(AuditEntry.objects.filter(task=task.task_id).order_by("seq").values_list("action", flat=True))
    assert actions[-4:] == ["approval.decided", "approval.assigned", "approval.decided", "task.transition"]
    assert verify_chain().ok
