"""Tasks waiting on one owner's approval, made in bulk (one system per owner): the SQLite
burst test and the approval API benchmark drive the REST API with them."""

from __future__ import annotations

from django.utils import timezone
from rest_framework.authtoken.models import Token

from cmdb.models import System, SystemOwner
from governance.models import ApprovalStep, OpsTask, Status


def pending_owner_approvals(
    *, owner, supervisor, requester, institution, code: str, name: str, count: int, title: str
) -> tuple[str, list[int]]:
    """Create system `code` owned by `owner` and `count` tasks on it, each at its first
    (owner) step; return the owner's API token and the step ids."""
    now = timezone.now()
    system = System.objects.create(code=code, name=name, institution=institution)
    SystemOwner.objects.create(system=system, owner=owner, supervisor=supervisor)
    tasks = OpsTask.objects.bulk_create(
        OpsTask(
            task_id=f"OPS-{code}-{i:05d}",
            category="INFRA_CONTROL",
            sub_type="SERVICE_RESTART",
            title=title,
            system=system,
            requester=requester,
            risk="MEDIUM",
            status=Status.PENDING_APPROVAL,
        )
        for i in range(count)
    )
    steps = ApprovalStep.objects.bulk_create(owner_step(t, owner, now) for t in tasks)
    return Token.objects.create(user=owner).key, [s.pk for s in steps]


def owner_step(task: OpsTask, owner, now) -> ApprovalStep:
    """The task's first step, the owner's, active since ``now`` with an hour to go (not saved)."""
    return ApprovalStep(
        task=task,
        step_order=1,
        role="owner",
        assigned_to=owner,
        original_owner=owner,
        activated_at=now,
        sla_deadline=now + timezone.timedelta(hours=1),
    )
