"""CODE_FIX: a code change prepared by the AI work agent (execution/agent/, docs/agent.md).

Nothing runs on a server in this playbook. Its plan lists, for the servers the change will
later be deployed to, what runs on the GUARDiA host: the agent command in the round's git
worktree with its scope, the build and the tests, all taken from the CMDB (SystemSource), so
an approver sees them and a changed build command after approval changes the plan's hash
(the engine then refuses). The deploy itself is a separate APP_DEPLOY task filed when the PM
accepts the change, with its own plan and approvals.
"""

from __future__ import annotations

import shlex

from django.conf import settings

from ..errors import Refused
from ..parameters import Param
from .base import Playbook

RELATIVE_FILE = r"(?!/)(?!.*(?:^|/)\.\.(?:/|$))[A-Za-z0-9._/-]{1,255}"


class CodeFix(Playbook):
    NAME = "CODE_FIX"
    VERSION = "1.0.0"
    # The round changes no server: no server lease, no rollback, no safety gate.
    READ_ONLY = True
    ROLLING = False
    AGENT = True
    PARAMS = {
        "description": Param("str", required=True, help="the change, in words, for the agent"),
        "file": Param("str", default="", pattern=RELATIVE_FILE, help="file the change is in (relative)"),
        "find": Param("str", default="", help="text to replace (the reference agent)"),
        "replace": Param("str", default="", help="replacement text (the reference agent)"),
    }

    def validate(self) -> None:
        from ..errors import ParameterError

        if len(self.params["description"]) > 4000:
            raise ParameterError({"description": "4000자 이하로 쓰세요"})
        if bool(self.params["file"]) != bool(self.params["find"]):
            raise ParameterError({"find": "file과 find는 함께 지정하세요"})

    def forward(self, ctx) -> None:
        if not getattr(ctx, "planning", False):
            raise Refused("CODE_FIX는 서버에서 실행되지 않습니다 (AI 작업 에이전트가 처리)")
        source = getattr(ctx.server.system, "source", None) if ctx.server is not None else None
        if source is None:
            raise Refused(f"CMDB에 시스템 {ctx.server.system.code}의 소스 저장소가 없습니다")
        ctx.check(
            "agent",
            None,
            plan={
                "kind": "agent",
                "command": shlex.join(settings.AGENT_COMMAND),
                "repository": source.repository,
                "ref": source.ref,
                "scope": ", ".join(source.scope_entries),
                "timeout": settings.AGENT_TIMEOUT,
            },
        )
        ctx.check(
            "build",
            None,
            plan={
                "kind": "build",
                "command": source.build_command,
                "artifact": source.artifact_path,
                "timeout": source.build_timeout,
            },
        )
        if source.test_command:
            ctx.check(
                "test", None, plan={"kind": "test", "command": source.test_command, "timeout": source.test_timeout}
            )
        ctx.check("deploy", None, plan={"kind": "follow_up", "playbook": "APP_DEPLOY", "artifact": source.deploy_name})

    def verify(self, ctx) -> None:
        """No server was changed: nothing to gate."""
