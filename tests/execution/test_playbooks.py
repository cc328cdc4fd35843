"""Playbook parameters, rollout planning and artifacts: no server needed."""

from __future__ import annotations

import hashlib
import io

import pytest

from execution import playbooks
from execution.errors import ParameterError, Refused
from execution.playbooks.ops import mine
from execution.rolling import RolloutStrategy, plan_groups
from execution.services import ArtifactStore, store_artifact, validate_parameters

SHA = "a" * 64


def test_every_subtype_has_a_versioned_playbook():
    from governance.models import SubType

    for sub_type in SubType.values:
        if sub_type == "CODE_FIX":
            continue  # the AI work agent's, not a remote playbook
        cls = playbooks.get(sub_type)
        assert cls.NAME == sub_type and cls.VERSION.count(".") == 2


def test_bad_parameters_name_every_field():
    with pytest.raises(ParameterError) as info:
        playbooks.build("APP_DEPLOY", {"artifact_sha256": "xyz", "script_timeout": "soon", "surprise": 1})
    assert set(info.value.errors) == {"artifact_sha256", "script_timeout", "surprise"}
    with pytest.raises(ParameterError) as info:
        playbooks.build("LOG_CLEANUP", {"directory": "/var/log/../../etc"})
    assert "directory" in info.value.errors
    with pytest.raises(ParameterError):
        playbooks.build("LOG_CLEANUP", {"directory": "/"})
    with pytest.raises(ParameterError):
        playbooks.build("NO_SUCH", {})


def test_cron_entries_are_validated_and_sanitized():
    good = playbooks.build("CRON_MANAGE", {"entries": [{"schedule": "*/5 * * * *", "command": "/opt/app/bin/job"}]})
    assert good.params["entries"][0]["schedule"] == "*/5 * * * *"
    with pytest.raises(ParameterError):
        playbooks.build("CRON_MANAGE", {"entries": [{"schedule": "every day", "command": "x"}]})


def test_rollout_strategy_parsing_and_errors():
    strategy = RolloutStrategy.from_parameters({"batch_percent": 0.1, "max_parallel": 8, "rollback_all": True})
    assert strategy.batch_percent == 0.1 and strategy.max_parallel == 8 and strategy.rollback_all
    assert RolloutStrategy.from_parameters({}, tier=1).batch_size == 10  # mission-critical: slow
    with pytest.raises(ParameterError) as info:
        RolloutStrategy.from_parameters({"max_parallel": 0, "canary_share": 2, "batch_size": "x"})
    assert {"rollout.max_parallel", "rollout.canary_share", "rollout.batch_size"} <= set(info.value.errors)


class S:
    def __init__(self, n: int, group: int, canary: bool = False):
        self.pk = n
        self.server_id = f"srv-{n:04d}"
        self.rolling_group = group
        self.canary = canary


def test_plan_two_rolling_groups():
    servers = [S(i, 1 if i <= 5 else 2) for i in range(1, 11)]
    groups = plan_groups(servers, RolloutStrategy())
    assert [[s.server_id for s in g.servers] for g in groups] == [
        [f"srv-{i:04d}" for i in range(1, 6)],
        [f"srv-{i:04d}" for i in range(6, 11)],
    ]


def test_plan_canary_then_batches():
    servers = [S(i, 1 if i <= 500 else 2) for i in range(1, 1001)]
    groups = plan_groups(servers, RolloutStrategy(batch_percent=0.1))
    assert groups[0].tier == "canary" and len(groups[0].servers) == 10  # 1 %
    assert [len(g.servers) for g in groups[1:]] == [100, 100, 100, 100, 90, 100, 100, 100, 100, 100]
    assert all(len({s.rolling_group for s in g.servers}) == 1 for g in groups[1:])
    flagged = [S(i, 1, canary=(i == 7)) for i in range(1, 11)]
    groups = plan_groups(flagged, RolloutStrategy(batch_size=50))
    assert [s.server_id for s in groups[0].servers] == ["srv-0007"] and len(groups[1].servers) == 9
    assert len(plan_groups(flagged, RolloutStrategy(canary_share=0))) == 1


def test_artifact_store_roundtrip_and_corruption(settings, tmp_path):
    settings.MEDIA_ROOT = str(tmp_path)
    info = store_artifact(io.BytesIO(b"version=2.0.0\n"), "app.war")
    assert info["sha256"] == hashlib.sha256(b"version=2.0.0\n").hexdigest() and info["size"] == 14
    store = ArtifactStore()
    assert store.read(info["sha256"]) == b"version=2.0.0\n"
    with pytest.raises(Refused, match="아티팩트 저장소에 없습니다"):
        store.verify(SHA)
    path = store.path(info["sha256"])
    path.chmod(0o640)
    path.write_bytes(b"tampered")
    with pytest.raises(Refused, match="손상되었습니다"):
        store.verify(info["sha256"])


def test_validate_parameters_takes_the_artifact_reference():
    params = validate_parameters("APP_DEPLOY", {"artifact": {"sha256": SHA, "name": "app.war"}, "version": "2.0"})
    assert params["artifact_sha256"] == SHA
    with pytest.raises(ValueError):
        validate_parameters("APP_DEPLOY", {"version": "2.0"})


def test_log_mining_timeline_and_top_messages():
    text = "\n".join(
        [
            "2026-05-23 14:02:11,000 ERROR: pool 12 exhausted",
            "2026-05-23 14:40:00,000 ERROR: pool 13 exhausted",
            "23-May-2026 15:01:02.123 SEVERE java.lang.OutOfMemoryError: Java heap space",
        ]
    )
    result = mine(text)
    assert result["timeline"] == {"2026-05-23 14:00": 2, "23-May-2026 15:00": 1}
    assert result["top_messages"][0] == ("ERROR: pool # exhausted", 2)
