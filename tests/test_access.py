"""Access basics: login throttling (django-axes) and the client-network allowlist."""

from __future__ import annotations

import pytest
from django.core.exceptions import ImproperlyConfigured
from django.test import Client

from audit.models import AuditEntry
from guardia.middleware import parse_networks
from tests.factories import UserFactory

LOGIN = "/accounts/login/"


def test_repeated_failures_lock_the_account_even_for_the_right_password(db, settings):
    settings.AXES_FAILURE_LIMIT = 3
    UserFactory(username="lead", role="team_lead")
    client = Client()
    for _ in range(3):
        client.post(LOGIN, {"username": "lead", "password": "wrong"}, REMOTE_ADDR="10.0.0.7")
    locked = client.post(LOGIN, {"username": "lead", "password": "pw-Guardia-1"}, REMOTE_ADDR="10.0.0.7")
    assert locked.status_code in (403, 429)
    assert "_auth_user_id" not in client.session
    assert AuditEntry.objects.filter(action__icontains="login_failed").count() >= 3
    # Another address is a different (username, address) pair and may still log in.
    other = Client()
    response = other.post(LOGIN, {"username": "lead", "password": "pw-Guardia-1"}, REMOTE_ADDR="10.0.0.8")
    assert response.status_code == 302 and "_auth_user_id" in other.session


def test_allowlist_admits_bastion_ranges_only(db, settings):
    settings.CLIENT_ALLOWLIST = ["10.10.0.0/16", "192.168.5.0/24"]
    client = Client()  # middleware is built per client handler, after the setting changed
    assert client.get(LOGIN, REMOTE_ADDR="10.10.3.4").status_code == 200
    assert client.get(LOGIN, REMOTE_ADDR="192.168.5.9").status_code == 200
    refused = client.get(LOGIN, REMOTE_ADDR="172.16.0.1")
    assert refused.status_code == 403 and b"client network not allowed" in refused.content
    assert client.get("/api/v1/tasks/", REMOTE_ADDR="8.8.8.8").status_code == 403


def test_bad_allowlist_entry_names_itself():
    with pytest.raises(ImproperlyConfigured, match="'10.10.0.0/33'"):
        parse_networks(["10.10.0.0/33"])


# --- authorisation before state: foreign objects are 404, and no 409 text leaks ------------------------
from types import SimpleNamespace  # noqa: E402

from django.conf import settings as django_settings  # noqa: E402
from rest_framework.authtoken.models import Token  # noqa: E402
from rest_framework.test import APIClient  # noqa: E402

from governance import control, services  # noqa: E402
from governance.models import ApprovalStep, OpsTask, Status  # noqa: E402
from tests.factories import (  # noqa: E402
    InstitutionFactory,
    ServerFactory,
    SystemFactory,
    SystemOwnerFactory,
    governance_world,
)

SECRET_REASON = "기재부 내부 사유: 예산 DB 장애 조사 중"


def api_as(user) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {Token.objects.get_or_create(user=user)[0].key}")
    return client


def second_institution():
    """Another institution with its own system, owner, supervisor and PM."""
    pm = UserFactory(username="pm-b", role="pm")
    inst = InstitutionFactory(code="MOIS", name="행정안전부", tier=2, pm=pm)
    system = SystemFactory(code="RESIDENT", name="주민시스템", institution=inst)
    ownership = SystemOwnerFactory(
        system=system,
        owner=UserFactory(username="owner-b", role="team_lead"),
        deputy=UserFactory(username="deputy-b", role="team_lead"),
        supervisor=UserFactory(username="supervisor-b", role="supervisor"),
    )
    requester = UserFactory(username="field-b", role="site_manager")
    inst.site_managers.add(requester)
    servers = [ServerFactory(system=system, server_id="res-1")]
    return SimpleNamespace(
        inst=inst,
        system=system,
        pm=pm,
        owner=ownership.owner,
        supervisor=ownership.supervisor,
        requester=requester,
        servers=servers,
    )


def file_restart(world, title="재시작"):
    return services.submit_task(
        world.requester, system=world.system, sub_type="SERVICE_RESTART", title=title, targets=world.servers
    )


def snapshot(task_id: str) -> tuple:
    task = OpsTask.objects.get(task_id=task_id)
    return (
        task.status,
        task.stop_requested,
        task.stop_reason,
        task.updated_at,
        tuple(task.steps.values_list("status", flat=True)),
    )


def test_a_foreign_supervisor_cannot_stop_tasks_by_guessing_sequential_ids(db, django_capture_on_commit_callbacks):
    """The reported attack: a supervisor of another institution walks OPS-<today>-001, -002, ...
    and posts stop. Every foreign id is 404 and nothing changes; their own task still stops."""
    a, b = governance_world(), second_institution()
    with django_capture_on_commit_callbacks(execute=False):
        foreign = [file_restart(a, f"재시작 {n}") for n in range(3)]
        own = file_restart(b)
    before = {t.task_id: snapshot(t.task_id) for t in foreign}
    entries = AuditEntry.objects.count()
    attacker = api_as(b.supervisor)
    prefix = own.task_id.rsplit("-", 1)[0]
    for n in range(1, 6):
        task_id = f"{prefix}-{n:03d}"
        response = attacker.post(f"/api/v1/tasks/{task_id}/stop/", {"reason": "정지"}, format="json")
        if task_id == own.task_id:
            assert response.status_code == 200, response.json()
        else:
            assert response.status_code == 404, (task_id, response.json())
            assert response.json() == {"detail": f"task {task_id} not found"}
    assert {t.task_id: snapshot(t.task_id) for t in foreign} == before
    # Only the attacker's own stop was recorded; nothing about the foreign tasks.
    new = list(AuditEntry.objects.order_by("seq")[entries:])
    assert own.task_id in {e.task for e in new}
    assert not {e.task for e in new} & set(before)
    assert OpsTask.objects.get(task_id=own.task_id).status == Status.ABORTED
    # The console's stop button behaves the same.
    console = Client()
    console.force_login(b.supervisor)
    assert console.post(f"/console/tasks/{foreign[0].task_id}/stop/", {"reason": "정지"}).status_code == 404
    assert snapshot(foreign[0].task_id) == before[foreign[0].task_id]


def test_conflicts_never_tell_another_institution_a_task_id_or_stop_reason(db, django_capture_on_commit_callbacks):
    """A stopped task of institution A answers 409 with its reason to A's people, and a plain
    404 to everyone of B, on every endpoint that names a task or a step."""
    a, b = governance_world(), second_institution()
    with django_capture_on_commit_callbacks(execute=False):
        task = file_restart(a)
    step = task.steps.get()
    control.stop_task(a.supervisor, task.task_id, SECRET_REASON)
    before = snapshot(task.task_id)
    step.refresh_from_db()

    # A's own people get the conflict with its explanation.
    insider = api_as(a.supervisor).post(f"/api/v1/tasks/{task.task_id}/stop/", {"reason": "again"}, format="json")
    assert insider.status_code == 409 and task.task_id in insider.json()["detail"]

    attempts = []
    # (PMs, security officers, auditors and admins are team-wide roles that read every task.)
    for user in (b.supervisor, b.owner, b.requester):
        client = api_as(user)
        attempts += [
            client.post(f"/api/v1/tasks/{task.task_id}/stop/", {"reason": "x"}, format="json"),
            client.post(f"/api/v1/tasks/{task.task_id}/validate/", {"verdict": "approve"}, format="json"),
            client.post(
                "/api/v1/approval/process",
                {"step_id": step.pk, "decision": "APPROVED", "comments": "ok"},
                format="json",
            ),
            client.get(f"/api/v1/tasks/{task.task_id}/"),
            client.get(f"/api/v1/task/history/{task.task_id}"),
        ]
        console = Client()
        console.force_login(user)
        attempts += [
            console.post(f"/console/tasks/{task.task_id}/stop/", {"reason": "x"}),
            console.post(
                f"/console/approvals/{step.pk}/decide/", {"decision": "APPROVED", "comments": "ok"}, follow=True
            ),
            console.get(f"/console/tasks/{task.task_id}/"),
        ]
    for response in attempts:
        body = response.content.decode()
        assert response.status_code in (403, 404), (response.request, response.status_code, body[:300])
        assert SECRET_REASON not in body
        assert "ABORTED" not in body and "kill switch" not in body
    assert snapshot(task.task_id) == before
    assert ApprovalStep.objects.get(pk=step.pk).status == step.status


def test_a_step_of_another_institution_is_404_on_rest_and_console(db, django_capture_on_commit_callbacks):
    a, b = governance_world(), second_institution()
    with django_capture_on_commit_callbacks(execute=False):
        task = file_restart(a)
    step = task.steps.get()
    response = api_as(b.owner).post(
        "/api/v1/approval/process", {"step_id": step.pk, "decision": "APPROVED", "comments": "ok"}, format="json"
    )
    assert response.status_code == 404 and response.json() == {"detail": f"approval step {step.pk} not found"}
    console = Client()
    console.force_login(b.owner)
    assert (
        console.post(f"/console/approvals/{step.pk}/decide/", {"decision": "APPROVED", "comments": "ok"}).status_code
        == 404
    )
    step.refresh_from_db()
    assert step.status == "P" and OpsTask.objects.get(pk=task.pk).status == Status.PENDING_APPROVAL


# --- schema, docs and error pages ---------------------------------------------------------------------
def test_schema_and_docs_need_a_login(db):
    anonymous = APIClient()
    schema = anonymous.get("/api/v1/schema/")
    assert schema.status_code == 401 and "paths" not in schema.content.decode()
    docs = Client().get("/api/v1/docs/")
    assert docs.status_code == 302 and docs["Location"].startswith("/accounts/login/")
    user = UserFactory(username="reader", role="auditor")
    assert api_as(user).get("/api/v1/schema/").status_code == 200
    browser = Client()
    browser.force_login(user)
    assert browser.get("/api/v1/docs/").status_code == 200


def test_with_debug_off_a_404_is_the_korean_page_without_the_url_map(db, settings):
    settings.DEBUG = False
    anonymous = Client()
    response = anonymous.get("/no/such/page/")
    body = response.content.decode()
    assert response.status_code == 404
    assert "페이지를 찾을 수 없습니다" in body and 'class="topbar"' in body  # the console layout
    assert "console/" not in body.replace('href="/console/"', "")  # no URL patterns listed
    assert "Using the URLconf" not in body and "admin/" not in body
    # Under the API the answer stays JSON.
    api = anonymous.get("/api/v1/no-such-endpoint/")
    assert api.status_code == 404 and api.json() == {"detail": "찾을 수 없습니다."}
    # A foreign task page is the same Korean 404 for a logged-in user.
    user = UserFactory(username="lead-x", role="team_lead")
    anonymous.force_login(user)
    page = anonymous.get("/console/tasks/OPS-20260101-001/")
    assert page.status_code == 404 and "페이지를 찾을 수 없습니다" in page.content.decode()


def test_a_403_is_the_korean_page_in_the_console_layout(db):
    client = Client()
    client.force_login(UserFactory(username="aud", role="auditor"))
    response = client.get("/console/approvals/")  # an auditor decides nothing
    assert response.status_code == 403
    assert "권한이 없습니다" in response.content.decode() and 'class="topbar"' in response.content.decode()


def test_a_500_is_the_korean_page_and_json_under_the_api(rf):
    from guardia.errors import server_error

    page = server_error(rf.get("/console/"))
    assert page.status_code == 500 and "서버 오류가 발생했습니다" in page.content.decode()
    api = server_error(rf.get("/api/v1/tasks/"))
    assert api.status_code == 500 and api["Content-Type"] == "application/json"


# --- menus by permission ----------------------------------------------------------------------------------
NAV = {
    "approvals": 'href="/console/approvals/"',
    "validations": 'href="/console/validations/"',
    "owner": 'href="/console/owner/"',
    "audit": 'href="/audit/"',
    "admin": 'href="/admin/"',
    "new": 'href="/console/requests/new/"',
    "gateways": 'href="/execution/gateways/"',
    "drift": 'href="/execution/drift/"',
    "owner_check": 'href="/console/owner-check/"',
}


def nav_of(user) -> set[str]:
    client = Client()
    client.force_login(user)
    body = client.get("/console/").content.decode()
    nav = body[body.index('<nav class="nav"') : body.index("</nav>")]
    return {name for name, link in NAV.items() if link in nav}


def test_menus_follow_permissions_and_every_link_answers(db):
    world = governance_world()
    from cmdb.roles import STAFF_ROLES

    for user, role in [(world.supervisor, "supervisor"), (world.admin, "admin"), (world.security, "security_officer")]:
        if role in STAFF_ROLES:
            user.is_staff = True
            user.save(update_fields=["is_staff"])
    expected = {
        "requester": {"new"},
        "owner": {"new", "approvals", "owner"},
        "pm": {"new", "approvals", "validations", "gateways", "owner_check"},
        "security": {"approvals", "audit", "gateways"} | ({"admin"} if "security_officer" in STAFF_ROLES else set()),
        "supervisor": {"approvals", "admin", "owner_check"},
        "auditor": {"audit", "gateways"},
        "admin": {"audit", "admin", "gateways", "owner_check"},
    }
    for links in expected.values():
        links.add("drift")  # every role reads the environment drift report of its scope
    for name, links in expected.items():
        user = getattr(world, name)
        assert nav_of(user) == links, name
        # Every link offered answers 200: no menu entry leads to a 403.
        client = Client()
        client.force_login(user)
        for link in links:
            url = NAV[link].split('"')[1]
            assert client.get(url).status_code == 200, (name, url)
    assert django_settings.LOGIN_URL == LOGIN


@pytest.mark.django_db(transaction=True)
@pytest.mark.slow
def test_the_demo_settings_serve_static_files_and_korean_error_pages_with_debug_off(tmp_path):
    """What scripts/demo.sh runs: DEBUG off, static files collected and served by WhiteNoise
    from Daphne, and a 404 that is the console's Korean page, not Django's URL list."""
    import os
    import subprocess
    import sys
    import urllib.error
    import urllib.request

    from tests.live import ROOT, daphne

    env = dict(
        os.environ,
        GUARDIA_DEBUG="false",
        GUARDIA_STATIC_ROOT=str(tmp_path / "static"),
        GUARDIA_DATABASE_URL=f"sqlite:///{django_settings.DATABASES['default']['NAME']}",
        GUARDIA_CHANNEL_LAYER="memory",
        PYTHONUNBUFFERED="1",
    )
    subprocess.run(
        [sys.executable, "manage.py", "collectstatic", "--noinput", "-v", "0"], cwd=ROOT, env=env, check=True
    )

    def fetch(url: str) -> tuple[int, str]:
        try:
            with urllib.request.urlopen(url, timeout=10) as response:
                return response.status, response.read().decode("utf-8", "replace")
        except urllib.error.HTTPError as error:
            return error.code, error.read().decode("utf-8", "replace")

    with daphne(env, tmp_path / "daphne.log") as address:
        css = fetch(f"http://{address}/static/css/guardia.css")
        missing = fetch(f"http://{address}/no/such/page/")
        schema = fetch(f"http://{address}/api/v1/schema/")
    assert css[0] == 200 and "--brand" in css[1]
    assert missing[0] == 404 and "페이지를 찾을 수 없습니다" in missing[1]
    assert "Using the URLconf" not in missing[1] and "api/v1/" not in missing[1]
    assert schema[0] == 401


@pytest.mark.django_db(transaction=True)
def test_a_task_socket_of_another_institution_is_refused(django_capture_on_commit_callbacks):
    from tests.test_allowlist import session_cookie, ws_connect

    a, b = governance_world(), second_institution()
    with django_capture_on_commit_callbacks(execute=False):
        task_a = file_restart(a)
    assert ws_connect(f"/ws/tasks/{task_a.task_id}/", peer="127.0.0.1", session=session_cookie(a.owner))[0]
    refused = ws_connect(f"/ws/tasks/{task_a.task_id}/", peer="127.0.0.1", session=session_cookie(b.supervisor))
    assert refused == (False, 4403)


def test_filing_for_another_institutions_system_is_answered_like_an_unknown_system(db):
    a, b = governance_world(), second_institution()
    client = api_as(a.requester)
    body = {"sub_type": "SERVICE_RESTART", "title": "재시작", "targets": ["res-1"]}
    foreign = client.post("/api/v1/tasks/", {**body, "system": b.system.code}, format="json")
    missing = client.post("/api/v1/tasks/", {**body, "system": "NO-SUCH"}, format="json")
    assert foreign.status_code == missing.status_code == 400
    assert foreign.json() == {"system": [f"알 수 없는 시스템입니다: {b.system.code!r}"]}
    assert missing.json() == {"system": ["알 수 없는 시스템입니다: 'NO-SUCH'"]}
    assert not OpsTask.objects.exists()
