"""audit.record: the documented canonical form, hashes, scrubbing, append-only guards, mirror."""

from __future__ import annotations

import hashlib
import json

import pytest
from django.db import transaction

import audit
from audit import canonical
from audit.models import AppendOnlyError, AuditCheckpoint, AuditEntry, ChainHead


def test_entry_hash_is_sha256_of_documented_canonical_plus_prev_hash(db, django_user_model):
    # An unsaved user: the entry takes the name and id only, and creating a user would be
    # an audit entry of its own (seq 1) ahead of the one this test documents.
    user = django_user_model(username="kim", pk=41)
    first = audit.record(user, "task.approve", task="OPS-20260523-001", target="WAS1", command="ls -l",
                         result_code=0, output="total 0\n", payload={"b": 1, "a": {"z": 2, "y": "값"},
                                                                     "institution": "MOEF"})  # fmt: skip
    second = audit.record(None, "system.tick")

    when = first.created_at.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    out_hash = hashlib.sha256(b"total 0\n").hexdigest()
    expected = (
        f'{{"seq":1,"time":"{when}","actor":"kim","actor_id":{user.pk},"action":"task.approve","institution":"MOEF",'
        f'"task":"OPS-20260523-001","target":"WAS1","command":"ls -l","result_code":"0","result_hash":"{out_hash}",'
        '"payload":{"a":{"y":"값","z":2},"b":1,"institution":"MOEF"}}'
    )
    assert first.canonical == expected
    assert first.prev_hash == "0" * 64
    assert first.entry_hash == hashlib.sha256(expected.encode("utf-8") + b"0" * 64).hexdigest()
    assert second.seq == 2 and second.actor == "system" and second.prev_hash == first.entry_hash
    stored = AuditEntry.objects.get(seq=1)
    assert stored.institution == "MOEF" and stored.payload["a"] == {"y": "값", "z": 2}
    assert ChainHead.objects.get(id=1).seq == 2


def test_secrets_never_enter_an_entry(db):
    entry = audit.record(
        "admin", "credential.change", command="mysql -u root --password=Hunter2! -e 'select 1'",
        payload={"fields": ["password"], "password": "Hunter2!", "nested": {"api_key": "k-123"}},
    )  # fmt: skip
    stored = AuditEntry.objects.get(pk=entry.pk)
    assert "Hunter2!" not in stored.canonical and "k-123" not in stored.canonical
    assert "Hunter2!" not in stored.command
    assert stored.payload["password"] == "[REDACTED]" and stored.payload["fields"] == ["password"]


def test_append_only_guards(db, chain):
    entry = AuditEntry.objects.get(seq=3)
    entry.command = "rewritten"
    with pytest.raises(AppendOnlyError):
        entry.save()
    with pytest.raises(AppendOnlyError):
        entry.delete()
    with pytest.raises(AppendOnlyError):
        AuditEntry.objects.filter(seq=3).update(command="x")
    with pytest.raises(AppendOnlyError):
        AuditEntry.objects.all().delete()
    with pytest.raises(AppendOnlyError):
        AuditCheckpoint.objects.all().delete()
    assert AuditEntry.objects.get(seq=3).command == "echo 2"
    assert AuditEntry.objects.count() == 25


def test_bad_input_is_refused_and_writes_nothing(db, chain):
    with pytest.raises(TypeError, match="payload must be a dict"):
        audit.record("x", "test.bad", payload=["not", "a", "dict"])
    with pytest.raises(ValueError, match="action is longer than 100"):
        audit.record("x", "a" * 101)
    with pytest.raises(ValueError, match="action is required"):
        audit.record("x", "")
    assert AuditEntry.objects.count() == 25 and ChainHead.objects.get(id=1).seq == 25
    # NUL bytes and lone surrogates are made storable instead of failing the caller.
    odd = audit.record("x", "test.odd", command="a\x00b\udcff")
    assert odd.command == "a\ufffdb?"


def test_rolled_back_append_leaves_no_entry_and_no_mirror_line(transactional_db, settings):
    audit.record("a", "test.kept")
    with pytest.raises(RuntimeError), transaction.atomic():
        audit.record("a", "test.rolled_back")
        raise RuntimeError("the caller's transaction fails")
    after = audit.record("a", "test.after")
    assert after.seq == 2 and after.prev_hash == AuditEntry.objects.get(seq=1).entry_hash
    mirrored = "".join(p.read_text() for p in settings.AUDIT_MIRROR_DIR.glob("audit-*.jsonl"))
    assert "test.rolled_back" not in mirrored and "test.after" in mirrored


def test_mirror_has_every_entry_and_checkpoint_in_a_daily_file(transactional_db, chain, settings):
    files = sorted(settings.AUDIT_MIRROR_DIR.glob("audit-*.jsonl"))
    day = chain[0].created_at.strftime("%Y-%m-%d")
    assert [f.name for f in files] == [f"audit-{day}.jsonl"]
    records = [json.loads(line) for line in files[0].read_text().splitlines()]
    entries = [r for r in records if r["type"] == "entry"]
    assert [r["entry"]["seq"] for r in entries] == list(range(1, 26))
    for r in entries:
        text = json.dumps(r["entry"], ensure_ascii=False, separators=(",", ":")).encode()
        assert r["entry_hash"] == canonical.chain_hash(text, r["prev_hash"])
    checkpoints = [r for r in records if r["type"] == "checkpoint"]
    assert [c["seq"] for c in checkpoints] == [10, 20]
    assert list(AuditCheckpoint.objects.values_list("seq", flat=True)) == [10, 20]


def test_login_and_failed_login_are_audited_without_password(client, django_user_model, db):
    django_user_model.objects.create_user("lee", password="pw-Guardia-1")
    client.post("/accounts/login/", {"username": "lee", "password": "wrong-Secret-9"})
    client.post("/accounts/login/", {"username": "lee", "password": "pw-Guardia-1"})
    failed = AuditEntry.objects.get(action="auth.login_failed")
    assert failed.target == "lee" and failed.actor == "system"
    ok = AuditEntry.objects.get(action="auth.login")
    assert ok.actor == "lee"
    everything = "".join(AuditEntry.objects.values_list("canonical", flat=True))
    assert "wrong-Secret-9" not in everything and "pw-Guardia-1" not in everything


def test_schedules_daily_verify_at_midnight_and_hourly_checkpoint(db):
    from django.utils import timezone
    from django_q.models import Schedule

    from audit import schedules, tasks

    schedules.ensure_schedules()  # idempotent: already created by post_migrate
    verify = Schedule.objects.get(name=schedules.VERIFY)
    assert verify.func == "audit.tasks.verify_chain_scheduled" and verify.schedule_type == Schedule.DAILY
    local = timezone.localtime(verify.next_run)
    assert (local.hour, local.minute) == (0, 0)
    hourly = Schedule.objects.get(name=schedules.CHECKPOINT)
    assert hourly.schedule_type == Schedule.HOURLY and Schedule.objects.filter(name=schedules.VERIFY).count() == 1

    audit.record("a", "test.one")
    assert tasks.hourly_checkpoint() == 1
    assert tasks.hourly_checkpoint() is None  # nothing new within the hour
    result = tasks.verify_chain_scheduled()
    assert result["ok"] is True
    assert AuditEntry.objects.filter(action="audit.verify", actor="system").exists()
