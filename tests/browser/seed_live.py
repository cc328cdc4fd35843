"""Seed the browser test's file database (run as a child process with the test's env).

Prints "<task_id> <step_id>" of a one-step request waiting for the team lead.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "guardia.settings")

import django

django.setup()

from django.contrib.auth import get_user_model  # noqa: E402
from django.contrib.auth.models import Group  # noqa: E402

from cmdb.models import Institution, Server, System, SystemOwner  # noqa: E402
from governance import services  # noqa: E402
from tests.browser.conftest import SEED_PASSWORD  # noqa: E402


def user(username: str, role: str):
    person = get_user_model().objects.create_user(username, password=SEED_PASSWORD)
    person.groups.add(Group.objects.get(name=role))
    return person


lead, requester = user("lead", "team_lead"), user("field", "site_manager")
inst = Institution.objects.create(code="MOEF", name="기획재정부", tier=2, pm=user("pm", "pm"))
inst.site_managers.add(requester)
system = System.objects.create(code="BUDGET", name="예산시스템", institution=inst)
SystemOwner.objects.create(
    system=system, owner=lead, deputy=user("deputy", "team_lead"), supervisor=user("supervisor", "supervisor")
)
server = Server.objects.create(server_id="was-1", system=system, hostname="was-1.local", ip="10.0.0.1")
# A read-only inspection needs one approval step: the owner's.
task = services.submit_task(
    requester,
    system=system,
    sub_type="MEMORY_CHECK",
    title="예산시스템 메모리 점검",
    targets=[server],
    raw_request="예산시스템 WAS1번 메모리 확인해 주세요",
)
step = services.my_approvals(lead).get(task=task)
print(task.task_id, step.pk)
