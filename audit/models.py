"""The audit record: the hash-chained entries, the chain head and the signed checkpoints.

Entries are append-only. The application refuses updates and deletes here (model and
queryset), the admin is read-only, and on PostgreSQL a trigger rejects UPDATE, DELETE
and TRUNCATE (migration 0002). What a database superuser can still do, and how the
signed checkpoints catch it, is in docs/audit.md.
"""

from __future__ import annotations

import json

from django.db import models
from django.utils.translation import gettext_lazy as _

from .tables import table_meta


class AppendOnlyError(Exception):
    """Raised when code tries to change or remove an audit entry or checkpoint."""


class CanonicalJSONEncoder(json.JSONEncoder):
    """Store payloads exactly as their canonical text (sorted keys, compact, raw UTF-8).

    On SQLite the stored column text then equals the payload part of the canonical
    bytes, so the verifier compares it without parsing JSON (docs/audit.md).
    """

    def __init__(self, **kwargs):
        kwargs.update(sort_keys=True, separators=(",", ":"), ensure_ascii=False)
        super().__init__(**kwargs)


class AppendOnlyQuerySet(models.QuerySet):
    def update(self, **kwargs):
        raise AppendOnlyError("audit records are append-only: update() is refused")

    def delete(self):
        raise AppendOnlyError("audit records are append-only: delete() is refused")

    def bulk_update(self, objs, fields, batch_size=None):
        raise AppendOnlyError("audit records are append-only: bulk_update() is refused")


class AppendOnlyModel(models.Model):
    objects = AppendOnlyQuerySet.as_manager()

    class Meta:
        abstract = True

    def save(self, *args, **kwargs):
        if not self._state.adding:
            raise AppendOnlyError(f"{self._meta.object_name} rows are append-only: update refused")
        kwargs["force_insert"] = True
        super().save(*args, **kwargs)

    def delete(self, *args, **kwargs):
        raise AppendOnlyError(f"{self._meta.object_name} rows are append-only: delete refused")


class AuditEntry(AppendOnlyModel):
    """One link of the hash chain (TB_AUDIT_LOG).

    `canonical` holds the exact bytes that were hashed (audit.canonical); the other
    columns are the readable copy that people query and filter on. Verification proves
    both: the bytes against the chain, and the columns against the bytes.
    """

    seq = models.BigIntegerField(_("순번"), unique=True)
    created_at = models.DateTimeField(_("시각"), db_index=True)
    actor = models.CharField(_("행위자"), max_length=150)
    actor_id = models.BigIntegerField(_("행위자 ID"), null=True, blank=True)
    action = models.CharField(_("행위"), max_length=100, db_index=True)
    # The institution code, taken from payload["institution"]: audit cannot import cmdb,
    # so the recorder passes the code and the export filter reads this column.
    institution = models.CharField(_("기관"), max_length=64, blank=True, db_index=True)
    task = models.CharField(_("작업"), max_length=64, blank=True, db_index=True)
    target = models.TextField(_("대상"), blank=True)
    command = models.TextField(_("명령"), blank=True)
    result_code = models.CharField(_("결과 코드"), max_length=32, blank=True)
    result_hash = models.CharField(_("결과 해시"), max_length=64, blank=True)
    payload = models.JSONField(_("내용"), default=dict, blank=True, encoder=CanonicalJSONEncoder)
    prev_hash = models.CharField(_("이전 해시"), max_length=64)
    entry_hash = models.CharField(_("항목 해시"), max_length=64, unique=True)
    canonical = models.TextField(_("정규화 바이트"))

    # The console filters by one column and pages newest first: (column, seq) reads a
    # page straight off the index, where the single-column index needs a sort of every
    # matching row. (The single-column indexes stay: dropping them on SQLite would
    # rebuild the table, and with it its append-only triggers.)
    Meta = table_meta(
        "TB_AUDIT_LOG",
        _("감사 항목 (TB_AUDIT_LOG)"),
        plural=_("감사 로그 (TB_AUDIT_LOG)"),
        ordering=["seq"],
        indexes=[
            models.Index(fields=["action", "seq"], name="audit_action_seq"),
            models.Index(fields=["institution", "seq"], name="audit_institution_seq"),
            models.Index(fields=["actor", "seq"], name="audit_actor_seq"),
            models.Index(fields=["task", "seq"], name="audit_task_seq"),
        ],
    )

    def __str__(self) -> str:
        return f"#{self.seq} {self.action} by {self.actor}"

    @property
    def server_group(self) -> str:
        """The report table's "server group": payload["server_group"] when the recorder gave one."""
        value = self.payload.get("server_group", "") if isinstance(self.payload, dict) else ""
        return str(value)


class ChainHead(models.Model):
    """A single row locked for update so concurrent writers append one after another."""

    id = models.PositiveSmallIntegerField(_("ID"), primary_key=True, default=1)
    seq = models.BigIntegerField(_("순번"), default=0)
    entry_hash = models.CharField(_("항목 해시"), max_length=64, default="0" * 64)

    Meta = table_meta("TB_AUDIT_HEAD", _("체인 헤드"))


class AuditCheckpoint(AppendOnlyModel):
    """An Ed25519 signature over (seq, entry_hash, time) of the chain head at one moment.

    Kept apart from the entries (and mirrored to the JSON Lines files) so that truncating
    the tail or recomputing the whole chain with database access is still detected: the
    attacker does not hold the private key, which lives outside the database.
    """

    seq = models.BigIntegerField(_("순번"), db_index=True)
    entry_hash = models.CharField(_("항목 해시"), max_length=64)
    created_at = models.DateTimeField(_("시각"))
    key_id = models.CharField(_("키 ID"), max_length=16)
    signature = models.CharField(_("서명"), max_length=128)  # base64 of the 64-byte signature
    reason = models.CharField(
        _("사유"),
        max_length=16,
        default="interval",
    )  # interval | hourly | manual | export | proof
    # Version 2 (audit.merkle): the Merkle root over the sorted institution sub-chain heads,
    # signed with (seq, entry_hash, time), and the leaves it was built from as JSON
    # [[institution, count, head], ...] so verification can name the institution that
    # diverged. Empty on version 1 checkpoints, which sign (seq, entry_hash, time) only.
    merkle_root = models.CharField(_("머클 루트"), max_length=64, blank=True, default="")
    leaves = models.TextField(_("잎 수"), blank=True, default="")

    Meta = table_meta("TB_AUDIT_CHECKPOINT", _("서명된 체크포인트"), ordering=["seq", "id"])

    def __str__(self) -> str:
        return f"checkpoint @{self.seq}"
