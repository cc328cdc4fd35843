"""An audit append runs in its caller's transaction (on SQLite in a savepoint of its own): when it
fails, the change it was recording cannot be committed, even by a caller that catches the error."""

from __future__ import annotations

import pytest
from django.db import IntegrityError, transaction
from django.db.transaction import TransactionManagementError

import audit
from audit.models import AuditEntry, ChainHead
from cmdb.models import Institution


@pytest.mark.django_db
def test_a_failed_append_takes_the_callers_change_with_it():
    first = audit.record("alice", "test.first", payload={"institution": "A1"})
    # Another writer's row at the next seq, the head not moved: the next append collides on seq.
    planted = AuditEntry(**{f.attname: getattr(first, f.attname) for f in AuditEntry._meta.concrete_fields})
    planted.pk, planted.seq, planted.entry_hash = None, first.seq + 1, "0" * 64
    AuditEntry.objects.bulk_create([planted])

    with transaction.atomic():
        Institution.objects.create(code="LOST", name="기록 실패", tier=2)
        with pytest.raises(IntegrityError):
            audit.record("alice", "test.second", payload={"institution": "LOST"})
        # The caller caught it, but the transaction is spoiled: nothing more runs, nothing commits.
        with pytest.raises(TransactionManagementError):
            Institution.objects.filter(code="LOST").exists()

    assert not Institution.objects.filter(code="LOST").exists()
    assert not AuditEntry.objects.filter(action="test.second").exists()
    assert ChainHead.objects.get(id=1).seq == first.seq  # the head did not move
