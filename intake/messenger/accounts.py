"""Messenger identities are changed here only (the admin and the demo set-up call it), so
every change is an audit entry naming what changed, by whom."""

from __future__ import annotations

from django.db import transaction

import audit

from ..models import ChatWebhook, MessengerIdentity

TRACKED = ("channel", "matrix_id", "chat_user_id", "webhook_id", "enabled")


def save_identity(actor, identity: MessengerIdentity) -> MessengerIdentity:
    """Validate and save; a changed Matrix id forgets the old direct room."""
    identity.full_clean(exclude=["user"] if identity.user_id else None)
    with transaction.atomic():
        before = MessengerIdentity.objects.filter(pk=identity.pk).values(*TRACKED).first() if identity.pk else None
        if before and before["matrix_id"] != identity.matrix_id:
            identity.room_id = ""
        identity.save()
        after = {name: getattr(identity, name) for name in TRACKED}
        changed = {
            name: [str(before[name]) if before else "", str(after[name])]
            for name in TRACKED
            if not before or before[name] != after[name]
        }
        if changed:
            audit.record(
                actor,
                "messenger.identity",
                target=identity.user.get_username(),
                payload={"changed": changed, "created": before is None},
            )
    return identity


def delete_identity(actor, identity: MessengerIdentity) -> None:
    with transaction.atomic():
        audit.record(
            actor,
            "messenger.identity",
            target=identity.user.get_username(),
            payload={"deleted": True, "matrix_id": identity.matrix_id or "", "chat_user_id": identity.chat_user_id},
        )
        identity.delete()


def save_webhook(actor, webhook: ChatWebhook, changed_fields: list[str], created: bool) -> None:
    """The URL is not written to the audit record (a webhook URL is often its own secret)."""
    with transaction.atomic():
        webhook.save()
        audit.record(
            actor,
            "messenger.webhook",
            target=webhook.name,
            payload={"changed": sorted(changed_fields), "created": created, "kind": webhook.kind},
        )


def delete_webhook(actor, webhook: ChatWebhook) -> None:
    with transaction.atomic():
        audit.record(actor, "messenger.webhook", target=webhook.name, payload={"deleted": True})
        webhook.delete()
