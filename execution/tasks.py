"""django-q2 entry points: thin wrappers around execution.services and execution.inspections."""

from __future__ import annotations


def run_task(task_pk: int) -> str | None:
    """Enqueued by governance after commit when a task becomes APPROVED."""
    from .services import run_task as run

    return run(task_pk)


def run_inspections() -> int:
    """The recurring django-q2 Schedule: run every inspection schedule that is due."""
    from .inspections import run_due

    return run_due()
