"""Sub-chain heads from the database: for signing a checkpoint, and for naming who diverged.

Heads are computed at checkpoint time, not kept in a table updated by every append: the
append is the serialised hot path (one WAL flush each on PostgreSQL), while a checkpoint
every 1,000 entries reads those 1,000 narrow rows in about a millisecond. The starting
point is the previous version 2 checkpoint's leaves, used only after they hash to its
signed root and its signature verifies; otherwise (first checkpoint after the upgrade,
or tampered leaves) the heads are rebuilt from the first entry. See docs/audit.md.
"""

from __future__ import annotations

import logging

from django.db import connection

from . import canonical as canon
from . import merkle, signing
from .models import AuditCheckpoint

logger = logging.getLogger(__name__)
_SCAN = 'SELECT institution, entry_hash FROM "TB_AUDIT_LOG" WHERE seq > %s AND seq <= %s ORDER BY seq'


def trusted_leaves(cp: AuditCheckpoint, public_key=None) -> list[merkle.Leaf] | None:
    """The checkpoint's stored leaves if they hash to its root and its signature verifies, else None."""
    try:
        leaves = merkle.parse_leaves(cp.leaves)
    except ValueError:
        return None
    message = signing.checkpoint_message(cp.seq, cp.entry_hash, canon.time_text(cp.created_at), cp.merkle_root)
    if merkle.root(leaves) != cp.merkle_root or not signing.verify(
        public_key or signing.own_public_key(), cp.signature, message
    ):
        return None
    return leaves


def advance(state: merkle.SubChains, after_seq: int, up_to_seq: int) -> int:
    """Add the entries (after_seq, up_to_seq] to state in seq order; returns how many were read."""
    count = 0
    with connection.cursor() as cursor:
        cursor.execute(_SCAN, [after_seq, up_to_seq])
        while rows := cursor.fetchmany(5000):
            for institution, entry_hash in rows:
                state.add(institution, entry_hash)
            count += len(rows)
    return count


def leaves_at(seq: int) -> list[merkle.Leaf]:
    """The sorted (institution, count, head) leaves of the chain up to and including seq."""
    base = AuditCheckpoint.objects.exclude(merkle_root="").filter(seq__lte=seq).order_by("-seq", "-id").first()
    leaves = trusted_leaves(base) if base is not None else None
    if base is not None and leaves is None:
        logger.warning(
            "audit checkpoint %s: stored leaves do not match its signed root; rebuilding sub-chains", base.pk
        )
    state = merkle.SubChains(leaves or ())
    advance(state, base.seq if base is not None and leaves is not None else 0, seq)
    return state.leaves()


def attribute(broken_seq: int) -> list[str]:
    """Institutions whose sub-chain no longer reaches the signed leaves of the first root
    checkpoint at or after broken_seq (starting from the last trusted one before it)."""
    after = AuditCheckpoint.objects.exclude(merkle_root="").filter(seq__gte=broken_seq).order_by("seq", "id")
    target = next((cp for cp in after[:20] if trusted_leaves(cp) is not None), None)
    if target is None:
        return []
    before = AuditCheckpoint.objects.exclude(merkle_root="").filter(seq__lt=broken_seq).order_by("-seq", "-id")
    base_cp, base = None, None
    for cp in before[:20]:
        if (base := trusted_leaves(cp)) is not None:
            base_cp = cp
            break
    state = merkle.SubChains(base or ())
    advance(state, base_cp.seq if base_cp is not None else 0, target.seq)
    return merkle.diverged(merkle.parse_leaves(target.leaves), state.leaves())
