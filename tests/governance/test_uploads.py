"""Uploads are validated before anything is kept, a refused request leaves no file, SSL keys
are sealed with the vault, and unreferenced files are swept (and audited)."""

from __future__ import annotations

import hashlib
import io
import json
import os
import tarfile
import time
import zipfile

import pytest
from rest_framework.test import APIClient

from audit.models import AuditEntry
from execution.services import ArtifactStore
from governance import attachments, tasks
from governance.attachments import attachment_root
from governance.models import OpsTask
from tests.execution import certgen
from tests.factories import attachment_listing, named_file, war_bytes

URL = "/api/v1/tasks/"
SSL_PARAMS = {"cert_path": "/opt/app/was/conf/site.crt", "key_path": "/opt/app/was/conf/site.key", "https_port": 8443}


@pytest.fixture(autouse=True)
def _own_store(settings, tmp_path):
    """A store of this test's own: the sweep counts every file in it."""
    settings.MEDIA_ROOT = tmp_path / "media"


@pytest.fixture
def post(world, django_capture_on_commit_callbacks):
    """Multipart POST as the site manager of the world's institution (the field user)."""
    assert world.requester.groups.filter(name="site_manager").exists()
    for server in world.servers:  # the CMDB roots a plan is rendered in
        server.app_path, server.deploy_path, server.backup_path = "/opt/app/was", "/opt/app/deploy", "/opt/app/backup"
        server.script_path, server.log_path = "/opt/app/bin", "/opt/app/logs"
        server.save()
    client = APIClient()
    client.force_authenticate(world.requester)

    def _post(body):
        with django_capture_on_commit_callbacks(execute=False):
            return client.post(
                URL, {"system": "BUDGET", "title": "요청", "targets": ["was-1"], **body}, format="multipart"
            )

    return _post


@pytest.fixture
def pair():
    ca, ca_key = certgen.make_ca()
    leaf, leaf_key = certgen.make_leaf(ca, ca_key)
    return certgen.cert_pem(leaf), certgen.key_pem(leaf_key)


def post_ssl(post, cert: bytes, key: bytes, key_name: str = "site.key"):
    """An SSL replacement request carrying ``cert`` as site.crt and ``key`` as ``key_name``."""
    return post(
        {
            "sub_type": "SSL_REPLACE",
            "parameters": json.dumps(SSL_PARAMS),
            "cert_file": named_file(cert, "site.crt"),
            "key_file": named_file(key, key_name),
        }
    )


def _zip(entries: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, data in entries.items():
            archive.writestr(name, data)
    return buffer.getvalue()


def _targz(entries: list[tuple[str, bytes | None, bytes]]) -> bytes:
    """(name, content or None for a symlink, link target) members."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as archive:
        for name, data, target in entries:
            info = tarfile.TarInfo(name)
            if data is None:
                info.type, info.linkname = tarfile.SYMTYPE, target.decode()
                archive.addfile(info)
            else:
                info.size = len(data)
                archive.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def _assert_refused(response, field: str, text: str, before: set[str]) -> None:
    assert response.status_code == 400, response.content
    body = response.json()
    assert field in body, body
    assert text in " ".join(map(str, body[field])), body
    assert attachment_listing() == before  # nothing stored, no temporary left behind
    assert not OpsTask.objects.exists()


@pytest.mark.parametrize(
    ("content", "text"),
    [
        (b"version=2.0.0\n" + b"#" * 2048, "zip 아카이브가 아닙니다"),
        (_zip({"WEB-INF/web.xml": b"<web-app/>"}), "META-INF/MANIFEST.MF가 없습니다"),
        (
            _zip({"META-INF/MANIFEST.MF": b"Manifest-Version: 1.0\n", "../../../etc/cron.d/x": b"* * * * * root sh"}),
            "애플리케이션 밖으로 풀립니다",
        ),
    ],
)
def test_a_war_that_is_not_a_war_is_refused_naming_the_field(world, post, content, text):
    before = attachment_listing()
    response = post(
        {
            "sub_type": "APP_DEPLOY",
            "parameters": json.dumps({"version": "2.0.0"}),
            "artifact": named_file(content, "app-2.0.0.war"),
        }
    )
    _assert_refused(response, "artifact", text, before)


@pytest.mark.parametrize(
    ("entries", "text"),
    [
        ([("../outside.html", b"x", b"")], "대상 경로 밖으로 풀립니다"),
        ([("index.html", b"x", b""), ("link", None, b"/etc/shadow")], "링크나 장치입니다"),
    ],
)
def test_a_static_bundle_with_escaping_members_is_refused(world, post, entries, text):
    before = attachment_listing()
    response = post(
        {
            "sub_type": "STATIC_SYNC",
            "parameters": json.dumps({"target_path": "/srv/static"}),
            "artifact": named_file(_targz(entries), "static.tar.gz"),
        }
    )
    _assert_refused(response, "artifact", text, before)


def test_a_certificate_that_is_not_pem_is_refused(world, post, pair):
    _cert, key = pair
    before = attachment_listing()
    response = post_ssl(post, b"CERT", key)
    _assert_refused(response, "cert_file", "PEM 인증서이(가) 아닙니다", before)


def test_a_key_that_does_not_match_the_certificate_is_refused(world, post, pair):
    cert, _key = pair
    other_ca, other_ca_key = certgen.make_ca("Other CA")
    _leaf, other_key = certgen.make_leaf(other_ca, other_ca_key)
    before = attachment_listing()
    response = post_ssl(post, cert, certgen.key_pem(other_key), key_name="k.key")
    _assert_refused(response, "key_file", "인증서와 맞지 않습니다", before)


def test_a_key_that_is_not_a_key_and_a_key_in_the_certificate_field_are_refused(world, post, pair):
    cert, key = pair
    before = attachment_listing()
    response = post_ssl(post, cert, cert)
    _assert_refused(response, "key_file", "PEM 개인 키가 아닙니다", before)
    # A key pasted into the certificate file would be stored unsealed: refused too.
    response = post_ssl(post, cert + key, key)
    _assert_refused(response, "cert_file", "개인 키가 들어 있습니다", before)


def test_an_oversized_pem_is_refused_before_it_is_parsed(world, post, pair):
    cert, key = pair
    before = attachment_listing()
    response = post_ssl(post, cert + b"\n" * (64 * 1024), key, key_name="k.key")
    _assert_refused(response, "cert_file", "64 KB", before)


def test_an_upload_a_request_type_does_not_take_is_refused(world, post):
    before = attachment_listing()
    response = post({"sub_type": "SERVICE_RESTART", "artifact": named_file(war_bytes(), "app.war")})
    _assert_refused(response, "artifact", "아티팩트 파일을 올릴 수 없습니다", before)


def _closed_window(system) -> None:
    import datetime as dt

    from django.utils import timezone

    now = timezone.localtime()
    system.window_start = (now + dt.timedelta(hours=2)).time().replace(microsecond=0)
    system.window_end = (now + dt.timedelta(hours=3)).time().replace(microsecond=0)
    system.save()


@pytest.mark.parametrize("refusal", ["bad_target", "bad_parameter", "deploy_window"])
def test_a_refusal_later_in_the_filing_leaves_no_file(world, post, refusal):
    content = war_bytes("2.0.0", padding=1000)
    body = {
        "sub_type": "APP_DEPLOY",
        "parameters": json.dumps({"version": "2.0.0"}),
        "artifact": named_file(content, "app-2.0.0.war"),
    }
    field = {"bad_target": "targets", "bad_parameter": "parameters.rm", "deploy_window": "emergency"}[refusal]
    if refusal == "bad_target":
        body["targets"] = ["was-1", "was-9"]
    elif refusal == "bad_parameter":
        body["parameters"] = json.dumps({"version": "2.0.0", "rm": "-rf"})
    else:
        _closed_window(world.system)
    before = attachment_listing()
    response = post(body)
    assert response.status_code == 400 and field in response.json(), response.json()
    assert hashlib.sha256(content).hexdigest() not in attachment_listing()
    assert attachment_listing() == before
    assert not OpsTask.objects.exists()


def test_a_refused_filing_keeps_a_file_an_earlier_task_still_needs(world, post):
    content = war_bytes("2.0.1")
    sha = hashlib.sha256(content).hexdigest()
    ok = post(
        {
            "sub_type": "APP_DEPLOY",
            "parameters": json.dumps({"version": "2.0.1"}),
            "artifact": named_file(content, "app.war"),
        }
    )
    assert ok.status_code == 201, ok.json()
    refused = post({"sub_type": "APP_DEPLOY", "targets": ["was-9"], "artifact": named_file(content, "app.war")})
    assert refused.status_code == 400
    assert sha in attachment_listing()  # the first task's file is not the refused request's to remove


def test_a_stored_ssl_key_is_sealed_on_disk_and_opened_only_by_the_engine(world, post, pair):
    cert, key = pair
    response = post_ssl(post, cert, key)
    assert response.status_code == 201, response.json()
    key_sha = hashlib.sha256(key).hexdigest()
    assert response.json()["parameters"]["key_sha256"] == key_sha
    on_disk = (attachment_root() / key_sha).read_bytes()
    assert b"PRIVATE KEY" not in on_disk and key not in on_disk and on_disk.startswith(attachments.SEALED_MAGIC)
    assert (attachment_root() / hashlib.sha256(cert).hexdigest()).read_bytes() == cert  # a certificate is public
    store = ArtifactStore()
    assert store.read(key_sha) == key and store.path(key_sha) == key  # what the engine uploads: the opened bytes
    assert store.verify(key_sha) == attachment_root() / key_sha
    # The sealed bytes are bound to their name: moved under another hash they do not open.
    other = "f" * 64
    (attachment_root() / other).write_bytes(on_disk)
    with pytest.raises(Exception, match="열 수 없습니다"):
        store.read(other)


def _age(path, hours: float) -> None:
    then = time.time() - hours * 3600
    os.utime(path, (then, then))


def test_the_sweep_removes_old_unreferenced_files_only_and_audits_it(world, post):
    root = attachment_root()
    referenced = war_bytes("3.0.0")
    response = post(
        {
            "sub_type": "APP_DEPLOY",
            "parameters": json.dumps({"version": "3.0.0"}),
            "artifact": named_file(referenced, "app.war"),
        }
    )
    assert response.status_code == 201
    kept_sha = hashlib.sha256(referenced).hexdigest()
    old = attachments.store_attachment(war_bytes("0.9.0"), "old.war", kind="archive")["sha256"]
    fresh = attachments.store_attachment(war_bytes("3.1.0"), "fresh.war", kind="archive")["sha256"]
    crashed = root / ".upload-crashed"
    crashed.write_bytes(b"partial")
    for name in (kept_sha, old, crashed.name):
        _age(root / name, 48)
    foreign = root / "README"  # not a store file: left alone
    foreign.write_text("x")
    _age(foreign, 48)

    result = tasks.sweep_attachments()

    listing = attachment_listing()
    assert old not in listing and crashed.name not in listing
    assert {kept_sha, fresh, "README"} <= listing
    entry = AuditEntry.objects.filter(action="attachments.swept").get()
    removed = {item["file"] for item in entry.payload["removed"]}
    assert removed == {old, crashed.name} == {item["file"] for item in result["removed"]}
    assert entry.payload["kept_referenced"] == 1 and entry.payload["kept_recent"] == 1
    assert entry.actor == "system" and entry.result_code == "2"


def test_the_sweep_is_a_registered_schedule(db):
    from django_q.models import Schedule

    schedule = Schedule.objects.get(name="governance.sweep_attachments")
    assert schedule.func == "governance.tasks.sweep_attachments" and schedule.schedule_type == Schedule.DAILY
