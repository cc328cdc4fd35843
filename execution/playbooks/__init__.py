"""The playbook registry: OpsTask.sub_type (or an inspection kind) → playbook class."""

from __future__ import annotations

from ..errors import ParameterError, Refused, StepFailed
from ..parameters import Param, q
from .base import Playbook
from .code import CodeFix
from .commands import CronManage, RawCommand
from .deploy import AppDeploy, StaticSync
from .ops import (
    DataCleanup,
    DiskCheck,
    ErrorCount,
    LogCleanup,
    LogMining,
    Logrotate,
    MemoryCheck,
)
from .service import ServiceRestart, SslReplace

PLAYBOOKS: dict[str, type[Playbook]] = {
    cls.NAME: cls
    for cls in (
        AppDeploy,
        StaticSync,
        ServiceRestart,
        SslReplace,
        LogMining,
        LogCleanup,
        Logrotate,
        MemoryCheck,
        DataCleanup,
        CronManage,
        RawCommand,
        DiskCheck,
        ErrorCount,
        CodeFix,
    )
}


def get(name: str) -> type[Playbook]:
    try:
        return PLAYBOOKS[name]
    except KeyError:
        raise ParameterError({"playbook": f"{name!r} 플레이북이 없습니다"}) from None


def build(name: str, parameters: dict | None) -> Playbook:
    """Validate parameters for a playbook; raises ParameterError naming each bad field."""
    return get(name)(raw=dict(parameters or {}))


__all__ = ["PLAYBOOKS", "Param", "ParameterError", "Playbook", "Refused", "StepFailed", "build", "get", "q"]
