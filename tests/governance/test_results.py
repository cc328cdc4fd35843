"""The result-package contract (governance.results) and the PM page that renders it."""

from __future__ import annotations

import io
import zipfile

import pytest
from django.urls import reverse

from governance.demo_artifact import build_war
from governance.models import OpsTask, Status
from governance.results import HealthCheck, ResultPackage, ServerResult
from tests.factories import governance_world


def deploy_package() -> ResultPackage:
    http = HealthCheck(name="http", kind="http", ok=True, status=200, latency_ms=4, detail="HTTP 200 in 4 ms")
    return ResultPackage(
        playbook="APP_DEPLOY",
        playbook_version="1.2.0",
        outcome="SUCCEEDED",
        expected_version="1.1.0",
        execution=7,
        servers=[
            ServerResult(
                server="srv-01",
                state="SUCCEEDED",
                group=1,
                version_before="1.0.0",
                version_after="1.1.0",
                health=[HealthCheck(name="port", kind="port", ok=True, latency_ms=12), http],
            ),
            ServerResult(
                server="srv-02",
                state="SUCCEEDED",
                group=1,
                version_before="1.0.0",
                version_after="unknown",
                health=[http],
            ),
            ServerResult(
                server="srv-03",
                state="ROLLED_BACK",
                group=2,
                message="port 18080 not answering",
                version_before="1.0.0",
                version_after="1.0.0",
                log_excerpt="SEVERE: bind failed",
            ),
            ServerResult(server="srv-04", state="SUCCEEDED", group=2, version_before="1.0.0", version_after="0.9.0"),
        ],
    )


def test_round_trip_keeps_every_field_and_counts():
    package = deploy_package()
    data = package.to_json()
    assert data["version"] == 2
    assert data["summary"] == {
        "total": 4,
        "succeeded": 3,
        "failed": 1,
        "version_problems": 3,
        "states": {"SUCCEEDED": 3, "ROLLED_BACK": 1},
    }
    # The execution layer's inspection reader relies on these three keys per server.
    assert {"server", "state", "message"} <= set(data["servers"][0])
    again = ResultPackage.from_json(data)
    assert again.to_json() == data
    assert again.servers[0].health[0].latency_ms == 12 and again.servers[0].health[1].status == 200


def test_failures_then_version_problems_first():
    package = deploy_package()
    assert [row.server for row in package.ordered()] == ["srv-03", "srv-02", "srv-04", "srv-01"]
    problems = {row.server: package.problem(row) for row in package.servers}
    assert problems == {"srv-01": "", "srv-02": "unknown", "srv-03": "mismatch", "srv-04": "mismatch"}


def test_reads_the_engines_first_shape():
    legacy = {
        "execution": 3,
        "playbook": "APP_DEPLOY",
        "playbook_version": "1.2.0",
        "summary": {"SUCCEEDED": 1},
        "servers": [
            {
                "server": "srv-01",
                "state": "SUCCEEDED",
                "group": 1,
                "message": "",
                "health": {"http": {"status": 200, "latency_ms": 5, "body": "OK version=unknown"}},
            }
        ],
        "findings": {"srv-01": {"free_disk_mb": 900, "health": {}}},
        "log_excerpt": [{"server": "srv-01", "tail": "INFO started"}],
        "reason": "",
    }
    package = ResultPackage.from_json(legacy)
    row = package.servers[0]
    assert row.version_after == "unknown" and package.problem(row) == "unknown"
    assert row.health[0].status == 200 and row.health[0].latency_ms == 5
    assert row.findings == {"free_disk_mb": 900} and row.log_excerpt == "INFO started"


def test_reads_hand_made_and_inspection_shapes():
    manual = ResultPackage.from_json(
        {
            "diff": "-a\n+b\n",
            "log": ["shutdown.sh exit 0"],
            "health": [{"server": "was-1", "ok": False, "detail": "HTTP 500"}],
        }
    )
    assert manual.diff == "-a\n+b\n" and manual.log == "shutdown.sh exit 0"
    assert manual.servers[0].server == "was-1" and manual.servers[0].failed
    inspection = ResultPackage.from_json({"findings": {"schedule": "daily", "servers": {"was-1": "92 % used"}}})
    assert inspection.findings["schedule"] == "daily" and not inspection.servers
    assert ResultPackage.from_json(None).empty and ResultPackage.from_json("garbage").empty


@pytest.fixture
def waiting_task(db):
    world = governance_world()
    task = OpsTask.objects.create(
        task_id="OPS-20260101-901",
        category="DEPLOY",
        sub_type="APP_DEPLOY",
        title="WAS 1.1.0 배포",
        system=world.system,
        requester=world.requester,
        risk="HIGH",
        playbook="APP_DEPLOY",
    )
    OpsTask.objects.filter(pk=task.pk).update(
        status=Status.PENDING_PM_VALIDATION, result_package=deploy_package().to_json()
    )
    world.task = task
    return world


def test_pm_page_lists_failures_and_version_problems_first_in_words(client, waiting_task):
    client.force_login(waiting_task.pm)
    page = client.get(reverse("console:validate", args=[waiting_task.task.task_id])).content.decode()
    order = [page.index(f'id="server-{sid}"') for sid in ("srv-03", "srv-02", "srv-04", "srv-01")]
    assert order == sorted(order)
    assert "버전 확인 불가" in page and "unknown" in page
    assert "버전 불일치: 0.9.0 (기대 1.1.0)" in page
    assert "롤백 완료" in page and "port 18080 not answering" in page and "SEVERE: bind failed" in page
    assert "HTTP 200" in page and "12 ms" in page
    assert "대상 4대 · 성공 3대 · 실패 1대" in page and "버전 문제 3대" in page
    # Nothing is dumped raw: no Python dict reprs, no English keys section.
    assert "{&#x27;" not in page and "기타" not in page


def test_pm_page_still_renders_an_old_package(client, waiting_task):
    OpsTask.objects.filter(pk=waiting_task.task.pk).update(
        result_package={
            "servers": [
                {
                    "server": "srv-09",
                    "state": "SUCCEEDED",
                    "group": 1,
                    "message": "",
                    "health": {"http": {"status": 200, "latency_ms": 3, "body": "OK version=2.0.0"}},
                }
            ],
            "findings": {"srv-09": {"free_disk_mb": 800}},
            "log_excerpt": [],
            "reason": "",
        }
    )
    client.force_login(waiting_task.pm)
    page = client.get(reverse("console:validate", args=[waiting_task.task.task_id])).content.decode()
    assert 'id="server-srv-09"' in page and "2.0.0" in page and "배포 경로 여유 공간(MB)" in page


def test_sample_war_is_a_real_zip_with_manifest_and_stored_version():
    data = build_war("1.1.0")
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        assert "Implementation-Version: 1.1.0" in archive.read("META-INF/MANIFEST.MF").decode()
        info = archive.getinfo("WEB-INF/classes/version.properties")
        assert info.compress_type == zipfile.ZIP_STORED
    assert b"version=1.1.0" in data
    assert build_war("1.1.0") == data  # same version, same bytes, same SHA-256
    with pytest.raises(ValueError, match="version"):
        build_war("1.0; rm -rf /")


def test_testbed_was_reads_the_manifest_then_the_plain_text(tmp_path):
    from testbed.was import read_version

    (tmp_path / "app").mkdir()
    war = tmp_path / "app" / "app.war"
    war.write_bytes(build_war("1.1.0"))
    assert read_version(str(tmp_path)) == "1.1.0"
    with zipfile.ZipFile(war, "w") as archive:  # a WAR whose manifest names another version wins
        archive.writestr("META-INF/MANIFEST.MF", "Manifest-Version: 1.0\r\nImplementation-Version: 2.0.0\r\n")
        archive.writestr("WEB-INF/version.properties", "version=1.9.9\n", compress_type=zipfile.ZIP_STORED)
    assert read_version(str(tmp_path)) == "2.0.0"
    war.write_bytes(b"version=1.0.0\n")  # the testbed's plain-text stand-in
    assert read_version(str(tmp_path)) == "1.0.0"
    war.write_bytes(b"any file at all")
    assert read_version(str(tmp_path)) == "unknown"
    war.unlink()
    assert read_version(str(tmp_path)) == "missing"


def test_sample_war_download_for_requesters_only(client, waiting_task):
    url = reverse("console:demo_artifact")
    client.force_login(waiting_task.requester)
    response = client.get(url, {"version": "1.1.0"})
    assert response.status_code == 200 and response.content == build_war("1.1.0")
    assert response["Content-Disposition"] == 'attachment; filename="guardia-demo-1.1.0.war"'
    bad = client.get(url, {"version": '1"\r\nSet-Cookie: x=1'})
    assert bad.status_code == 400 and "version" in bad.content.decode() and "Set-Cookie" not in bad
    client.force_login(waiting_task.auditor)  # may not file requests
    assert client.get(url, {"version": "1.1.0"}).status_code == 403


# --- after a real deploy on the sshd testbed ---------------------------------------------
from tests.execution.conftest import clean_testbed, testbed, testbed_cmdb  # noqa: E402,F401 - session testbed


@pytest.mark.testbed
def test_pm_page_after_real_deploys_on_the_testbed(client, testbed_cmdb):  # noqa: F811
    """Two real runs over SSH: the sample WAR for 1.1.0 with the version checked, then a file
    with no version and the check left empty: the page says every server serves "unknown"."""
    from execution.services import run_task, store_artifact
    from tests.execution.engine_helpers import approved_task
    from tests.factories import UserFactory

    servers = sorted(testbed_cmdb, key=lambda s: s.server_id)[:2]
    pm = UserFactory(username="result-pm", role="pm")
    client.force_login(pm)

    def deploy(data: bytes, version: str) -> OpsTask:
        artifact = store_artifact(data, "app.war")
        task = approved_task(
            servers,
            parameters={"artifact_sha256": artifact["sha256"], "version": version, "rollout": {"canary_share": 0}},
        )
        assert run_task(task.pk) == "SUCCEEDED"
        task.refresh_from_db()
        assert task.status == Status.PENDING_PM_VALIDATION
        return task

    task = deploy(build_war("1.1.0"), "1.1.0")
    package = ResultPackage.from_json(task.result_package)
    assert package.expected_version == "1.1.0" and package.summary.succeeded == 2
    for row in package.servers:
        assert (row.version_before, row.version_after, package.problem(row)) == ("1.0.0", "1.1.0", "")
        http = next(check for check in row.health if check.kind == "http")
        assert http.ok and http.status == 200 and http.latency_ms is not None
        assert {"port", "process", "http"} <= {check.kind for check in row.health}
    page = client.get(reverse("console:validate", args=[task.task_id])).content.decode()
    assert "대상 2대 · 성공 2대 · 실패 0대" in page and "버전 문제 없음" in page
    for server in servers:
        assert f'id="server-{server.server_id}"' in page
    assert page.count("HTTP 200") >= 2 and "배포 경로 여유 공간(MB)" in page

    # Any file, no version typed: it deploys, and the PM sees that nobody knows what runs.
    task = deploy(b"PK-not-really-a-war " + b"#" * 512, "")
    package = ResultPackage.from_json(task.result_package)
    assert [(row.version_before, row.version_after) for row in package.servers] == [("1.1.0", "unknown")] * 2
    assert package.summary.version_problems == 2
    page = client.get(reverse("console:validate", args=[task.task_id])).content.decode()
    assert page.count("버전 확인 불가") == 2 and 'data-version-problem="unknown"' in page
    assert "버전 문제 2대" in page


@pytest.mark.testbed
def test_failed_real_deploy_keeps_its_package_and_the_task_page_shows_it(client, testbed_cmdb):  # noqa: F811
    """A real run that rolls back over SSH: any file with 1.1.0 typed as the version. The stand-in
    then serves "unknown", the health check refuses it and the run rolls back; the engine's package
    stays on the task, and the task page shows the failing server first with its reason in Korean."""
    from execution.services import run_task, store_artifact
    from tests.execution.engine_helpers import approved_task
    from tests.factories import UserFactory

    servers = sorted(testbed_cmdb, key=lambda s: s.server_id)[:2]
    pm = UserFactory(username="result-pm-failed", role="pm")
    client.force_login(pm)
    artifact = store_artifact(b"PK-not-really-a-war " + b"#" * 512, "app.war")
    task = approved_task(
        servers,
        parameters={"artifact_sha256": artifact["sha256"], "version": "1.1.0", "rollout": {"canary_share": 0}},
    )
    assert run_task(task.pk) == "FAILED_ROLLED_BACK"
    task.refresh_from_db()
    assert task.status == Status.FAILED_ROLLED_BACK
    package = ResultPackage.from_json(task.result_package)
    assert package.expected_version == "1.1.0" and package.summary.failed >= 1
    # Both servers ran in one batch: the one whose check failed first names the task's cause (both
    # serve "unknown", so the other's check may fail too, or it was stopped and rolled back with
    # it). Each keeps its own reason next to "롤백 완료".
    sentence = "unknown 버전을 제공합니다 (기대 1.1.0)"
    causes = [row for row in package.servers if sentence in row.message]
    cause = next(row for row in causes if f"{row.server}이(가) {sentence}" in task.failure_reason)
    assert cause.failed and cause.state == "ROLLED_BACK"
    assert f"{cause.server}이(가) {sentence}" in cause.message
    assert all(row.failed and row.message.startswith("롤백 완료") for row in package.servers)

    page = client.get(reverse("console:task", args=[task.task_id])).content.decode()
    assert 'id="server-results"' in page
    rows = [chunk.split('"', 1)[0] for chunk in page.split('data-server="')[1:]]
    assert rows == [row.server for row in package.ordered()]  # failures first, as on the PM page
    assert set(rows) == {s.server_id for s in servers}
    cause_row = page.split(f'id="server-{cause.server}"', 1)[1].split("</tr>", 1)[0]
    assert f"{cause.server}이(가) {sentence}" in cause_row and 'data-state="ROLLED_BACK"' in page
    for english in ("not answering", " serves ", "expected 1.1.0", "refused before"):
        assert english not in page
