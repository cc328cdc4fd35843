"""Every URL pattern × every role × (own institution's object, another institution's object).

The patterns come from walking the URL resolver (console, REST routers, audit pages, the
admin), so a new endpoint without a row in the table below fails
``test_every_url_pattern_has_an_entry``: nothing is added silently. Each cell says what
the real application answers, through the Django test client (sessions for pages, a token
for the REST API):

  200 allowed · 302 redirect (login page, or the page after a POST) · 400 bad input
  401 no credentials (API) · 403 no permission · 404 not found (or not yours) · 405 method

One world (two institutions, the roles of cmdb/roles.py, tasks in the states the actions
need) is built once per module; every request runs in a savepoint that is rolled back, so
a stop or a decision in one cell never changes the next.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from types import SimpleNamespace

import pytest
from django.contrib import admin as django_admin
from django.contrib.auth.models import Group
from django.contrib.contenttypes.models import ContentType
from django.db import transaction
from django.test import Client
from django.urls import URLPattern, URLResolver, get_resolver
from rest_framework.authtoken.models import Token

from cmdb.roles import ROLES, STAFF_ROLES
from tests.module_world import built_once

ANON = "anonymous"
ALL_ROLES = [ANON, *ROLES]
SCOPES = ("own", "other")


# --- the URL patterns ----------------------------------------------------------------------------------------
def walk(patterns, prefix: str = ""):
    for item in patterns:
        if isinstance(item, URLResolver):
            yield from walk(item.url_patterns, prefix + str(item.pattern))
        elif isinstance(item, URLPattern):
            yield prefix + str(item.pattern)


def all_patterns() -> list[str]:
    return list(dict.fromkeys(walk(get_resolver().url_patterns)))


# --- expectations --------------------------------------------------------------------------------------------
def cells(default: int | tuple[int, int] | None = None, **by_role) -> dict[str, tuple[int, int]]:
    """role -> (own, other). A plain number means the same for both objects."""
    table = {}
    for role in ALL_ROLES:
        value = by_role.get(role, default)
        if value is None:
            raise AssertionError(f"no expectation for {role}")
        table[role] = value if isinstance(value, tuple) else (value, value)
    return table


# Who reads which tasks: the scoped roles see their institution's, the team-wide roles all.
SCOPED = (200, 404)


def task_read(anon: int) -> dict:
    return cells(
        anonymous=anon,
        site_manager=SCOPED,
        team_lead=SCOPED,
        supervisor=SCOPED,
        pm=200,
        security_officer=200,
        auditor=200,
        admin=200,
    )


def cmdb_read(anon: int) -> dict:
    # CMDB rows: as tasks, except that PMs (who lack cmdb.view_all_systems) see their institution's only.
    return {**task_read(anon), "pm": SCOPED}


def audit_only(anon: int, ok: int = 200) -> dict:
    return cells(403, anonymous=anon, security_officer=ok, auditor=ok, admin=ok)


@dataclass
class Case:
    method: str
    url: str  # str.format(**objects of the scope)
    expect: dict[str, tuple[int, int]]
    data: dict = field(default_factory=dict)
    api: bool = False  # authenticate with the role's token instead of a session


API = "/api/v1"


def INTAKE_CELLS(ok: int) -> dict:
    return cells(403, anonymous=401, site_manager=(ok, 403), team_lead=(ok, 403), pm=(ok, 403))


RESTART_IN_WORDS = {"raw_request": "재시작 부탁드립니다", "system": "{system_code}", "targets": ["{server_id}"]}


def api_post(url: str, expect: dict, data: dict) -> Case:
    """A REST POST (JSON), sent with the role's token."""
    return Case("POST", url, expect, data, api=True)


def intake_case(url: str, ok: int) -> Case:
    """A request in words for one's own system, sent with the role's token."""
    return api_post(url, INTAKE_CELLS(ok), RESTART_IN_WORDS)


CASES: dict[str, Case] = {
    "": Case("GET", "/", cells(302)),
    "accounts/login/": Case("GET", "/accounts/login/", cells(200)),
    "accounts/logout/": Case("GET", "/accounts/logout/", cells(405)),  # POST only (CSRF-protected)
    "accounts/password/": Case("GET", "/accounts/password/", cells(200, anonymous=302)),  # one's own password
    # One's own second factor: verify sends a person without a device on to the enrolment.
    "accounts/otp/": Case("GET", "/accounts/otp/", cells(302, anonymous=302)),
    "accounts/otp/setup/": Case("GET", "/accounts/otp/setup/", cells(200, anonymous=302)),
    "i18n/setlang/": Case("POST", "/i18n/setlang/", cells(302), {"language": "ko", "next": "/console/"}),
    "api/v1/schema/": Case("GET", f"{API}/schema/", cells(200, anonymous=401), api=True),
    "api/v1/docs/": Case("GET", f"{API}/docs/", cells(200, anonymous=302)),
    # CMDB reads
    "api/v1/^cmdb/institutions/$": Case("GET", f"{API}/cmdb/institutions/", cells(200, anonymous=401), api=True),
    "api/v1/^cmdb/institutions/(?P<pk>[^/.]+)/$": Case(
        "GET", f"{API}/cmdb/institutions/{{inst}}/", cmdb_read(401), api=True
    ),
    "api/v1/^cmdb/systems/$": Case("GET", f"{API}/cmdb/systems/", cells(200, anonymous=401), api=True),
    "api/v1/^cmdb/systems/(?P<pk>[^/.]+)/$": Case("GET", f"{API}/cmdb/systems/{{system}}/", cmdb_read(401), api=True),
    "api/v1/^cmdb/servers/$": Case("GET", f"{API}/cmdb/servers/", cells(200, anonymous=401), api=True),
    "api/v1/^cmdb/servers/(?P<pk>[^/.]+)/$": Case("GET", f"{API}/cmdb/servers/{{server}}/", cmdb_read(401), api=True),
    # Governance REST. A decision: the owner decides their own institution's step; whoever may
    # see the task but is not its approver is 403; whoever may not see it is 404.
    "api/v1/approval/process": api_post(
        f"{API}/approval/process",
        cells(403, anonymous=401, site_manager=(403, 404), team_lead=(200, 404), supervisor=(403, 404)),
        {"step_id": "{step}", "decision": "APPROVED", "comments": "ok", "plan_sha256": "{plan}"},
    ),
    # Intake: a request in words for one's own system is filed (or previewed); another
    # institution's system is 403; roles that may not file are 403.
    "api/v1/sr/intake": intake_case(f"{API}/sr/intake", 201),
    "sr/intake": intake_case("/sr/intake", 201),
    "api/v1/sr/parse": intake_case(f"{API}/sr/parse", 200),
    "api/v1/task/history/<str:task_id>": Case("GET", f"{API}/task/history/{{task}}", task_read(401), api=True),
    "api/v1/^tasks/$": Case("GET", f"{API}/tasks/", cells(200, anonymous=401), api=True),
    "api/v1/^tasks/(?P<task_id>[^/.]+)/$": Case("GET", f"{API}/tasks/{{task}}/", task_read(401), api=True),
    "api/v1/^tasks/(?P<task_id>[^/.]+)/stop/$": api_post(
        f"{API}/tasks/{{task}}/stop/",
        cells(
            anonymous=401,
            site_manager=(403, 404),
            team_lead=(403, 404),
            supervisor=(200, 404),
            pm=200,
            security_officer=403,
            auditor=403,
            admin=200,
        ),
        {"reason": "matrix"},
    ),
    "api/v1/^tasks/(?P<task_id>[^/.]+)/validate/$": api_post(
        f"{API}/tasks/{{validation_task}}/validate/",
        cells(403, anonymous=401, site_manager=(403, 404), team_lead=(403, 404), supervisor=(403, 404), pm=200),
        {"verdict": "approve", "plan_sha256": "{validation_plan}"},
    ),
    # Audit REST: the audit view permission, nothing else.
    "api/v1/audit/verify": Case("GET", f"{API}/audit/verify", audit_only(401), api=True),
    "api/v1/audit/export": Case("GET", f"{API}/audit/export?format=csv", audit_only(401), api=True),
    "api/v1/audit/proof/<str:task_id>": Case("GET", f"{API}/audit/proof/{{task}}", audit_only(401), api=True),
    # Execution rows are read through their task.
    "api/v1/^executions/$": Case("GET", f"{API}/executions/", cells(200, anonymous=401), api=True),
    "api/v1/^executions/(?P<pk>[^/.]+)/$": Case("GET", f"{API}/executions/{{execution}}/", task_read(401), api=True),
    # The site gateways' console: those who run and review the operation.
    # Chat-server webhooks: POST only (the sender is proven by token or signature, not a session).
    "messenger/hooks/command/": Case("GET", "/messenger/hooks/command/", cells(405)),
    "messenger/hooks/action/": Case("GET", "/messenger/hooks/action/", cells(405)),
    # A step-up decision link: a forged token is refused for everyone signed in.
    "messenger/decide/<str:signed>/": Case("GET", "/messenger/decide/forged/", cells(403, anonymous=302)),
    "execution/gateways/": Case(
        "GET", "/execution/gateways/", cells(403, anonymous=302, pm=200, security_officer=200, auditor=200, admin=200)
    ),
    # Environment drift: CMDB readers see their scope's servers; only CMDB editors accept a scan.
    "execution/drift/": Case("GET", "/execution/drift/", cells(200, anonymous=302)),
    "execution/drift/<int:schema_id>/accept/": Case(
        "POST", "/execution/drift/{env_schema}/accept/", cells(403, anonymous=302, admin=302)
    ),
    # Opening a task from the drift report: whoever may file requests, within their scope.
    "execution/drift/<int:schema_id>/task/": Case(
        "POST",
        "/execution/drift/{env_schema}/task/",
        cells(403, anonymous=302, site_manager=(302, 404), team_lead=(302, 404), pm=(302, 404)),
        data={"sub_type": "MEMORY_CHECK"},
    ),
    "api/v1/^server-runs/$": Case("GET", f"{API}/server-runs/", cells(200, anonymous=401), api=True),
    "api/v1/^server-runs/(?P<pk>[^/.]+)/$": Case("GET", f"{API}/server-runs/{{serverrun}}/", task_read(401), api=True),
    # Console pages: anonymous callers are sent to the login page.
    "console/": Case("GET", "/console/", cells(200, anonymous=302)),
    "console/tiles/": Case("GET", "/console/tiles/", cells(200, anonymous=302)),
    "console/stop/": Case(
        "POST",
        "/console/stop/",
        cells(403, anonymous=302, pm=302, supervisor=302, admin=302),
        {"action": "engage", "reason": "matrix"},
    ),
    "console/search/": Case("GET", "/console/search/?q=OPS", cells(200, anonymous=302)),
    "console/requests/new/": Case(
        "GET", "/console/requests/new/", cells(403, anonymous=302, site_manager=200, team_lead=200, pm=200)
    ),
    "console/demo-artifact/": Case(
        "GET",
        "/console/demo-artifact/?version=1.0.0",
        cells(403, anonymous=302, site_manager=200, team_lead=200, pm=200),
    ),
    "console/approvals/": Case(
        "GET", "/console/approvals/", cells(200, anonymous=302, site_manager=403, auditor=403, admin=403)
    ),
    "console/approvals/<int:step_id>/decide/": Case(
        "POST",
        "/console/approvals/{step}/decide/",
        cells(
            302, anonymous=302, site_manager=403, auditor=403, admin=403, team_lead=(302, 404), supervisor=(302, 404)
        ),
        {"decision": "APPROVED", "comments": "ok", "plan_sha256": "{plan}"},
    ),
    "console/tasks/<str:task_id>/": Case("GET", "/console/tasks/{task}/", task_read(302)),
    "console/tasks/<str:task_id>/stop/": Case(
        "POST",
        "/console/tasks/{task}/stop/",
        cells(403, anonymous=302, pm=302, admin=302, supervisor=(302, 404)),
        {"reason": "matrix"},
    ),
    # The PM's priority on a task (the execution queue's order): PMs only.
    "console/tasks/<str:task_id>/priority/": Case(
        "POST", "/console/tasks/{task}/priority/", cells(403, anonymous=302, pm=302), {"priority": "3"}
    ),
    "console/tasks/<str:task_id>/validate/": Case(
        "GET", "/console/tasks/{validation_task}/validate/", cells(403, anonymous=302, pm=200)
    ),
    "console/validations/": Case("GET", "/console/validations/", cells(403, anonymous=302, pm=200)),
    "console/owner/": Case("GET", "/console/owner/", cells(200, anonymous=302)),
    # The owner-mapping check's report: those who fix the owner table and PMs, each for their systems.
    "console/owner-check/": Case(
        "GET", "/console/owner-check/", cells(403, anonymous=302, supervisor=200, pm=200, admin=200)
    ),
    "console/statistics/": Case("GET", "/console/statistics/", cells(200, anonymous=302)),
    "console/inbox/": Case("GET", "/console/inbox/", cells(200, anonymous=302)),
    "console/inbox/read/": Case("POST", "/console/inbox/read/", cells(302)),
    "audit/": Case("GET", "/audit/", audit_only(302)),
    "audit/verify/": Case("GET", "/audit/verify/", audit_only(302)),
    "audit/export/": Case("GET", "/audit/export/", audit_only(302)),
    # The field app (PWA): pages for anyone logged in; a preview or filing for one's own
    # system by the roles that file requests; another institution's system is unknown (400).
    "app/": Case("GET", "/app/", cells(200, anonymous=302)),
    "app/new": Case("GET", "/app/new?server={server_id}", cells(200, anonymous=302)),
    "app/preview": Case(
        "POST",
        "/app/preview",
        cells(403, anonymous=302, site_manager=(200, 400), team_lead=(200, 400), pm=(200, 400)),
        {"system": "{system_code}", "sub_type": "MEMORY_CHECK", "title": "matrix", "targets": ["{server_id}"]},
    ),
    "app/submit": Case(
        "POST",
        "/app/submit",
        cells(403, anonymous=302, site_manager=(201, 400), team_lead=(201, 400), pm=(201, 400)),
        {"system": "{system_code}", "sub_type": "MEMORY_CHECK", "title": "matrix", "targets": ["{server_id}"]},
    ),
    "app/parse": Case(
        "POST",
        "/app/parse",
        cells(403, anonymous=302, site_manager=(200, 403), team_lead=(200, 403), pm=(200, 403)),
        RESTART_IN_WORDS,
    ),
    # Photos read by the worker: stored by the roles that file requests (nothing sent: 400);
    # a reading is its sender's alone (any other id is 404).
    "api/v1/sr/photo": Case("POST", f"{API}/sr/photo", INTAKE_CELLS(400), {}, api=True),
    "api/v1/sr/photo/<uuid:photo_id>": Case(
        "GET", f"{API}/sr/photo/00000000-0000-4000-8000-000000000000", cells(404, anonymous=401), api=True
    ),
    # Voice memos: the roles that file requests reach the service, which is off by default (503).
    "app/transcribe": Case(
        "POST", "/app/transcribe", cells(403, anonymous=302, site_manager=503, team_lead=503, pm=503)
    ),
    "app/manifest.webmanifest": Case("GET", "/app/manifest.webmanifest", cells(200)),
    "app/sw.js": Case("GET", "/app/sw.js", cells(200)),
}


# --- the admin (CMDB console) -------------------------------------------------------------------------------------
# Rights of each staff role per registered model: v(iew) a(dd) c(hange) d(elete). Roles not
# named have none. People without is_staff never get past the admin's login redirect.
ADMIN_RIGHTS: dict[str, dict[str, str]] = {
    "auth.group": {"admin": "v"},
    "auth.user": {"admin": "vac", "security_officer": "v"},  # the officer looks after privileged accounts
    "django_q.schedule": {},
    "django_q.success": {},
    "django_q.failure": {},
    "django_q.ormq": {},
    "axes.accessattempt": {},
    "axes.accesslog": {},
    "axes.accessfailurelog": {},
    "audit.auditentry": {"security_officer": "v", "admin": "v"},  # read-only for everyone
    "audit.auditcheckpoint": {},
    "cmdb.institution": {"supervisor": "v", "security_officer": "v", "admin": "vacd"},
    "cmdb.system": {"supervisor": "v", "security_officer": "v", "admin": "vacd"},
    "cmdb.server": {"supervisor": "v", "security_officer": "v", "admin": "vacd"},
    "cmdb.systemowner": {"supervisor": "vc", "security_officer": "v", "admin": "vacd"},
    "cmdb.credential": {"admin": "vacd"},
    "cmdb.healthcriteria": {"supervisor": "v", "security_officer": "v", "admin": "vacd"},
    "cmdb.systemsource": {"supervisor": "v", "security_officer": "v", "admin": "vacd"},
    "cmdb.envschema": {"supervisor": "v", "security_officer": "v", "admin": "vacd"},
    "cmdb.securitypolicy": {"supervisor": "v", "security_officer": "v", "admin": "vacd"},
    "cmdb.commandrule": {"supervisor": "v", "security_officer": "vacd"},
    "cmdb.gateway": {"security_officer": "v", "admin": "vacd"},  # infrastructure: not institution-scoped
    "execution.execution": {},
    "execution.serverrun": {},
    "execution.inspectionschedule": {},
    "intake.messengeridentity": {"admin": "vacd"},
    "intake.chatwebhook": {"admin": "vacd"},
    "intake.outboxmessage": {"admin": "v"},  # the backlog: rows leave it only by being delivered
}
# Models whose admin list is scoped to the user's systems: another institution's row is
# "not found" for roles without cmdb.view_all_systems.
ADMIN_SCOPED = {
    "cmdb.institution",
    "cmdb.system",
    "cmdb.server",
    "cmdb.systemowner",
    "cmdb.healthcriteria",
    "cmdb.systemsource",
    "cmdb.envschema",
    "cmdb.securitypolicy",
    "cmdb.commandrule",
}
SEES_ALL_SYSTEMS = {"security_officer", "auditor", "admin"}
# The object each model's pages are tried with (a key of the world's objects per scope).
ADMIN_OBJECT = {
    "auth.group": "group",
    "auth.user": "user",
    "django_q.schedule": "schedule",
    "django_q.success": "q_success",
    "django_q.failure": "q_failure",
    "django_q.ormq": "ormq",
    "axes.accessattempt": "attempt",
    "axes.accesslog": "accesslog",
    "axes.accessfailurelog": "failurelog",
    "audit.auditentry": "auditentry",
    "audit.auditcheckpoint": "checkpoint",
    "cmdb.institution": "inst",
    "cmdb.system": "system",
    "cmdb.server": "server",
    "cmdb.systemowner": "ownership",
    "cmdb.credential": "credential",
    "cmdb.healthcriteria": "health",
    "cmdb.systemsource": "source",
    "cmdb.envschema": "env_schema",
    "cmdb.securitypolicy": "security_policy",
    "cmdb.commandrule": "rule",
    "cmdb.gateway": "gateway",
    "execution.execution": "execution",
    "execution.serverrun": "serverrun",
    "execution.inspectionschedule": "inspection",
    "intake.messengeridentity": "messenger_identity",
    "intake.chatwebhook": "chat_webhook",
    "intake.outboxmessage": "outbox",
}


def is_staff(role: str) -> bool:
    return role in STAFF_ROLES


def staff_only(staff: int | tuple[int, int], others: int = 302) -> dict:
    return cells(**{role: (staff if is_staff(role) else others) for role in ALL_ROLES})


def admin_model_cases(label: str) -> dict[str, Case]:
    app, model = label.split(".")
    base = f"admin/{app}/{model}/"
    rights = ADMIN_RIGHTS[label]
    obj = "{" + ADMIN_OBJECT[label] + "}"

    def per_role(rule) -> dict:
        table = {}
        for role in ALL_ROLES:
            if not is_staff(role):
                table[role] = (302, 302)
                continue
            r = rights.get(role, "")
            in_scope = {"own": True, "other": label not in ADMIN_SCOPED or role in SEES_ALL_SYSTEMS}
            table[role] = tuple(rule(r, in_scope[scope]) for scope in SCOPES)
        return table

    def view(r: str) -> bool:
        return "v" in r or "c" in r

    missing_object = 404 if label == "cmdb.systemowner" else 302  # the owner table answers 404
    return {
        base: Case("GET", f"/{base}", per_role(lambda r, ok: 200 if view(r) else 403)),
        f"{base}add/": Case("GET", f"/{base}add/", per_role(lambda r, ok: 200 if "a" in r else 403)),
        f"{base}<path:object_id>/history/": Case(
            "GET", f"/{base}{obj}/history/", per_role(lambda r, ok: (200 if view(r) else 403) if ok else 302)
        ),
        f"{base}<path:object_id>/delete/": Case(
            "GET", f"/{base}{obj}/delete/", per_role(lambda r, ok: 403 if "d" not in r else (200 if ok else 302))
        ),
        f"{base}<path:object_id>/change/": Case(
            "GET",
            f"/{base}{obj}/change/",
            per_role(lambda r, ok: missing_object if not ok else (200 if view(r) else 403)),
        ),
        # The bare object URL only redirects to .../change/, which decides.
        f"{base}<path:object_id>/": Case("GET", f"/{base}{obj}/", cells(302)),
    }


def admin_cases() -> dict[str, Case]:
    cases = {
        "admin/": Case("GET", "/admin/", staff_only(200)),
        "admin/login/": Case("GET", "/admin/login/", staff_only(302, others=200)),  # staff go to the index
        "admin/logout/": Case("GET", "/admin/logout/", staff_only(405)),
        "admin/password_change/": Case("GET", "/admin/password_change/", staff_only(200)),
        "admin/password_change/done/": Case("GET", "/admin/password_change/done/", staff_only(200)),
        "admin/autocomplete/": Case("GET", "/admin/autocomplete/", staff_only(403)),  # names no model
        "admin/jsi18n/": Case("GET", "/admin/jsi18n/", staff_only(200)),
        # CMDB rows have no public page: the content-type shortcut finds nothing to show.
        "admin/r/<path:content_type_id>/<path:object_id>/": Case(
            "GET", "/admin/r/{server_ct}/{server}/", staff_only(404)
        ),
        # The CSV imports (servers, environment schemas, security policies): the admin role adds.
        **{
            f"admin/cmdb/{model}/{page}": Case(
                "GET",
                f"/admin/cmdb/{model}/{page}",
                cells(**{r: (302 if not is_staff(r) else (200 if r == "admin" else 403)) for r in ALL_ROLES}),
            )
            for model in ("server", "envschema", "securitypolicy")
            for page in ("import/", "import/template.csv")
        },
        "admin/auth/user/<id>/password/": Case(
            "GET",
            "/admin/auth/user/{user}/password/",
            cells(**{r: (302 if not is_staff(r) else (200 if r == "admin" else 403)) for r in ALL_ROLES}),
        ),
        # Unknown admin URLs: the login page first, then a 404 that says nothing.
        "admin/(?P<url>.*)$": Case("GET", "/admin/no-such-page/", staff_only(404)),
    }
    for label in ADMIN_RIGHTS:
        cases.update(admin_model_cases(label))
    for pattern in all_patterns():
        if pattern.startswith("admin/^(?P<app_label>"):
            cases[pattern] = Case("GET", "/admin/cmdb/", staff_only(200))
    return cases


CASES.update(admin_cases())

# Patterns answering a second method worth its own row.
MORE_CASES: dict[str, list[Case]] = {
    # Filing a request: only for one's own systems; another institution's system code is as
    # unknown as a code that does not exist (400 naming the field, nothing confirmed).
    "api/v1/^tasks/$": [
        api_post(
            f"{API}/tasks/",
            cells(403, anonymous=401, site_manager=(201, 400), team_lead=(201, 400), pm=(201, 400)),
            {"system": "{system_code}", "sub_type": "SERVICE_RESTART", "title": "matrix", "targets": ["{server_id}"]},
        )
    ],
}


# --- the world ----------------------------------------------------------------------------------------------------
def messenger_rows(person) -> dict:
    from intake.models import ChatChannel, ChatWebhook, MessengerIdentity, OutboxMessage

    hook = ChatWebhook.objects.create(name="matrix", kind=ChatChannel.MATTERMOST, url="http://127.0.0.1:9/hooks/matrix")
    identity = MessengerIdentity.objects.create(user=person, matrix_id="@matrix:guardia.local")
    outbox = OutboxMessage.objects.create(user=person, channel=ChatChannel.MATRIX, text="matrix")
    return {"messenger_identity": identity.pk, "chat_webhook": hook.pk, "outbox": outbox.pk}


def build_world():
    from axes.models import AccessAttempt, AccessFailureLog, AccessLog
    from django_q.models import OrmQ, Schedule, Task
    from django_q.signing import SignedPackage

    from audit import services as audit_services
    from audit.models import AuditCheckpoint, AuditEntry
    from cmdb.models import CommandRule, EnvSchema, Gateway, HealthCriteria, SecurityPolicy, Server, SystemSource
    from execution.models import Execution, InspectionSchedule, ServerRun
    from governance import control, services
    from tests import factories

    def institution(tag: str, code: str, name: str):
        pm = factories.UserFactory(username=f"pm-{tag}", role="pm")
        inst = factories.InstitutionFactory(code=code, name=name, tier=2, pm=pm)
        system = factories.SystemFactory(code=f"SYS-{tag}", institution=inst)
        ownership = factories.SystemOwnerFactory(
            system=system,
            owner=factories.UserFactory(username=f"lead-{tag}", role="team_lead"),
            deputy=factories.UserFactory(username=f"deputy-{tag}", role="team_lead"),
            supervisor=factories.UserFactory(username=f"supervisor-{tag}", role="supervisor"),
        )
        field_user = factories.UserFactory(username=f"field-{tag}", role="site_manager")
        inst.site_managers.add(field_user)
        credential = factories.CredentialFactory(name=f"cred-{tag}")
        server = factories.ServerFactory(system=system, server_id=f"was-{tag}", credential=credential)
        people = SimpleNamespace(pm=pm, owner=ownership.owner, supervisor=ownership.supervisor, field=field_user)

        pending = services.submit_task(
            field_user, system=system, sub_type="SERVICE_RESTART", title="재시작", targets=[server]
        )
        to_validate = services.submit_task(
            field_user, system=system, sub_type="SERVICE_RESTART", title="검증", targets=[server]
        )
        to_validate.refresh_from_db()
        services.decide_step(
            ownership.owner, to_validate.steps.get().pk, "APPROVED", "ok", plan_sha256=to_validate.plan_sha256
        )
        control.execution_started(to_validate.pk)
        control.execution_finished(to_validate.pk, {"log": "ok"})
        to_validate.refresh_from_db()
        pending.refresh_from_db()
        execution = Execution.objects.create(
            task=pending, task_ref=pending.task_id, playbook="SERVICE_RESTART", playbook_version="1"
        )
        serverrun = ServerRun.objects.create(
            execution=execution, server=server, server_ref=server.server_id, playbook_version="1"
        )
        inspection = InspectionSchedule.objects.create(name=f"mem-{tag}", system=system, kind="MEMORY_CHECK")
        objects = {
            "inst": inst.pk,
            "system": system.pk,
            "server": server.pk,
            "ownership": ownership.pk,
            "credential": credential.pk,
            "health": HealthCriteria.objects.create(system=system).pk,
            "source": SystemSource.objects.create(
                system=system, repository=f"/srv/src/{tag}", build_command="make", scope="src/"
            ).pk,
            "rule": CommandRule.objects.create(system=system, program="/usr/bin/uptime").pk,
            "env_schema": EnvSchema.objects.create(server=server, init_system="systemd").pk,
            "security_policy": SecurityPolicy.objects.create(system=system).pk,
            "system_code": system.code,
            "server_id": server.server_id,
            "task": pending.task_id,
            "step": pending.steps.get().pk,
            "plan": pending.plan_sha256,
            "validation_task": to_validate.task_id,
            "validation_plan": to_validate.plan_sha256,
            "execution": execution.pk,
            "serverrun": serverrun.pk,
            "inspection": inspection.pk,
            "user": ownership.owner.pk,
            "token_user": field_user.pk,
        }
        return people, objects

    own_people, own = institution("a", "MOEF", "기획재정부")
    _other_people, other = institution("b", "MOIS", "행정안전부")
    users = {
        "site_manager": own_people.field,
        "team_lead": own_people.owner,
        "pm": own_people.pm,
        "supervisor": own_people.supervisor,
        "security_officer": factories.UserFactory(username="secoff", role="security_officer"),
        "auditor": factories.UserFactory(username="auditor", role="auditor"),
        "admin": factories.UserFactory(username="admin", role="admin"),
    }
    assert set(users) == set(ROLES), "a role of cmdb/roles.py has no user in the matrix world"
    for role, user in users.items():
        if is_staff(role):
            user.is_staff = True
            user.save(update_fields=["is_staff"])
    for user_pk in (own["token_user"], other["token_user"]):
        Token.objects.get_or_create(user_id=user_pk)

    # Rows of the models that are not institution-scoped; "own" and "other" share them.
    audit_services.create_checkpoint("matrix")
    shared = {
        "group": Group.objects.get(name="team_lead").pk,
        "schedule": Schedule.objects.create(func="governance.tasks.announce", name="matrix").pk,
        "q_success": Task.objects.create(
            id="a" * 32, name="ok", func="f", started="2026-01-01T00:00Z", stopped="2026-01-01T00:00Z", success=True
        ).pk,
        "q_failure": Task.objects.create(
            id="b" * 32, name="bad", func="f", started="2026-01-01T00:00Z", stopped="2026-01-01T00:00Z", success=False
        ).pk,
        "ormq": OrmQ.objects.create(key="matrix", payload=SignedPackage.dumps({"id": "c"}), lock=None).pk,
        "attempt": AccessAttempt.objects.create(
            username="x", ip_address="10.0.0.1", user_agent="t", failures_since_start=1
        ).pk,
        "accesslog": AccessLog.objects.create(username="x", ip_address="10.0.0.1", user_agent="t").pk,
        "failurelog": AccessFailureLog.objects.create(username="x", ip_address="10.0.0.1", user_agent="t").pk,
        "auditentry": AuditEntry.objects.order_by("seq").first().pk,
        "checkpoint": AuditCheckpoint.objects.order_by("pk").first().pk,
        "server_ct": ContentType.objects.get_for_model(Server).pk,
        "gateway": Gateway.objects.create(name="matrix").pk,
        **messenger_rows(users["auditor"]),
    }
    own.update(shared)
    other.update(shared)

    sessions, tokens = {}, {}
    for role, user in users.items():
        client = Client()
        client.force_login(user)
        sessions[role] = client
        tokens[role] = Client(HTTP_AUTHORIZATION=f"Token {Token.objects.get_or_create(user=user)[0].key}")
    sessions[ANON] = tokens[ANON] = Client()
    return SimpleNamespace(objects={"own": own, "other": other}, sessions=sessions, tokens=tokens)


@pytest.fixture(scope="module")
def world(django_db_setup, django_db_blocker):
    """Built once; rolled back when the module is done."""
    with built_once(django_db_blocker, build_world) as world:
        yield world


def fill(value, objects: dict):
    if isinstance(value, str) and "{" in value:
        return value.format(**objects)
    if isinstance(value, list):
        return [fill(item, objects) for item in value]
    return value


def answer(world, case: Case, role: str, scope: str) -> int:
    objects = world.objects[scope]
    client = (world.tokens if case.api else world.sessions)[role]
    url = fill(case.url, objects)
    data = {key: fill(value, objects) for key, value in case.data.items()}
    with transaction.atomic():
        if case.method == "GET":
            response = client.get(url)
        else:
            response = client.post(url, data, content_type="application/json") if case.api else client.post(url, data)
        transaction.set_rollback(True)
    return response.status_code


# --- the tests ------------------------------------------------------------------------------------------------------
def test_every_url_pattern_has_an_entry():
    patterns = set(all_patterns())
    missing = sorted(patterns - set(CASES))
    stale = sorted(set(CASES) - patterns)
    assert not missing, f"URL patterns without an access-matrix entry (add one to CASES): {missing}"
    assert not stale, f"access-matrix entries for patterns that no longer exist: {stale}"
    assert set(ADMIN_RIGHTS) == {f"{m._meta.app_label}.{m._meta.model_name}" for m in django_admin.site._registry}


def _has_object(case: Case) -> bool:
    return "{" in case.url or any("{" in str(v) for v in case.data.values())


def test_more_cases_name_real_patterns():
    assert set(MORE_CASES) <= set(CASES)


def assert_cells(world, pattern: str) -> None:
    """Every role and scope of one pattern's rows answers as the table says."""
    wrong = []
    for case in [CASES[pattern], *MORE_CASES.get(pattern, [])]:
        for role in ALL_ROLES:
            scopes = SCOPES if _has_object(case) else ("own",)
            for scope in scopes:
                expected = case.expect[role][SCOPES.index(scope)]
                got = answer(world, case, role, scope)
                if got != expected:
                    wrong.append(f"{case.method} {case.url} {role}/{scope}: expected {expected}, got {got}")
    assert not wrong, "; ".join(wrong)


# The admin's rows run in tests/test_access_matrix_admin.py, a module (and a world) of their
# own, so that the fast lane's pytest-xdist workers (--dist loadfile) share the matrix out.
ADMIN_PATTERNS = sorted(pattern for pattern in CASES if pattern.startswith("admin/"))


@pytest.mark.parametrize("pattern", sorted(set(CASES) - set(ADMIN_PATTERNS)))
def test_access_matrix(pattern, world, db):
    assert_cells(world, pattern)
