from __future__ import annotations

import datetime as dt
import io

import pytest
from django.contrib.auth import get_user_model
from django.core.management import call_command
from rest_framework.authtoken.models import Token

from cmdb.management.commands.seed_demo import DEFAULT_PASSWORD
from cmdb.models import HealthCriteria, Institution, Server, System, SystemOwner
from cmdb.roles import ROLES

pytestmark = pytest.mark.django_db


def run(*args: str) -> str:
    out = io.StringIO()
    call_command("seed_demo", *args, stdout=out)
    return out.getvalue()


def test_seed_demo_is_idempotent_and_complete(settings, tmp_path):
    settings.TESTBED_DIR = tmp_path / "no-testbed"
    run()
    models = (Institution, System, Server, SystemOwner, HealthCriteria, Token)
    counts = [Model.objects.count() for Model in models]
    output = run("--testbed")
    assert "no manifest" in output
    assert [Model.objects.count() for Model in models] == counts

    assert Institution.objects.count() >= 5 and System.objects.count() == 8 and Server.objects.count() == 20
    assert Institution.objects.matching("기재부").get().name == "기획재정부"
    assert Institution.objects.matching("행안부").get().name == "행정안전부"
    assert {s.tier for s in System.objects.select_related("institution")} == {1, 2, 3}
    assert System.objects.filter(sensitive=True).count() >= 2
    assert System.objects.exclude(window_start=dt.time(0, 0)).exists()
    assert SystemOwner.objects.filter(deputy__isnull=False).count() == 8

    User = get_user_model()
    for role in ROLES:
        assert User.objects.filter(groups__name=role).exists(), role
    admin = User.objects.get(username="admin")
    assert admin.is_staff and not admin.is_superuser  # separation of duties: no superuser in the demo
    assert User.objects.get(username="supervisor").is_staff
    assert not User.objects.get(username="teamlead").is_staff
    assert User.objects.get(username="teamlead").first_name == "이팀장"
    assert User.objects.get(username="pm").check_password(DEFAULT_PASSWORD)


def test_print_options_print_only_what_they_promise():
    run()
    logins = run("--print-logins").strip().splitlines()
    assert [line.split()[1] for line in logins].count("team_lead") == 2
    assert all(len(line.split()) == 2 for line in logins)
    assert {line.split()[1] for line in logins} == set(ROLES)
    with_tokens = run("--print-logins", "--with-tokens").strip().splitlines()
    teamlead = get_user_model().objects.get(username="teamlead")
    assert f"teamlead      team_lead          {Token.objects.get(user=teamlead).key}" in with_tokens
    assert run("--print-password").strip() == DEFAULT_PASSWORD
