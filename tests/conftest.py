"""Shared fixtures (keep small); factories live in tests/factories.py."""

from __future__ import annotations

import pytest


@pytest.fixture(autouse=True)
def _fast_hasher(settings):
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture
def roles(db):
    """The role groups with their permissions (created by cmdb.roles on migrate)."""
    from django.contrib.auth.models import Group

    return {g.name: g for g in Group.objects.all()}
