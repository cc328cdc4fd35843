"""The server that failed comes first on the PM page, ahead of the servers that were only
stopped and rolled back with its batch (all of which are "failed" too), whatever their names."""

from __future__ import annotations

import pytest
from django.urls import reverse

from governance.results import ResultPackage
from tests.execution.conftest import clean_testbed, testbed, testbed_cmdb  # noqa: F401 - session testbed


def _rows(page: str) -> list[str]:
    return [chunk.split('"', 1)[0] for chunk in page.split('data-server="')[1:]]


def test_own_failure_ranks_before_the_batch_it_stopped_and_old_packages_keep_it():
    package = ResultPackage.from_json(
        {
            "version": 2,
            "first_failure": "srv-09",
            "servers": [
                {"server": "srv-01", "state": "ROLLED_BACK", "group": 1, "message": "롤백 완료"},
                {"server": "srv-05", "state": "SUCCEEDED", "group": 1, "version_after": "unknown"},
                {"server": "srv-07", "state": "ROLLED_BACK", "group": 1, "own_failure": "포트 응답 없음"},
                {"server": "srv-09", "state": "ROLLED_BACK", "group": 1, "own_failure": "HTTP 500"},
                # Written before own_failure existed: the engine kept the reason among the findings.
                {"server": "srv-08", "state": "ROLLED_BACK", "group": 1, "findings": {"failure": "디스크 부족"}},
            ],
        }
    )
    assert [row.server for row in package.ordered()] == ["srv-09", "srv-07", "srv-08", "srv-01", "srv-05"]
    old = next(row for row in package.servers if row.server == "srv-08")
    assert old.own_failure == "디스크 부족" and "failure" not in old.findings
    # Round trip: what the engine writes is what the page reads.
    again = ResultPackage.from_json(package.to_json())
    assert again.first_failure == "srv-09" and [r.server for r in again.ordered()][:2] == ["srv-09", "srv-07"]


@pytest.mark.testbed
def test_real_batch_failure_shows_the_failing_server_first_on_the_pm_page(client, testbed, testbed_cmdb):  # noqa: F811
    """Three servers deploy 2.0.0 in one batch; the last by name answers its health check with
    HTTP 500. The whole batch rolls back, so every row is a failure, and the PM page still puts
    the server that failed first and marks it as the cause."""
    from execution.services import run_task
    from tests.execution.engine_helpers import approved_task, deploy_parameters, fast_port_wait
    from tests.factories import UserFactory

    servers = sorted(testbed_cmdb, key=lambda s: s.server_id)[:3]
    bad = servers[-1]
    fast_port_wait(servers, 5)
    testbed.fault(bad.server_id, "health_500")
    task = approved_task(servers, parameters=deploy_parameters("2.0.0"))

    assert run_task(task.pk) == "FAILED_ROLLED_BACK"

    task.refresh_from_db()
    package = ResultPackage.from_json(task.result_package)
    assert len({row.group for row in package.servers}) == 1  # one batch
    assert all(row.failed for row in package.servers)  # the healthy ones were rolled back with it
    assert package.first_failure == bad.server_id
    by_name = {row.server: row for row in package.servers}
    assert by_name[bad.server_id].own_failure
    assert all(not by_name[s.server_id].own_failure for s in servers[:-1])
    assert package.ordered()[0].server == bad.server_id  # last by name, first on the page

    client.force_login(UserFactory(username="order-pm", role="pm"))
    page = client.get(reverse("console:validate", args=[task.task_id])).content.decode()
    assert _rows(page)[0] == bad.server_id
    cause_row = page.split(f'id="server-{bad.server_id}"', 1)[1].split("</tr>", 1)[0]
    assert 'data-cause="first"' in cause_row and "실패 원인" in cause_row
    assert page.count("배치와 함께 중지됨") == len(servers) - 1
    # The task page shows the same order.
    task_page = client.get(reverse("console:task", args=[task.task_id])).content.decode()
    assert _rows(task_page) == _rows(page)
