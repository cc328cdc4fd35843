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


def test_budget_was_servers_run_on_the_testbed_when_it_has_six_or_more(settings, tmp_path):
    """The walk-through's "기재부 예산시스템 WAS1번 배포" reaches real sshd servers: the last three
    testbed servers stand in for 예산시스템 WAS1-3; the rest stay with the testbed system."""
    import json

    key = tmp_path / "id_ed25519"
    key.write_text("-----BEGIN OPENSSH PRIVATE KEY-----\nnot-a-real-key\n-----END OPENSSH PRIVATE KEY-----\n")
    servers = [
        {
            "server_id": f"srv-{n:02d}",
            "hostname": "127.0.0.1",
            "ip": "127.0.0.1",
            "ssh_port": 19200 + n,
            "host_key_fingerprint": f"SHA256:{n:043d}",
            "app_path": f"/tb/srv-{n:02d}/app",
            "deploy_path": f"/tb/srv-{n:02d}/deploy",
            "backup_path": f"/tb/srv-{n:02d}/backup",
            "script_path": f"/tb/srv-{n:02d}/bin",
            "log_path": f"/tb/srv-{n:02d}/log/app.log",
            "http_port": 19300 + n,
            "health_url": f"http://127.0.0.1:{19300 + n}/health",
            "rolling_group": 1,
            "canary": n == 1,
        }  # fmt: skip
        for n in range(1, 7)
    ]
    settings.TESTBED_DIR = tmp_path
    (tmp_path / "manifest.json").write_text(
        json.dumps({"credential": {"username": "tb", "private_key_path": str(key)}, "servers": servers})
    )
    output = run("--testbed")
    assert "srv-04, srv-05, srv-06 serve MOEF-BUDGET" in output
    budget = {s.server_id: s for s in Server.objects.filter(system__code="MOEF-BUDGET")}
    assert sorted(budget) == ["moef-budget-was1", "moef-budget-was2", "moef-budget-was3"]
    assert (budget["moef-budget-was1"].ip, budget["moef-budget-was1"].ssh_port) == ("127.0.0.1", 19204)
    assert budget["moef-budget-was3"].health_url == "http://127.0.0.1:19306/health"
    testbed = Server.objects.filter(system__code="NIA-TESTBED", active=True)
    assert sorted(testbed.values_list("server_id", flat=True)) == ["srv-01", "srv-02", "srv-03"]
    assert System.objects.get(code="MOEF-BUDGET").in_window()  # the story runs at any hour
