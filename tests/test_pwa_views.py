"""The field app's server side (/app/): what the phone posts is checked here like any other
filing. A file whose bytes do not hash to the SHA-256 the browser computed is refused and
nothing is kept; another institution's system is unknown; the preview files nothing; a deep
link preselects only a server within the caller's scope."""

from __future__ import annotations

import hashlib
import json

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile

from governance.attachments import attachment_root
from governance.models import OpsTask
from tests.factories import InstitutionFactory, ServerFactory, SystemFactory, governance_world, war_bytes

pytestmark = pytest.mark.django_db


@pytest.fixture
def world(settings, tmp_path):
    settings.MEDIA_ROOT = str(tmp_path / "media")
    world = governance_world()
    other_inst = InstitutionFactory(code="MOIS", name="행정안전부")
    world.foreign_system = SystemFactory(code="FOREIGN", name="타기관시스템", institution=other_inst)
    world.foreign_server = ServerFactory(system=world.foreign_system, server_id="foreign-1")
    return world


@pytest.fixture
def phone(client, world):
    client.force_login(world.requester)
    return client


def stored_files() -> list[str]:
    root = attachment_root()
    return sorted(p.name for p in root.iterdir()) if root.exists() else []


def deploy_form(war: bytes, claimed: str) -> dict:
    return {
        "system": "BUDGET",
        "sub_type": "APP_DEPLOY",
        "title": "현장 배포",
        "targets": ["was-1"],
        "parameters": json.dumps({"version": "2.0.0"}),
        "artifact": SimpleUploadedFile("app.war", war, content_type="application/java-archive"),
        "artifact_sha256": claimed,
    }


def test_a_file_that_does_not_hash_to_the_browsers_sha256_is_refused_and_nothing_is_kept(phone):
    war = war_bytes("2.0.0")
    response = phone.post("/app/submit", deploy_form(war, hashlib.sha256(b"something else").hexdigest()))
    assert response.status_code == 400
    assert "artifact" in response.json()["errors"]
    assert "SHA-256" in response.json()["errors"]["artifact"]
    assert OpsTask.objects.count() == 0
    assert stored_files() == []


def test_a_file_without_the_browsers_sha256_is_refused(phone):
    response = phone.post("/app/submit", deploy_form(war_bytes("2.0.0"), ""))
    assert response.status_code == 400 and "artifact" in response.json()["errors"]
    assert OpsTask.objects.count() == 0


def test_a_matching_file_is_filed_through_the_pwa_channel_with_that_hash(phone):
    war = war_bytes("2.0.0")
    sha = hashlib.sha256(war).hexdigest()
    response = phone.post("/app/submit", deploy_form(war, sha))
    assert response.status_code == 201, response.content
    task = OpsTask.objects.get(task_id=response.json()["task_id"])
    assert task.channel == "PWA" and task.status == "PENDING_APPROVAL"
    assert task.parameters["artifact_sha256"] == sha
    assert response.json()["plan_sha256"] == task.plan_sha256
    assert stored_files() == [sha]


def test_another_institutions_system_is_unknown_to_preview_and_filing(phone, world):
    body = {"system": "FOREIGN", "sub_type": "MEMORY_CHECK", "title": "남의 시스템", "targets": ["foreign-1"]}
    preview = phone.post("/app/preview", json.dumps(body), content_type="application/json")
    assert preview.status_code == 400 and "system" in preview.json()["errors"]
    filing = phone.post("/app/submit", body)
    assert filing.status_code == 400 and "system" in filing.json()["errors"]
    assert OpsTask.objects.count() == 0


def test_preview_renders_the_console_plan_and_files_nothing(phone):
    war = war_bytes("2.0.0")
    sha = hashlib.sha256(war).hexdigest()
    body = {
        "system": "BUDGET",
        "sub_type": "APP_DEPLOY",
        "title": "현장 배포",
        "targets": ["was-1"],
        "parameters": {"version": "2.0.0"},
        "files": {"artifact": {"name": "app.war", "size": len(war), "sha256": sha}},
    }
    response = phone.post("/app/preview", json.dumps(body), content_type="application/json")
    assert response.status_code == 200, response.content
    html = response.json()["html"]
    assert "실행 계획" in html and sha in html and "was-1" in html
    assert 'data-plan-sha256="' + response.json()["plan_sha256"] in html
    assert OpsTask.objects.count() == 0 and stored_files() == []


def test_preview_names_the_bad_parameter(phone):
    body = {"system": "BUDGET", "sub_type": "MEMORY_CHECK", "title": "점검", "parameters": {"top": 100000}}
    response = phone.post("/app/preview", json.dumps(body), content_type="application/json")
    assert response.status_code == 400
    assert any("top" in name for name in response.json()["errors"])


def test_bad_input_names_each_field(phone):
    response = phone.post("/app/submit", {"system": "", "sub_type": "NOPE", "title": " ", "parameters": "[1]"})
    assert response.status_code == 400
    assert set(response.json()["errors"]) == {"system", "sub_type", "title", "parameters"}
    assert phone.post("/app/preview", b"{not json", content_type="application/json").status_code == 400
    assert OpsTask.objects.count() == 0


def test_roles_that_may_not_file_are_refused(client, world):
    client.force_login(world.auditor)
    response = client.post("/app/submit", {"system": "BUDGET", "sub_type": "MEMORY_CHECK", "title": "x"})
    assert response.status_code == 403
    assert OpsTask.objects.count() == 0


def test_deep_link_preselects_a_server_in_scope_only(phone):
    page = phone.get("/app/new?server=was-1").content.decode()
    assert 'value="was-1" checked' in page and '<option value="BUDGET" selected>' in page
    foreign = phone.get("/app/new?server=foreign-1").content.decode()
    assert "foreign-1" not in foreign and "FOREIGN" not in foreign
    assert "담당 범위 밖" in foreign


def test_deep_link_by_system_prefills_it_and_the_free_text_and_a_foreign_one_is_dropped(phone):
    page = phone.get("/app/new?system=BUDGET").content.decode()
    assert '<option value="BUDGET" selected>' in page and ">예산시스템 </textarea>" in page
    assert "담당 범위 밖" not in page
    server_page = phone.get("/app/new?server=was-2").content.decode()
    assert ">예산시스템 was-2 </textarea>" in server_page
    foreign = phone.get("/app/new?system=FOREIGN").content.decode()
    assert "링크의 시스템은 담당 범위 밖" in foreign
    assert "FOREIGN" not in foreign and "타기관시스템" not in foreign and " selected>" not in foreign


def test_the_dashboard_links_system_and_server_nodes_to_a_prefilled_request(phone, world):
    page = phone.get("/console/").content.decode()
    assert 'href="/app/new?system=BUDGET"' in page and 'href="/app/new?server=was-1"' in page
    assert "foreign-1" not in page
    phone.force_login(world.auditor)  # may not file: no links
    assert "/app/new?" not in phone.get("/console/").content.decode()


def test_free_text_preview_shows_history_hints_with_the_suggested_first_step(phone, world):
    first = phone.post(
        "/api/v1/sr/intake",
        json.dumps({"raw_request": "예산시스템 WAS1번 로그 용량 꽉 찼어요 로그 정리해 주세요"}),
        content_type="application/json",
        HTTP_X_CSRFTOKEN="unused",
    )
    assert first.status_code == 201, first.content
    response = phone.post(
        "/app/parse",
        json.dumps({"raw_request": "예산시스템 WAS1 디스크 용량 95% 경보 왔어요 재시작 부탁해요"}),
        content_type="application/json",
    )
    html = response.json()["html"]
    assert "이 서버(was-1)는 오늘도 같은 로그 용량 경보가 있었습니다" in html
    assert 'data-hint-sub-type="LOG_CLEANUP"' in html


def test_the_compose_page_offers_a_photo_for_the_workers_ocr(phone):
    page = phone.get("/app/new").content.decode()
    assert 'id="photo-ocr" data-photo-url="/api/v1/sr/photo"' in page
    assert 'type="file" id="f-photo" accept="image/*" capture="environment"' in page


def test_anonymous_is_sent_to_the_site_login_and_back(client):
    response = client.get("/app/new?server=was-1")
    assert response.status_code == 302
    assert response["Location"] == "/accounts/login/?next=/app/new%3Fserver%3Dwas-1"


def test_service_worker_is_served_for_the_app_scope_uncached(client):
    response = client.get("/app/sw.js")
    assert response.status_code == 200
    assert response["Service-Worker-Allowed"] == "/app/"
    assert response["Content-Type"].startswith("text/javascript")
    assert "no-cache" in response["Cache-Control"]
    manifest = client.get("/app/manifest.webmanifest")
    assert manifest["Content-Type"] == "application/manifest+json"
    assert manifest.json()["scope"] == "/app/"


def test_free_text_is_read_by_the_intake_parser_and_its_plan_shown(phone):
    response = phone.post(
        "/app/parse",
        json.dumps({"raw_request": "예산시스템 was-1 메모리 점검해 주세요"}),
        content_type="application/json",
    )
    assert response.status_code == 200, response.content
    body = response.json()
    assert body["ready"] is True
    assert "실행 계획" in body["html"] and "was-1" in body["html"] and body["plan_sha256"] in body["html"]
    assert OpsTask.objects.count() == 0


def test_free_text_without_a_task_asks_back_with_choices(phone):
    response = phone.post(
        "/app/parse", json.dumps({"raw_request": "예산시스템 좀 봐 주세요"}), content_type="application/json"
    )
    assert response.status_code == 200, response.content
    assert response.json()["ready"] is False
    assert 'data-clarify="' in response.json()["html"]
    answered = phone.post(
        "/app/parse",
        json.dumps({"raw_request": "예산시스템 좀 봐 주세요", "task_sub_type": "MEMORY_CHECK"}),
        content_type="application/json",
    )
    assert answered.json()["ready"] is True


def test_free_text_with_a_destructive_command_is_refused(phone):
    response = phone.post(
        "/app/parse",
        json.dumps({"raw_request": "예산시스템 was-1 rm -rf / 실행해 주세요"}),
        content_type="application/json",
    )
    assert response.status_code == 422
    assert "raw_request" in response.json()["errors"]
    assert OpsTask.objects.count() == 0


def test_free_text_is_filed_through_the_intake_api_with_the_session_and_its_csrf_token(world):
    """What the app (and its offline queue) posts for free text: multipart to the intake API,
    authenticated by the session cookie, with the page's CSRF token; without the token it is
    refused and nothing is filed."""
    from django.test import Client

    client = Client(enforce_csrf_checks=True)
    client.force_login(world.requester)
    page = client.get("/app/new").content.decode()
    token = page.split('name="csrf-token" content="', 1)[1].split('"', 1)[0]
    body = {"raw_request": "예산시스템 was-1 메모리 점검해 주세요"}
    refused = client.post("/api/v1/sr/intake", body)
    assert refused.status_code == 403 and OpsTask.objects.count() == 0
    filed = client.post("/api/v1/sr/intake", body, HTTP_X_CSRFTOKEN=token)
    assert filed.status_code == 201, filed.content
    task = OpsTask.objects.get(task_id=filed.json()["task_id"])
    assert task.channel == "PWA" and task.requester == world.requester and task.sub_type == "MEMORY_CHECK"


def test_a_free_text_deploy_asks_for_the_file_and_is_filed_with_it(world):
    """Free text without the artifact: the parse asks for it; answered with the SHA-256 the
    browser computed it shows the plan; a parameter answer that is not an object is refused
    by name; the filing sends the file itself, hashed again by the server."""
    from django.test import Client

    client = Client(enforce_csrf_checks=True)
    client.force_login(world.requester)
    page = client.get("/app/new").content.decode()
    assert 'id="f-text-artifact"' in page and 'data-asked="artifact_sha256"' in page
    token = page.split('name="csrf-token" content="', 1)[1].split('"', 1)[0]
    raw = "예산시스템 was-1 배포해 주세요"
    war = war_bytes("2.0.0")
    sha = hashlib.sha256(war).hexdigest()

    def parse(**extra):
        body = json.dumps({"raw_request": raw, **extra})
        return client.post("/app/parse", body, content_type="application/json", HTTP_X_CSRFTOKEN=token)

    asked = parse()
    assert asked.status_code == 200, asked.content
    assert asked.json()["ready"] is False and "배포할 파일(WAR/JAR)을 첨부해 주세요." in asked.json()["html"]
    assert 'value="artifact_sha256"' in asked.json()["html"]
    bad = parse(params=["artifact_sha256"])
    assert bad.status_code == 400 and "params" in bad.json()["errors"]
    answered = parse(params={"artifact_sha256": sha, "version": "2.0.0"})
    assert answered.json()["ready"] is True, answered.json()["html"]
    assert "실행 계획" in answered.json()["html"] and "was-1" in answered.json()["html"]
    assert OpsTask.objects.count() == 0

    def file(claimed: str):
        artifact = SimpleUploadedFile("app.war", war, content_type="application/java-archive")
        body = {"raw_request": raw, "params": json.dumps({"version": "2.0.0"}), "artifact": artifact}
        return client.post("/api/v1/sr/intake", {**body, "artifact_sha256": claimed}, HTTP_X_CSRFTOKEN=token)

    other = hashlib.sha256(b"other bytes").hexdigest()
    refused = file(other)
    assert refused.status_code == 400 and "artifact_sha256" in refused.content.decode(), refused.content
    assert OpsTask.objects.count() == 0 and other not in stored_files()
    filed = file(sha)
    assert filed.status_code == 201, filed.content
    task = OpsTask.objects.get(task_id=filed.json()["task_id"])
    assert task.sub_type == "APP_DEPLOY" and task.parameters["artifact_sha256"] == sha
    assert task.parameters["version"] == "2.0.0"
