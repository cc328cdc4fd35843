"""Filing a request from the console, the REST API and (later) intake: resolve the system
and targets the caller named, store the attached files, then hand everything to
``services.submit_task``, which holds every rule (permission, four-eyes, policy, window,
parameter validation). Uploads are validated before they are kept and removed again when
the filing is refused (governance.attachments.received_uploads)."""

from __future__ import annotations

from typing import Unpack

from cmdb.models import System

from . import attachments, services
from .errors import Forbidden, Invalid
from .models import OpsTask


def file_request(
    requester,
    *,
    system: System | str,
    sub_type: str,
    targets=(),
    parameters=None,
    uploads: dict | None = None,
    **filing: Unpack[services.Filing],
) -> OpsTask:
    """``system`` is a System or its code; ``targets`` server ids; ``uploads`` maps
    artifact / cert_file / key_file / chain_file to file objects (or bytes). The rest (title,
    raw_request, channel, emergency, sr_number) goes to ``services.submit_task`` as it is."""
    if not requester.has_perm("governance.submit_task"):
        raise Forbidden("요청을 제출할 권한이 없습니다")
    if isinstance(system, str):
        # Looked up among the caller's systems: another institution's code is as unknown as a
        # code that does not exist, so the answer confirms nothing about it.
        found: System | None = (
            System.objects.for_user(requester).select_related("institution").filter(code=system).first()
        )
        if found is None:
            raise Invalid(f"알 수 없는 시스템입니다: {system!r}", field="system")
        system = found
    # Checked before any file is stored: a caller who may not file for the system leaves nothing behind.
    if not System.objects.for_user(requester).filter(pk=system.pk).exists():
        raise Forbidden(f"시스템 {system.code}에 요청을 제출할 권한이 없습니다")
    if parameters is not None and not isinstance(parameters, dict):
        raise Invalid("parameters는 JSON 객체여야 합니다", field="parameters")
    servers = services.targets_in(system, list(targets)) if targets else []
    # Every upload is validated before any is kept, and a refusal raised later by the
    # filing itself (a bad target, a refused parameter, the deploy window) removes them again.
    with attachments.received_uploads(uploads, sub_type=sub_type) as batch:
        parameters = batch.attach(parameters or {})
        return services.submit_task(
            requester, system=system, sub_type=sub_type, targets=servers, parameters=parameters, **filing
        )
