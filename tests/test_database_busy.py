"""SQLite busy: a request that cannot get the write lock in time answers 503 with Retry-After,
keeps nothing of the change, and succeeds when sent again.

Another process's writer is played by a second sqlite3 connection to the same database file
holding BEGIN IMMEDIATE (what a worker's transaction does), and the busy timeout is shortened.
"""

from __future__ import annotations

import sqlite3

import pytest
from django.db import connection
from rest_framework.test import APIClient

from audit.models import AuditEntry
from governance.models import OpsTask, Status
from tests.factories import file_task, governance_world

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def short_busy_timeout(sqlite_timeout):
    if connection.vendor != "sqlite":
        pytest.skip("SQLite's single writer")
    sqlite_timeout(0.3)


def test_locked_database_answers_503_and_changes_nothing(short_busy_timeout):
    world = governance_world()
    task = file_task(world, "SERVICE_RESTART", title="재시작")
    OpsTask.objects.filter(pk=task.pk).update(status=Status.APPROVED)
    api = APIClient()
    api.force_authenticate(world.pm)
    entries = AuditEntry.objects.count()
    blocker = sqlite3.connect(str(connection.settings_dict["NAME"]), isolation_level=None)
    blocker.execute("BEGIN IMMEDIATE")
    try:
        response = api.post(f"/api/v1/tasks/{task.task_id}/stop/", {"reason": "정지"}, format="json")
    finally:
        blocker.execute("ROLLBACK")
        blocker.close()
    assert response.status_code == 503
    assert response["Retry-After"] == "2"
    assert "잠시 후 다시 시도" in response.json()["detail"]
    task.refresh_from_db()
    assert (task.status, task.stop_requested) == (Status.APPROVED, False)
    assert AuditEntry.objects.count() == entries
    again = api.post(f"/api/v1/tasks/{task.task_id}/stop/", {"reason": "정지"}, format="json")
    assert again.status_code == 200, again.content
    task.refresh_from_db()
    assert task.status == Status.ABORTED and task.stop_requested
