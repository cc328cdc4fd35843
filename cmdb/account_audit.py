"""Audit entries for accounts: users, roles (groups), permissions, passwords and API tokens.

The console changes accounts only through cmdb.accounts, which writes these entries
explicitly with the acting user. Accounts are also changed where no service runs: the
Django shell, `manage.py changepassword` / `createsuperuser`, `seed_demo`, the admin
site's own password-change page. An account change the audit cannot see is exactly the
change an insider would make, so for these models (and only these) signal receivers
record what happened outside the services. Inside a service the receivers stand down
(`quiet()`), so each change is recorded once, with its real actor.

Entries name users and groups by their names (strings survive deletion); a password or
token value never enters an entry, only the fact and the time.
"""

from __future__ import annotations

import contextvars
import getpass
import os
import sys
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import Any

from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group, Permission
from django.db.models.signals import m2m_changed, post_delete, post_save, pre_save

import audit

# True while a service is changing accounts and writing its own entries.
_QUIET: contextvars.ContextVar[bool] = contextvars.ContextVar("account_audit_quiet", default=False)
# Who is acting when a change arrives through code that is not ours (the admin site's
# own password-change page); None means "outside the application" (shell, commands).
_ACTOR: contextvars.ContextVar[Any] = contextvars.ContextVar("account_audit_actor", default=None)

# User fields whose old and new values are recorded; other profile fields by name only
# (names and e-mail addresses are personal data the chain does not need to copy).
_IDENTITY_FIELDS = ("username", "is_staff")
_PROFILE_FIELDS = ("first_name", "last_name", "email")
WATCHED_FIELDS = ("password", "is_active", "is_superuser", *_IDENTITY_FIELDS, *_PROFILE_FIELDS)


@contextmanager
def quiet() -> Iterator[None]:
    """The caller records its own entries for the account changes made inside."""
    token = _QUIET.set(True)
    try:
        yield
    finally:
        _QUIET.reset(token)


@contextmanager
def acting_as(user) -> Iterator[None]:
    """Attribute account changes made inside (by code that is not ours) to user."""
    token = _ACTOR.set(user)
    try:
        yield
    finally:
        _ACTOR.reset(token)


def outside_source() -> dict[str, str]:
    """Where a change made outside the console came from: the process and the OS user."""
    program = os.path.basename(sys.argv[0]) if sys.argv and sys.argv[0] else "python"
    command = " ".join([program, *sys.argv[1:2]])
    try:
        os_user = getpass.getuser()
    except (KeyError, OSError):  # no passwd entry for the uid (containers)
        os_user = str(os.getuid())
    return {"source": command[:80], "os_user": os_user[:64]}


def perm_names(permissions: Iterable[Permission]) -> list[str]:
    return sorted(f"{p.content_type.app_label}.{p.codename}" for p in permissions)


# --- entry writers (shared by the services and the receivers) ----------------------------


def record(actor, action: str, target: str, source: dict[str, str] | None = None, **payload: Any) -> None:
    audit.record(actor, action, target=target, payload={**payload, **(source or {"source": "console"})})


def record_role_change(actor, username: str, roles: Iterable[str], granted: bool, source=None) -> None:
    for role in sorted(roles):
        record(actor, "auth.role_grant" if granted else "auth.role_revoke", username, source, role=role)


def record_group_permissions(actor, group_name: str, names: list[str], granted: bool, source=None) -> None:
    if names:
        action = "auth.group_permission_grant" if granted else "auth.group_permission_revoke"
        record(actor, action, group_name, source, permissions=names)


def record_user_permissions(actor, username: str, names: list[str], granted: bool, source=None) -> None:
    if names:
        action = "auth.user_permission_grant" if granted else "auth.user_permission_revoke"
        record(actor, action, username, source, permissions=names)


def record_user_saved(actor, user, before: dict[str, Any] | None, password_changed: bool, source=None) -> None:
    """The entries for one save of a user row: creation, or each kind of change."""
    name = user.get_username()
    if before is None:
        flags = {"active": user.is_active, "staff": user.is_staff, "superuser": user.is_superuser}
        record(actor, "auth.user_create", name, source, **flags)
        return
    if before["is_superuser"] != user.is_superuser:
        record(actor, "auth.superuser_grant" if user.is_superuser else "auth.superuser_revoke", name, source)
    if before["is_active"] != user.is_active:
        record(actor, "auth.user_activate" if user.is_active else "auth.user_deactivate", name, source)
    changed: dict[str, Any] = {
        field: [before[field], getattr(user, field)]
        for field in _IDENTITY_FIELDS
        if before[field] != getattr(user, field)
    }
    changed.update({field: "changed" for field in _PROFILE_FIELDS if before[field] != getattr(user, field)})
    if changed:
        record(actor, "auth.user_change", name, source, changed=changed)
    if password_changed:
        by_self = actor is not None and getattr(actor, "pk", None) == user.pk
        record(actor, "auth.password_set", name, source, by="self" if by_self else "other")


# --- receivers: changes made outside the services --------------------------------------------


def _outside() -> tuple[Any, dict[str, str]] | None:
    """(actor, source) for an entry a receiver should write, or None inside a service."""
    if _QUIET.get():
        return None
    actor = _ACTOR.get()
    return (actor, {"source": "admin password page"}) if actor is not None else (None, outside_source())


def _user_before_save(sender, instance, raw=False, update_fields=None, **kwargs) -> None:
    if _QUIET.get():
        return
    instance._account_audit_before = (
        sender.objects.filter(pk=instance.pk).values(*WATCHED_FIELDS).first() if instance.pk else None
    )


def _user_saved(sender, instance, created, raw=False, update_fields=None, **kwargs) -> None:
    where = _outside()
    before = instance.__dict__.pop("_account_audit_before", None)
    if where is None:
        return
    if update_fields is not None and set(update_fields) <= {"last_login"}:
        return  # a login (audited as auth.login), not an account change
    # set_password() leaves the raw value in _password until save() finishes, so a new
    # password is seen here; a hash assigned directly shows as a changed hash. Django's
    # own re-hash on login (update_fields=["password"], _password already cleared) is not
    # a password change and is skipped.
    rehash = update_fields is not None and set(update_fields) == {"password"} and instance._password is None
    password_changed = (
        not created
        and not rehash
        and (instance._password is not None or (before is not None and before["password"] != instance.password))
    )
    actor, source = where
    record_user_saved(actor, instance, None if created else before, password_changed, source)


def _user_deleted(sender, instance, **kwargs) -> None:
    where = _outside()
    if where is not None:
        record(where[0], "auth.user_delete", instance.get_username(), where[1])


# through model -> (holder column, item column): a user holds groups and permissions, a
# group holds permissions. Filled by connect().
_THROUGH: dict[Any, tuple[str, str]] = {}


def _links_changed(sender, instance, action, reverse, model, pk_set, **kwargs) -> None:
    """Roles of a user and permissions of a user or a group, changed from either side
    (user.groups.add(...), group.user_set.remove(...), group.permissions.set(...))."""
    holder_col, item_col = _THROUGH[sender]
    own, other = (item_col, holder_col) if reverse else (holder_col, item_col)
    stash = f"_account_audit_linked_{sender.__name__}"
    if action in ("pre_remove", "pre_clear"):
        # Removing a row that is not linked sends the signal too; remember the real ones.
        if not _QUIET.get():
            query = sender.objects.filter(**{own: instance.pk})
            if pk_set is not None:
                query = query.filter(**{f"{other}__in": pk_set})
            instance.__dict__[stash] = set(query.values_list(f"{other}_id", flat=True))
        return
    if action not in ("post_add", "post_remove", "post_clear"):
        return
    linked = instance.__dict__.pop(stash, set())
    where = _outside()
    if where is None:
        return
    granted = action == "post_add"
    pks = set(pk_set or ()) if granted else linked
    if not pks:
        return
    others = model.objects.filter(pk__in=pks)
    if model is Permission:
        others = others.select_related("content_type")
    actor, source = where
    if reverse:
        for holder in others:
            _record_link(actor, holder, [instance], granted, source)
    else:
        _record_link(actor, instance, list(others), granted, source)


def _record_link(actor, holder, items: list, granted: bool, source) -> None:
    if isinstance(holder, Group):
        record_group_permissions(actor, holder.name, perm_names(items), granted, source)
    elif items and isinstance(items[0], Group):
        record_role_change(actor, holder.get_username(), [g.name for g in items], granted, source)
    else:
        record_user_permissions(actor, holder.get_username(), perm_names(items), granted, source)


def _group_before_save(sender, instance, **kwargs) -> None:
    if not _QUIET.get():
        instance._account_audit_old_name = (
            Group.objects.filter(pk=instance.pk).values_list("name", flat=True).first() if instance.pk else None
        )


def _group_saved(sender, instance, created, **kwargs) -> None:
    where = _outside()
    old = instance.__dict__.pop("_account_audit_old_name", None)
    if where is None:
        return
    if created:
        record(where[0], "auth.group_create", instance.name, where[1])
    elif old is not None and old != instance.name:
        record(where[0], "auth.group_change", instance.name, where[1], changed={"name": [old, instance.name]})


def _group_deleted(sender, instance, **kwargs) -> None:
    where = _outside()
    if where is not None:
        record(where[0], "auth.group_delete", instance.name, where[1])


def token_created_text(token) -> str:
    return token.created.isoformat() if getattr(token, "created", None) else ""


def _token_saved(sender, instance, created, **kwargs) -> None:
    where = _outside()
    if where is not None and created:
        record(where[0], "auth.token_create", instance.user.get_username(), where[1],
               created=token_created_text(instance))  # fmt: skip


def _token_deleted(sender, instance, **kwargs) -> None:
    where = _outside()
    if where is not None:
        record(where[0], "auth.token_delete", instance.user.get_username(), where[1],
               created=token_created_text(instance))  # fmt: skip


def connect() -> None:
    """Connect the receivers (CmdbConfig.ready)."""
    from rest_framework.authtoken.models import Token, TokenProxy

    User = get_user_model()
    uid = "cmdb.account_audit."
    pre_save.connect(_user_before_save, sender=User, dispatch_uid=uid + "user_pre")
    post_save.connect(_user_saved, sender=User, dispatch_uid=uid + "user_post")
    post_delete.connect(_user_deleted, sender=User, dispatch_uid=uid + "user_delete")
    _THROUGH.update({
        User.groups.through: ("user", "group"),
        User.user_permissions.through: ("user", "permission"),
        Group.permissions.through: ("group", "permission"),
    })  # fmt: skip
    for through in _THROUGH:
        m2m_changed.connect(_links_changed, sender=through, dispatch_uid=uid + through.__name__)
    pre_save.connect(_group_before_save, sender=Group, dispatch_uid=uid + "group_pre")
    post_save.connect(_group_saved, sender=Group, dispatch_uid=uid + "group_post")
    post_delete.connect(_group_deleted, sender=Group, dispatch_uid=uid + "group_delete")
    for model in (Token, TokenProxy):
        post_save.connect(_token_saved, sender=model, dispatch_uid=uid + f"{model.__name__}_post")
        post_delete.connect(_token_deleted, sender=model, dispatch_uid=uid + f"{model.__name__}_delete")
