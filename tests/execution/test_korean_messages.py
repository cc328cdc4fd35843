"""What the execution layer says reaches Korean pages in Korean: a sanitizer refusal through
REST and the console, a refused certificate on the task page, and the live line that starts
a batch (the same text live and after a reload). English comes only from the catalogue."""

from __future__ import annotations

import json
import re

import pytest
from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django.test import Client
from django.urls import reverse

from governance import events
from governance.models import OpsTask
from governance.reports import task_timeline
from tests.execution.conftest import clean_testbed, testbed, testbed_cmdb  # noqa: F401 - session testbed
from tests.execution.test_command_catalogue import file_raw
from tests.factories import governance_world
from tests.test_translations import visible_text

SHUTDOWN = "ls /app && shutdown -r now"
REFUSAL = "명령 검사기 차단: 서버 종료 또는 재부팅 ["
# The sentences these messages used to be, before they were Korean.
ENGLISH = re.compile(r"blocked by the command sanitizer|shutting down|server\(s\)|expired on|\bstopped\b|not a PEM")


@pytest.mark.django_db
def test_a_sanitizer_refusal_is_korean_through_rest_and_the_console_and_english_on_request():
    world = governance_world()
    response = file_raw(world, SHUTDOWN)
    assert response.status_code == 400
    message = response.json()["parameters.command"][0]
    assert REFUSAL in message and not ENGLISH.search(message), message

    client = Client()
    client.force_login(world.requester)
    form = {
        "system": world.system.pk,
        "sub_type": "RAW_COMMAND",
        "title": "명령 실행",
        "targets": [s.pk for s in world.servers],
        "parameters_json": json.dumps({"command": SHUTDOWN}),
    }
    page = client.post(reverse("console:new_request"), form)
    text = visible_text(page.content.decode())
    assert page.status_code == 200 and REFUSAL in text and not ENGLISH.search(text)
    assert not OpsTask.objects.exists()

    # The English catalogue has every reason: a person who chose English reads English.
    client.post("/i18n/setlang/", {"language": "en", "next": "/console/"})
    text = visible_text(client.post(reverse("console:new_request"), form).content.decode())
    assert "blocked by the command sanitizer: shutting down or rebooting the server [" in text
    assert not OpsTask.objects.exists()


@pytest.mark.django_db
def test_a_refused_certificate_is_korean_on_the_task_page(client):
    """An expired certificate: SSL_REPLACE refuses it before touching any server (no SSH is
    needed), and the owner reads why in Korean."""
    from execution.services import run_task, store_artifact
    from tests.execution.certgen import cert_pem, key_pem, make_ca, make_leaf
    from tests.execution.engine_helpers import approved_task

    world = governance_world()
    ca, ca_key = make_ca()
    leaf, leaf_key = make_leaf(ca, ca_key, days_from=-30, days_to=-1)
    task = approved_task(
        world.servers[:1],
        sub_type="SSL_REPLACE",
        parameters={
            "cert_sha256": store_artifact(cert_pem(leaf), "server.crt")["sha256"],
            "key_sha256": store_artifact(key_pem(leaf_key), "server.key")["sha256"],
            "cert_path": f"{world.servers[0].app_path}/conf/server.crt",
            "key_path": f"{world.servers[0].app_path}/conf/server.key",
            "https_port": 8443,
        },
    )
    assert run_task(task.pk) == "FAILED_ROLLED_BACK"
    task.refresh_from_db()
    assert "인증서은(는)" in task.failure_reason and "UTC에 만료되었습니다" in task.failure_reason

    client.force_login(world.owner)
    text = visible_text(client.get(reverse("console:task", args=[task.task_id])).content.decode())
    assert "업로드 전에 인증서를 거부했습니다" in text and "만료되었습니다" in text
    assert not ENGLISH.search(text), ENGLISH.search(text)


@pytest.mark.testbed
def test_the_live_batch_line_is_the_saved_line(testbed_cmdb):  # noqa: F811
    from execution.services import run_task
    from tests.execution.engine_helpers import approved_task, deploy_parameters, live_events

    servers = sorted(testbed_cmdb, key=lambda s: s.server_id)[:2]
    task = approved_task(servers, parameters=deploy_parameters("2.0.0"))
    layer = get_channel_layer()
    channel = async_to_sync(layer.new_channel)()
    async_to_sync(layer.group_add)(events.task_group(task.task_id), channel)

    assert run_task(task.pk) == "SUCCEEDED"

    live = [
        event["data"]["line"]
        for event in live_events(layer, channel)
        if event["kind"] == "timeline" and event["data"]["action"] == "execution.group"
    ]
    saved = [line for line in task_timeline(task) if line["kind"] == "execution.group"]
    assert [line["text"] for line in live] == [line["text"] for line in saved] == ["그룹 1, 배치 0: 서버 2대 시작"]
    assert live[0]["kind_label"] == str(saved[0]["kind_label"]) == "배치 시작"
    assert live[0]["when"] == saved[0]["when"]  # the server's time zone, both ways


@pytest.mark.django_db
def test_the_plan_names_its_batches_in_korean_and_keeps_the_hashed_label(client):
    from tests.execution.engine_helpers import approved_task
    from tests.task_parameters import valid_parameters

    world = governance_world()
    task = approved_task(world.servers, parameters=valid_parameters("APP_DEPLOY"))
    groups = task.plan["rollout"]["groups"]
    assert groups and all(re.match(r"group \d+, batch \d+$|canary$|all servers$", g["label"]) for g in groups)
    client.force_login(world.owner)
    text = visible_text(client.get(reverse("console:task", args=[task.task_id])).content.decode())
    for group in groups:
        korean = {"canary": "카나리", "all": "전체 서버"}.get(group["tier"])
        assert (korean or f"그룹 {group['rolling_group']}, 배치 {group['index']}") in text
        assert group["label"] not in text
