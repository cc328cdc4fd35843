"""A decision's row writes with their UPDATE compiled once (governance.compiled.update_row): the
same row as Django's save(update_fields=...) writes, and the task's transition still refused
when the row left the state it was read in, as django-fsm's ConcurrentTransitionMixin does."""

from __future__ import annotations

import pytest
from django.db import transaction
from django.utils import timezone
from django_fsm import ConcurrentTransition

from audit.models import AuditEntry
from governance.compiled import update_row
from governance.models import ApprovalStep, OpsTask, Status, StepStatus
from governance.transitions import apply_transition, lock_task


def _row(model, pk) -> dict:
    return model.objects.filter(pk=pk).values().get()


def test_the_row_written_is_the_one_djangos_save_writes(world, submit):
    first = submit("SERVICE_RESTART", targets=world.servers[:1]).steps.get(step_order=1)
    second = submit("SERVICE_RESTART", targets=world.servers[:1]).steps.get(step_order=1)
    untouched = _row(ApprovalStep, second.pk)
    now = timezone.now()
    for step, write in ((first, lambda s, f: s.save(update_fields=f)), (second, update_row)):
        step.status, step.actual_approver, step.comments, step.decided_at = (
            StepStatus.APPROVED, world.owner, "확인했습니다", now
        )  # fmt: skip
        step.sla_deadline = now  # changed on the object but not named: not written
        write(step, ("status", "actual_approver", "comments", "decided_at"))
    ours, djangos = _row(ApprovalStep, second.pk), _row(ApprovalStep, first.pk)
    columns = ("status", "actual_approver_id", "comments", "decided_at")
    assert (
        [ours[c] for c in columns]
        == [djangos[c] for c in columns]
        == [StepStatus.APPROVED, world.owner.pk, "확인했습니다", now]
    )
    assert {k: v for k, v in ours.items() if k not in columns} == {
        k: v for k, v in untouched.items() if k not in columns
    }
    assert update_row(ApprovalStep(pk=10**9), ("comments",)) == 0  # no such row: nothing written


@pytest.mark.django_db(transaction=True)
def test_a_transition_of_a_task_changed_since_it_was_read_is_refused_and_writes_nothing(world, submit):
    task = submit("SERVICE_RESTART", targets=world.servers[:1])
    assert task.status == Status.PENDING_APPROVAL
    entries = AuditEntry.objects.count()
    with transaction.atomic():
        stale = lock_task(pk=task.pk)
        # Another path moved the row meanwhile (what the FSM's check exists for).
        OpsTask.objects.filter(pk=task.pk).update(status=Status.REJECTED)
        with pytest.raises(ConcurrentTransition):
            apply_transition("system", stale, "approve", reason="test", changed=())
    row = _row(OpsTask, task.pk)
    assert row["status"] == Status.REJECTED and AuditEntry.objects.count() == entries

    OpsTask.objects.filter(pk=task.pk).update(status=Status.PENDING_APPROVAL)
    before = _row(OpsTask, task.pk)
    with transaction.atomic():
        fresh = lock_task(pk=task.pk)
        apply_transition("system", fresh, "approve", reason="test", changed=())
    after = _row(OpsTask, task.pk)
    assert after["status"] == Status.APPROVED and after["updated_at"] > before["updated_at"]
    assert {k for k in after if after[k] != before[k]} <= {"status", "updated_at", "approved_at", "current_approver_id"}


def test_an_inbox_row_inserted_is_the_one_djangos_save_inserts(world, submit):
    from governance.compiled import insert_row
    from governance.models import Notification

    task = submit("SERVICE_RESTART", targets=world.servers[:1])
    now = timezone.now()
    actions = [{"label": "승인", "decision": "APPROVED", "step": 7}]
    made = [
        Notification(user=world.owner, task=task, kind="approval", message="승인 요청", link="/x/", actions=actions,
                     created_at=now)
        for _ in range(2)
    ]  # fmt: skip
    made[0].save()
    insert_row(made[1])
    assert made[1].pk is not None and made[1].pk != made[0].pk and not made[1]._state.adding
    djangos, ours = (_row(Notification, note.pk) for note in made)
    assert {k: v for k, v in ours.items() if k != "id"} == {k: v for k, v in djangos.items() if k != "id"}
    assert ours["actions"] == actions and ours["task_id"] == task.pk and ours["read_at"] is None


def test_a_model_with_save_receivers_is_written_by_djangos_save_so_they_run(world, submit):
    from django.db.models.signals import post_save

    from governance.compiled import insert_row
    from governance.models import Notification

    task = submit("SERVICE_RESTART", targets=world.servers[:1])
    heard: list[tuple[str, bool]] = []

    def receiver(sender, instance, created, **_kw):
        heard.append((type(instance).__name__, created))

    post_save.connect(receiver, sender=Notification, dispatch_uid="compiled-test")
    post_save.connect(receiver, sender=OpsTask, dispatch_uid="compiled-test-task")
    try:
        note = Notification(user=world.owner, task=task, kind="info", message="m", link="/x/")
        insert_row(note)
        task.title = "바뀐 제목"
        assert update_row(task, ["title"], where={"status": task.status}) == 1
        assert update_row(task, ["title"], where={"status": "NOT-A-STATE"}) == 0  # still judged
    finally:
        post_save.disconnect(dispatch_uid="compiled-test", sender=Notification)
        post_save.disconnect(dispatch_uid="compiled-test-task", sender=OpsTask)
    assert heard == [("Notification", True), ("OpsTask", False)]
    assert OpsTask.objects.get(pk=task.pk).title == "바뀐 제목" and Notification.objects.filter(pk=note.pk).exists()
