"""Append to and read the hash chain. (Minimal contract; hardened by the audit issue.)"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from django.db import transaction
from django.utils import timezone

from .models import AuditEntry, ChainHead

GENESIS = "0" * 64


def actor_fields(actor: Any) -> tuple[str, int | None]:
    if actor is None:
        return "system", None
    if isinstance(actor, str):
        return actor, None
    name = getattr(actor, "get_username", None)
    return (name() if callable(name) else str(actor)), getattr(actor, "pk", None)


def canonical(entry: AuditEntry) -> bytes:
    body = {
        "seq": entry.seq,
        "time": entry.created_at.astimezone(timezone.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
        "actor": entry.actor,
        "actor_id": entry.actor_id,
        "action": entry.action,
        "task": entry.task,
        "target": entry.target,
        "command": entry.command,
        "result_code": entry.result_code,
        "result_hash": entry.result_hash,
        "payload": entry.payload,
    }
    return json.dumps(body, sort_keys=True, ensure_ascii=False, separators=(",", ":")).encode()


def record(actor, action, *, task=None, target=None, command=None, result_code=None, output=None, payload=None):
    name, actor_id = actor_fields(actor)
    with transaction.atomic():
        head, _ = ChainHead.objects.select_for_update().get_or_create(id=1)
        entry = AuditEntry(
            seq=head.seq + 1,
            created_at=timezone.now(),
            actor=name,
            actor_id=actor_id,
            action=action,
            task=str(task or ""),
            target=str(target or ""),
            command=command or "",
            result_code="" if result_code is None else str(result_code),
            result_hash=hashlib.sha256(output.encode() if isinstance(output, str) else output).hexdigest()
            if output is not None
            else "",
            payload=payload or {},
            prev_hash=head.entry_hash,
        )
        entry.entry_hash = hashlib.sha256(canonical(entry) + head.entry_hash.encode()).hexdigest()
        entry.save()
        head.seq, head.entry_hash = entry.seq, entry.entry_hash
        head.save(update_fields=["seq", "entry_hash"])
    return entry
