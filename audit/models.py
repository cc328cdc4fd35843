from __future__ import annotations

from django.db import models


class AuditEntry(models.Model):
    """One link of the hash chain (TB_AUDIT_LOG). Never updated or deleted."""

    seq = models.BigIntegerField(unique=True)
    created_at = models.DateTimeField()
    actor = models.CharField(max_length=150)
    actor_id = models.BigIntegerField(null=True, blank=True)
    action = models.CharField(max_length=64, db_index=True)
    task = models.CharField(max_length=32, blank=True, db_index=True)
    target = models.CharField(max_length=255, blank=True)
    command = models.TextField(blank=True)
    result_code = models.CharField(max_length=32, blank=True)
    result_hash = models.CharField(max_length=64, blank=True)
    payload = models.JSONField(default=dict, blank=True)
    prev_hash = models.CharField(max_length=64)
    entry_hash = models.CharField(max_length=64, unique=True)

    class Meta:
        db_table = "TB_AUDIT_LOG"
        ordering = ["seq"]
        verbose_name = "audit entry (TB_AUDIT_LOG)"
        verbose_name_plural = "audit entries (TB_AUDIT_LOG)"

    def __str__(self) -> str:
        return f"#{self.seq} {self.action} by {self.actor}"


class ChainHead(models.Model):
    """A single row locked for update so concurrent writers append one after another."""

    id = models.PositiveSmallIntegerField(primary_key=True, default=1)
    seq = models.BigIntegerField(default=0)
    entry_hash = models.CharField(max_length=64, default="0" * 64)

    class Meta:
        db_table = "TB_AUDIT_HEAD"
