"""TS-04 and its cousins: tampering through raw SQL under the ORM is caught and named."""

from __future__ import annotations

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import connection

from audit import canonical, services
from audit.models import AuditEntry
from audit.verify import verify_chain

LOG, HEAD, CP = '"TB_AUDIT_LOG"', '"TB_AUDIT_HEAD"', '"TB_AUDIT_CHECKPOINT"'


def sql(query: str, params=()) -> list:
    with connection.cursor() as cursor:
        cursor.execute(query, params)
        return cursor.fetchall() if cursor.description else []


def test_intact_chain_verifies(chain):
    report = verify_chain()
    assert report.ok, report.message()
    assert (report.entries, report.checkpoints, report.head_seq) == (25, 2, 25)


def test_ts04_modified_command_is_named(chain):
    sql(f"UPDATE {LOG} SET command = 'rm -rf /' WHERE seq = 7")
    report = verify_chain()
    assert (report.ok, report.first_broken_seq, report.kind) == (False, 7, "modified")
    assert "command" in report.detail


@pytest.mark.parametrize(
    ("statements", "seq", "kind"),
    [
        ([f"UPDATE {LOG} SET canonical = REPLACE(canonical, 'echo 11', 'echo 99') WHERE seq = 12"], 12, "modified"),
        ([f"DELETE FROM {LOG} WHERE seq = 7"], 7, "deleted"),
        (
            [
                f"UPDATE {LOG} SET seq = -1 WHERE seq = 7",
                f"UPDATE {LOG} SET seq = 7 WHERE seq = 8",
                f"UPDATE {LOG} SET seq = 8 WHERE seq = -1",
            ],
            7,
            "reordered",
        ),
    ],
    ids=["modified-canonical-bytes", "deleted-entry", "swapped-entries"],
)
def test_raw_sql_tampering_is_named(chain, statements, seq, kind):
    for statement in statements:
        sql(statement)
    report = verify_chain()
    assert (report.first_broken_seq, report.kind) == (seq, kind)


def test_inserted_entry_with_renumbering_is_caught(chain):
    sql(f"UPDATE {LOG} SET seq = seq + 1000 WHERE seq >= 12")
    sql(f"UPDATE {LOG} SET seq = seq - 999 WHERE seq >= 1000")
    prev = AuditEntry.objects.get(seq=11).entry_hash
    text = canonical.build(12, "2026-01-01T00:00:00.000000Z", "mallory", None, "task.approve", "", "", "", "",
                           "", "", "{}")  # fmt: skip
    sql(f"INSERT INTO {LOG} (seq, created_at, actor, action, institution, task, target, command, result_code, "
        f"result_hash, payload, prev_hash, entry_hash, canonical) VALUES (12, '2026-01-01 00:00:00', 'mallory', "
        f"'task.approve', '', '', '', '', '', '', '{{}}', %s, %s, %s)",
        [prev, canonical.chain_hash(text.encode(), prev), text])  # fmt: skip
    report = verify_chain()
    assert (report.first_broken_seq, report.kind) == (12, "inserted")


def test_dropped_tail_is_caught_against_the_checkpoint(chain):
    services.create_checkpoint("manual")  # signs head 25
    sql(f"DELETE FROM {LOG} WHERE seq > 15")
    last = AuditEntry.objects.get(seq=15)
    sql(f"UPDATE {HEAD} SET seq = 15, entry_hash = %s WHERE id = 1", [last.entry_hash])  # a careful attacker
    report = verify_chain()
    assert (report.first_broken_seq, report.kind) == (16, "truncated")
    assert "25" in report.detail


def _recompute_chain_from(seq: int) -> None:
    """What someone with database access does: rewrite an entry and re-hash everything after it."""
    sql(f"UPDATE {LOG} SET command = 'echo forged', canonical = REPLACE(canonical, %s, %s) WHERE seq = %s",
        [f'"command":"echo {seq - 1}"', '"command":"echo forged"', seq])  # fmt: skip
    prev = AuditEntry.objects.get(seq=seq - 1).entry_hash
    for row_seq, text in sql(f"SELECT seq, canonical FROM {LOG} WHERE seq >= %s ORDER BY seq", [seq]):
        digest = canonical.chain_hash(text.encode(), prev)
        sql(f"UPDATE {LOG} SET prev_hash = %s, entry_hash = %s WHERE seq = %s", [prev, digest, row_seq])
        prev = digest
    sql(f"UPDATE {HEAD} SET entry_hash = %s WHERE id = 1", [prev])


def test_consistently_recomputed_chain_is_caught_by_the_signature(chain):
    _recompute_chain_from(5)
    report = verify_chain()
    assert (report.ok, report.kind) == (False, "rewritten")
    assert report.first_broken_seq == 1 and "checkpoint at seq 10" in report.detail

    # Rewriting the checkpoint rows too does not help: their signatures no longer verify.
    for cp_seq, digest in sql(f"SELECT seq, entry_hash FROM {LOG} WHERE seq IN (10, 20)"):
        sql(f"UPDATE {CP} SET entry_hash = %s WHERE seq = %s", [digest, cp_seq])
    report = verify_chain()
    assert (report.first_broken_seq, report.kind) == (10, "checkpoint_forged")


def test_audit_verify_command_names_the_break(chain, capsys):
    call_command("audit_verify")
    assert "OK: 25 entries" in capsys.readouterr().out
    sql(f"UPDATE {LOG} SET actor = 'someone else' WHERE seq = 3")
    with pytest.raises(CommandError, match="BROKEN at seq 3: modified"):
        call_command("audit_verify")
    runs = AuditEntry.objects.filter(action="audit.verify").order_by("seq")
    assert [r.result_code for r in runs] == ["ok", "broken:modified"]
