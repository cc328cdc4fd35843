"""The test factories refuse what the product would never hold, so a typo fails loudly."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import Group

from tests.factories import UserFactory


def test_user_factory_refuses_a_role_that_does_not_exist(db):
    groups_before = set(Group.objects.values_list("name", flat=True))
    with pytest.raises(ValueError, match="unknown role 'requester'"):
        UserFactory(username="req1", role="requester")
    assert set(Group.objects.values_list("name", flat=True)) == groups_before  # no group was made up


def test_user_factory_puts_the_user_in_the_role_group(db):
    user = UserFactory(username="lead1", role="team_lead")
    assert list(user.groups.values_list("name", flat=True)) == ["team_lead"]
