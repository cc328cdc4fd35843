"""After the PM accepted a change: its built artifact becomes an ordinary APP_DEPLOY request.

The deploy task is filed in the requester's name (they asked for the change; four-eyes still
holds: they cannot approve it), for the same system and servers, with the artifact GUARDiA
built and hashed and the version the WAS must report afterwards. It goes through the
approval policy, shows its plan to every approver, and runs in the rolling engine like any
deploy. Refusals (deploy window, a server gone) are audited and told to the PM.
"""

from __future__ import annotations

import logging

from django.contrib.auth import get_user_model

from governance import services
from governance.errors import GovernanceError
from governance.models import OpsTask, Status, SubType
from governance.notify import Message, notify
from governance.results import ResultPackage
from governance.transitions import record_task

log = logging.getLogger(__name__)


def file_deploy(task_pk: int, pm_pk: int) -> str:
    task = OpsTask.objects.select_related("system__institution", "requester").filter(pk=task_pk).first()
    pm = get_user_model().objects.filter(pk=pm_pk).first()
    if task is None or task.sub_type != SubType.CODE_FIX or task.status != Status.COMPLETED:
        return ""
    change = ResultPackage.from_json(task.result_package).code_change
    artifact = dict(change.artifact) if change else {}
    if not artifact.get("sha256"):
        return _refused(task, pm, "검증된 회차에 빌드 산출물이 없습니다")
    parameters = {
        "artifact": {key: artifact[key] for key in ("sha256", "name", "size") if key in artifact},
        "artifact_name": artifact.get("name") or "app.war",
    }
    if artifact.get("version"):
        parameters["version"] = artifact["version"]
    try:
        deploy = services.submit_task(
            task.requester,
            system=task.system,
            sub_type=SubType.APP_DEPLOY,
            title=f"{task.title} 배포 ({task.task_id} 코드 변경)"[:200],
            targets=list(task.targets.all()),
            parameters=parameters,
            raw_request=f"{task.task_id}에서 PM이 승인한 코드 변경의 빌드 산출물 배포",
            channel=task.channel,
            sr_number=task.sr_number,
            parsed={"source_task": task.task_id, "round": change.round if change else 0},
        )
    except GovernanceError as exc:
        return _refused(task, pm, str(exc.detail))
    record_task(
        pm,
        "agent.deploy_filed",
        task,
        deploy_task=deploy.task_id,
        artifact_sha256=artifact["sha256"],
        version=artifact.get("version", ""),
    )
    if pm is not None:
        notify(pm, Message(f"코드 변경 {task.task_id}의 배포 요청 {deploy.task_id}이(가) 접수되었습니다", task=deploy))
    return deploy.task_id


def _refused(task: OpsTask, pm, reason: str) -> str:
    record_task(pm, "agent.deploy_refused", task, reason=reason)
    if pm is not None:
        notify(pm, Message(f"코드 변경 {task.task_id}의 배포를 접수하지 못했습니다: {reason}", kind="alert", task=task))
    log.warning("deploy of %s refused: %s", task.task_id, reason)
    return ""
