"""Every cell of the approval policy table: risk × tier × sensitive × deploy window × emergency."""

from __future__ import annotations

import itertools

import pytest

from governance import policy
from governance.models import Risk, SubType

EXPECTED_ROLES = {
    Risk.LOW: ("owner",),
    Risk.MEDIUM: ("owner",),
    Risk.HIGH: ("owner", "pm"),
    Risk.CRITICAL: ("owner", "pm", "security_officer"),
}
SAMPLE = {
    Risk.LOW: SubType.LOG_MINING,
    Risk.MEDIUM: SubType.SERVICE_RESTART,
    Risk.HIGH: SubType.APP_DEPLOY,
    Risk.CRITICAL: SubType.SSL_REPLACE,
}


@pytest.mark.parametrize(
    "risk,tier,sensitive,in_window,emergency",
    list(itertools.product(list(Risk), [1, 2, 3], [False, True], [True, False], [False, True])),
)
def test_policy_cell(risk, tier, sensitive, in_window, emergency):
    plan = policy.plan_for(
        sub_type=SAMPLE[risk], tier=tier, sensitive=sensitive, in_window=in_window, emergency=emergency
    )
    assert plan.risk == risk
    is_change = risk != Risk.LOW
    if is_change and not in_window and not emergency:
        assert plan.refused == "outside the system's deploy window"
        return
    assert plan.refused == ""
    if is_change and not in_window:
        # emergency outside the window: one extra (supervisor) step, never automatic
        assert plan.roles == EXPECTED_ROLES[risk] + ("supervisor",)
        assert not plan.auto_approve
        return
    auto = tier == 3 and risk in (Risk.LOW, Risk.MEDIUM) and not sensitive and not emergency
    assert plan.auto_approve is auto
    assert plan.roles == (() if auto else EXPECTED_ROLES[risk])


def test_every_subtype_has_a_risk_and_category():
    for sub_type in SubType.values:
        assert sub_type in policy.RISK_BY_SUBTYPE
        assert sub_type in policy.CATEGORY_BY_SUBTYPE


def test_unknown_subtype_is_an_error():
    with pytest.raises(ValueError, match="unknown sub_type"):
        policy.plan_for(sub_type="FORMAT_DISK", tier=3, sensitive=False, in_window=True, emergency=False)


def test_lifecycle_diagram_is_generated_from_the_code():
    from django.core.management import call_command

    call_command("lifecycle_diagram", "--check")
