"""The owner-mapping check's console page: supervisors, PMs and admins see the report for
the systems they may see and nothing of another institution's; other roles get 403."""

from __future__ import annotations

from django.urls import reverse

from audit.models import AuditEntry
from tests.governance.test_owner_check import second  # noqa: F401 - fixture


def test_console_page_scoped_to_the_readers_systems(world, second, client):  # noqa: F811
    ownership2, _ = second
    world.deputy.is_active = False
    world.deputy.save(update_fields=["is_active"])
    url = reverse("console:owner_check")

    client.force_login(world.supervisor)
    page = client.get(url).content.decode()
    assert "BUDGET" in page and "비활성 계정" in page
    assert "CIVIL" not in page and "owner2" not in page  # another institution's system: nothing shown

    client.force_login(ownership2.supervisor)
    page = client.get(url).content.decode()
    assert "CIVIL" in page and "승인 권한 없음" in page and "BUDGET" not in page and "deputy<" not in page

    client.force_login(world.admin)
    page = client.get(url).content.decode()
    assert "BUDGET" in page and "CIVIL" in page

    for attacker in (world.outsider, world.owner, world.requester, world.auditor):
        client.force_login(attacker)
        response = client.get(url)
        assert response.status_code == 403 and b"BUDGET" not in response.content
    assert not AuditEntry.objects.filter(action__startswith="owner_check").exists()  # reading records nothing
