"""The scale-out configuration, as production runs it: PostgreSQL and Redis from the Debian
packages (started here), the django-q2 Redis broker, channels-redis, two site gateways (two
`qcluster` processes with GUARDIA_GATEWAY=A and B) and two Daphne processes on two addresses,
against the real-sshd testbed. Debian chromium opens each task's page on both web processes
before the run: every page, whichever Daphne serves it, sees its task go live from approved to
executed, whichever gateway runs it, without a reload."""

from __future__ import annotations

import re
from contextlib import ExitStack

import psycopg
import pytest

from testbed import Testbed
from tests.browser.demo_stack import chromium_browser, login, manage, mark_document, wait_live
from tests.live import daphne, qcluster, redis_server, service_env
from tests.pg import PostgresCluster

pytestmark = [pytest.mark.postgres, pytest.mark.browser, pytest.mark.testbed, pytest.mark.slow]

PASSWORD = "Scale-out-pw-2026"
# Run in the stack's environment (manage.py shell): gateways A and B, institution A (the
# testbed's) on A with the first server, institution B on B with the second, a site manager of
# both, and one approved restart per institution. Prints the two task ids.
SEED = f"""
import json
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from cmdb.models import Gateway, HealthCriteria, Institution, Server, System
from governance.models import OpsTask
from testbed.register import register_testbed
from tests.execution.engine_helpers import approved_task

servers = sorted(register_testbed(json.load(open({{manifest!r}}))), key=lambda s: s.server_id)
gw_a, gw_b = Gateway.objects.create(name="A"), Gateway.objects.create(name="B")
inst_a = servers[0].system.institution
inst_a.gateway = gw_a
inst_a.save()
inst_b = Institution.objects.create(code="SITE-B", name="B 기관", gateway=gw_b)
system_b = System.objects.create(code="SITE-B-WAS", name="B WAS", institution=inst_b)
HealthCriteria.objects.create(system=system_b)
Server.objects.filter(pk=servers[1].pk).update(system=system_b)
HealthCriteria.objects.update(port_wait_seconds=5)
field = get_user_model().objects.create_user("field", password={PASSWORD!r})
field.groups.add(Group.objects.get(name="site_manager"))
inst_a.site_managers.add(field)
inst_b.site_managers.add(field)
tasks = [approved_task([s], "SERVICE_RESTART") for s in Server.objects.order_by("server_id")]
OpsTask.objects.filter(pk__in=[t.pk for t in tasks]).update(requester=field)
print(*[t.task_id for t in tasks])
"""
ENQUEUE = """
from governance.models import OpsTask
from governance.transitions import enqueue_execution
for task in OpsTask.objects.order_by("task_id"):
    enqueue_execution(task)
"""


def shell(env: dict, code: str) -> str:
    """Run code in the stack's environment; its last printed line."""
    out = manage(env, "shell", "-c", code, timeout=300).strip()
    return out.splitlines()[-1] if out else ""


def test_two_daphnes_and_two_gateways_on_postgres_and_redis_show_live_status_in_a_browser(tmp_path):
    from playwright.sync_api import expect

    with ExitStack() as stack:
        testbed = Testbed(tmp_path / "testbed")
        testbed.up(2)
        stack.callback(testbed.down)
        # A throwaway cluster: the migration need not wait for the disk.
        pg = stack.enter_context(PostgresCluster(fsync=False))
        redis_url = stack.enter_context(redis_server())
        env = service_env(
            pg.url,
            redis_url,
            GUARDIA_DATA_DIR=str(tmp_path / "data"),
            GUARDIA_Q_BROKER="redis",
            GUARDIA_Q_WORKERS="1",
            GUARDIA_DEBUG="true",  # WhiteNoise serves the static files (live.js) from the finders
            GUARDIA_LOG_LEVEL="WARNING",
            GUARDIA_GATEWAY_HEARTBEAT_SECONDS="1",
        )
        manage(env, "migrate", "-v", "0", timeout=300)
        task_a, task_b = shell(env, SEED.format(manifest=str(testbed.manifest_path))).split()
        web = [stack.enter_context(daphne(env, tmp_path / f"daphne-{n}.log")) for n in (1, 2)]
        for name in ("A", "B"):
            stack.enter_context(qcluster({**env, "GUARDIA_GATEWAY": name}, tmp_path / f"gw-{name}.log", kill=True))

        browser = stack.enter_context(chromium_browser())
        context = browser.new_context(locale="ko-KR")
        login(context, f"http://{web[0]}", "field", PASSWORD)  # one session, valid on both (same database)
        pages = {}
        for address in web:
            for task_id in (task_a, task_b):
                page = context.new_page()
                page.goto(f"http://{address}/console/tasks/{task_id}/")
                expect(page.locator("#task-status")).to_have_class(re.compile(r"\bs-APPROVED\b"))
                wait_live(page)
                mark_document(page)
                pages[address, task_id] = page

        shell(env, ENQUEUE)  # queued on A's and B's Redis lists by EXECUTION_QUEUE

        for (address, task_id), page in pages.items():
            status = page.locator("#task-status")
            expect(status).to_have_class(re.compile(r"\bs-PENDING_PM_VALIDATION\b"), timeout=60_000)
            assert page.evaluate("window.__sameDocument") == "not reloaded", (address, task_id)
            assert page.locator("#timeline li.live").count() >= 1, (address, task_id)
        with psycopg.connect(pg.url) as conn:
            ran = dict(conn.execute('SELECT task_ref, gateway FROM "TB_EXECUTION"').fetchall())
            beats = dict(conn.execute('SELECT name, heartbeat_by FROM "TB_GATEWAY"').fetchall())
        context.close()
    assert ran == {task_a: "A", task_b: "B"}
    assert all(beats.values()), beats  # both gateways' workers wrote their heartbeat
