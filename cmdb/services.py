"""CMDB operations with side effects. Admin actions, views and commands call these and
contain no rules of their own; every change here writes its audit entry in the same
transaction as the change."""

from __future__ import annotations

import logging
from typing import Any

from django.conf import settings
from django.core.exceptions import PermissionDenied, ValidationError
from django.db import models, transaction
from django.utils.module_loading import import_string

import audit

from . import vault
from .models import CommandRule, Credential, Server, SystemOwner

log = logging.getLogger(__name__)

# cmdb never imports execution (the app layering, pyproject.toml); the scanner is found by name.
HOST_KEY_SCANNER = "execution.transport.scan_host_key"


def _plain(value: Any) -> Any:
    """An audit-friendly representation: users by username, other models by str()."""
    if isinstance(value, models.Model):
        username = getattr(value, "get_username", None)
        return username() if callable(username) else str(value)
    if value is None or isinstance(value, bool | int | str):
        return value
    return str(value)


# --- owner table (TB_SYSTEM_OWNER) -------------------------------------------------------


def may_edit_owner_row(user, owner: SystemOwner | None) -> bool:
    """Admins edit every row; supervisors only rows of systems they supervise."""
    if not (user and user.is_active):
        return False
    if user.is_superuser or user.has_perm("cmdb.change_any_systemowner"):
        return True
    if not user.has_perm("cmdb.change_systemowner"):
        return False
    return owner is None or owner.supervisor_id == user.pk


def save_system_owner(actor, owner: SystemOwner, changed_fields: list[str]) -> dict[str, list[Any]]:
    """Save an owner row and audit which fields changed, old -> new.

    The old values are re-read from the database under a row lock rather than trusted
    from the form, so the audit shows what was really replaced.
    """
    if not may_edit_owner_row(actor, owner):
        raise PermissionDenied("you may edit the owner table only for systems you supervise")
    with transaction.atomic():
        before = SystemOwner.objects.select_for_update().filter(pk=owner.pk).first() if owner.pk else None
        if before is not None and not may_edit_owner_row(actor, before):
            raise PermissionDenied("you may edit the owner table only for systems you supervise")
        owner.full_clean()
        owner.save()
        fields = changed_fields or [f.name for f in SystemOwner._meta.concrete_fields if f.name not in ("id",)]
        changed: dict[str, list[Any]] = {}
        for name in fields:
            if name == "updated_at":
                continue
            old = _plain(getattr(before, name)) if before is not None else None
            new = _plain(getattr(owner, name))
            if old != new:
                changed[name] = [old, new]
        audit.record(
            actor,
            "cmdb.owner_change" if before is not None else "cmdb.owner_create",
            target=owner.system.code,
            payload={"changed": changed},
        )
    return changed


# --- credentials -------------------------------------------------------------------------


def save_credential(actor, credential: Credential, changed_fields: list[str], new_secret: str = "") -> None:
    """Create or update a credential; the audit names the fields, never a value of the secret."""
    creating = credential.pk is None
    if not creating and "name" in changed_fields and not new_secret and credential.has_secret:
        # The name is bound into the ciphertext; renaming would make the secret unreadable.
        raise ValidationError({"name": "the name cannot change unless the secret is set again"})
    if new_secret:
        vault.register_secret(new_secret)  # redact it from any log line from here on
        credential.set_secret(new_secret)
    with transaction.atomic():
        credential.full_clean()
        credential.save()
        audit.record(
            actor,
            "cmdb.credential_create" if creating else "cmdb.credential_change",
            target=credential.name,
            payload={
                "changed": sorted(f for f in changed_fields if f not in ("new_password", "new_private_key")),
                "material_replaced": bool(new_secret),
            },
        )


def delete_credential(actor, credential: Credential) -> None:
    with transaction.atomic():
        name = credential.name
        credential.delete()
        audit.record(actor, "cmdb.credential_delete", target=name)


def rotate_vault_key(new_key: bytes, actor=None) -> int:
    """Re-encrypt every stored secret with new_key in one transaction; returns the count.

    Each secret is decrypted with the current key and re-encrypted with a fresh nonce; a
    secret that cannot be read aborts the whole rotation, so the table never ends up
    with two keys in use.
    """
    old_key = vault.load_key()
    if vault.key_id(old_key) == vault.key_id(new_key):
        raise vault.VaultError("the new vault key is the same as the current one")
    count = 0
    with transaction.atomic():
        for credential in Credential.objects.select_for_update().exclude(secret_encrypted="").order_by("pk"):
            context = credential.vault_context()
            plaintext = vault.decrypt(credential.secret_encrypted, context, key=old_key)
            credential.secret_encrypted = vault.encrypt(plaintext, context, key=new_key)
            if vault.decrypt(credential.secret_encrypted, context, key=new_key) != plaintext:
                raise vault.VaultError(f"re-encryption check failed for credential {credential.name}")
            credential.save(update_fields=["secret_encrypted"])
            count += 1
        audit.record(
            actor,
            "cmdb.vault_rotate",
            payload={"credentials": count, "old_key_id": vault.key_id(old_key), "new_key_id": vault.key_id(new_key)},
        )
    return count


# --- host keys ----------------------------------------------------------------------------


def scan_host_key(actor, server: Server, timeout: float | None = None) -> tuple[str, str]:
    """Connect to the server, read its SSH host-key fingerprint and pin it.

    Returns (old, new). A changed fingerprint is pinned too (an operator asked for the
    scan), but the audit entry keeps both so a swapped key is visible afterwards.
    """
    scanner = import_string(HOST_KEY_SCANNER)
    fingerprint = scanner(server.ip, server.ssh_port, timeout or settings.SSH_CONNECT_TIMEOUT)
    with transaction.atomic():
        server = Server.objects.select_for_update().get(pk=server.pk)
        old = server.host_key_fingerprint
        server.host_key_fingerprint = fingerprint
        server.full_clean(exclude=["system", "credential"])
        server.save(update_fields=["host_key_fingerprint"])
        audit.record(
            actor,
            "cmdb.host_key_scan",
            target=server.server_id,
            payload={"old": old, "new": fingerprint, "changed": bool(old) and old != fingerprint},
        )
    if old and old != fingerprint:
        log.warning("host key of %s changed: %s -> %s", server.server_id, old, fingerprint)
    return old, fingerprint


# --- plain CMDB rows (institutions, systems, servers, health criteria) ---------------------


def save_with_audit(actor, obj: models.Model, changed_fields: list[str], created: bool) -> None:
    """Save an inventory row from the console and record who changed which fields."""
    label = obj._meta.model_name
    with transaction.atomic():
        obj.save()
        audit.record(
            actor,
            f"cmdb.{label}_{'create' if created else 'change'}",
            target=str(getattr(obj, "server_id", None) or getattr(obj, "code", None) or obj),
            payload={"changed": sorted(changed_fields)},
        )


def delete_with_audit(actor, obj: models.Model) -> None:
    label = obj._meta.model_name
    target = str(getattr(obj, "server_id", None) or getattr(obj, "code", None) or obj)
    with transaction.atomic():
        obj.delete()
        audit.record(actor, f"cmdb.{label}_delete", target=target)


# --- the command catalogue ------------------------------------------------------------------

CATALOGUE_FIELDS = [
    "system",
    "program",
    "description",
    "option_pattern",
    "operand_pattern",
    "argv_pattern",
    "path_roots",
    "max_args",
    "is_filter",
    "runs_programs",
    "run_as",
    "enabled",
]


def may_edit_catalogue(user, action: str = "change") -> bool:
    return bool(user and user.is_active and user.has_perm(f"cmdb.{action}_commandrule"))


def _rule_values(rule: CommandRule | None) -> dict[str, Any]:
    return {name: _plain(getattr(rule, name)) for name in CATALOGUE_FIELDS} if rule is not None else {}


def save_command_rule(actor, rule: CommandRule) -> dict[str, list[Any]]:
    """Create or change a catalogue rule (security officers only); the audit entry keeps
    every changed field old -> new, read back from the locked row rather than the form."""
    creating = rule.pk is None
    if not may_edit_catalogue(actor, "add" if creating else "change"):
        raise PermissionDenied("only a security officer may change the command catalogue")
    with transaction.atomic():
        before = None if creating else CommandRule.objects.select_for_update().filter(pk=rule.pk).first()
        rule.full_clean()
        rule.save()
        old, new = _rule_values(before), _rule_values(rule)
        changed = {k: [old.get(k), v] for k, v in new.items() if old.get(k) != v}
        audit.record(
            actor,
            "cmdb.command_rule_create" if creating else "cmdb.command_rule_change",
            target=str(rule),
            payload={"rule": rule.pk, "changed": changed},
        )
    return changed


def delete_command_rule(actor, rule: CommandRule) -> None:
    if not may_edit_catalogue(actor, "delete"):
        raise PermissionDenied("only a security officer may change the command catalogue")
    with transaction.atomic():
        values, label, pk = _rule_values(rule), str(rule), rule.pk
        rule.delete()
        audit.record(actor, "cmdb.command_rule_delete", target=label, payload={"rule": pk, "removed": values})
