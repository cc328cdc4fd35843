"""django-q2 entry points: thin wrappers around execution.services, leases, reaper and inspections."""

from __future__ import annotations


def run_task(task_pk: int) -> str | None:
    """Enqueued by governance after commit when a task becomes APPROVED (and again when the
    servers it waited for are free). Runs holding the task's claim and servers, or waits."""
    from .leases import run_leased
    from .services import run_task as run

    return run_leased(task_pk, run)


def run_inspections() -> int:
    """The recurring django-q2 Schedule: run every inspection schedule that is due."""
    from .inspections import run_due

    return run_due()


def reap_executions() -> int:
    """The recurring django-q2 Schedule (and each site gateway's own sweep): recover tasks whose
    worker is gone, and raise the alarm for a gateway gone silent."""
    from .gateways import raise_silent_alarms
    from .reaper import sweep

    raise_silent_alarms()
    return len(sweep())


def deploy_code_change(task_pk: int, pm_pk: int) -> str:
    """Enqueued by governance after a PM accepted a CODE_FIX round: file the APP_DEPLOY of its
    artifact, which then goes through the approval policy and the rolling engine."""
    from .agent.deploy import file_deploy

    return file_deploy(task_pk, pm_pk)
