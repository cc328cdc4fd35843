"""Korean labels for what the audit record stores as machine names.

The chain keeps action names and result codes exactly as written (they are hashed), so
the pages translate them at display time. The actions are plain strings written by every
app; listing them here needs no import of those apps.
"""

from __future__ import annotations

from django.utils.translation import gettext_lazy as _

ACTION_LABELS = {
    "auth.login": _("로그인"),
    "auth.login_failed": _("로그인 실패"),
    "auth.session_replaced": _("다른 세션 종료 후 로그인"),
    "auth.session_ended_elsewhere": _("다른 곳의 로그인으로 세션 종료"),
    "auth.session_expired": _("세션 만료"),
    "auth.otp_enrolled": _("2차 인증 등록"),
    "auth.otp_verified": _("2차 인증"),
    "auth.otp_failed": _("2차 인증 실패"),
    "auth.otp_reset": _("2차 인증 초기화"),
    "task.submitted": _("요청 접수"),
    "task.refused": _("요청 거부"),
    "task.transition": _("상태 변경"),
    "task.resumed": _("작업 재개"),
    "task.priority": _("우선순위 변경"),
    "approval.assigned": _("승인자 지정"),
    "approval.escalated": _("승인 상향(에스컬레이션)"),
    "approval.decided": _("승인 결정"),
    "approval.repaged": _("승인 재요청"),
    "statistics.rollup_rebuilt": _("통계 집계 재계산"),
    "approval.expired": _("승인 기한 만료"),
    "validation.decided": _("PM 검증"),
    "agent.round_started": _("AI 에이전트 회차 시작"),
    "agent.round_finished": _("AI 에이전트 회차 완료 (PM 검증 대기)"),
    "agent.round_failed": _("AI 에이전트 회차 실패"),
    "agent.max_rounds": _("AI 에이전트 최대 회차 도달"),
    "agent.deploy_filed": _("코드 변경 배포 요청 접수"),
    "agent.deploy_refused": _("코드 변경 배포 요청 거부"),
    "owner.presence": _("담당 설정 변경"),
    "owner_check.run": _("담당자 지정 점검 실행"),
    "owner_check.findings": _("담당자 지정 점검 결과"),
    "killswitch.task": _("작업 정지 요청"),
    "killswitch.global_on": _("전체 정지"),
    "killswitch.global_off": _("전체 정지 해제"),
    "killswitch.break_acknowledged": _("체인 손상 확인 후 정지 해제"),
    "execution.step": _("원격 명령 실행"),
    "execution.blocked": _("실행 차단"),
    "execution.kill_switch": _("실행 중 정지"),
    "security.violation": _("보안 위반"),
    "sanitizer.blocked": _("위험 명령 차단"),
    "ssh.auth_failed": _("SSH 인증 실패"),
    "ssh.host_key_refused": _("SSH 호스트 키 불일치"),
    "inspection.run": _("정기 점검 실행"),
    "inspection.ticket": _("정기 점검 요청 생성"),
    "inspection.ticket_failed": _("정기 점검 요청 생성 실패"),
    "audit.verify": _("무결성 검증"),
    "audit.export": _("감사 보고서 내보내기"),
    "backup.created": _("백업 생성"),
    "backup.restored": _("백업 복원"),
    "audit.proof": _("포함 증명 발급"),
    "auth.user_create": _("계정 생성"),
    "auth.user_change": _("계정 변경"),
    "auth.user_delete": _("계정 삭제"),
    "auth.user_activate": _("계정 활성화"),
    "auth.user_deactivate": _("계정 비활성화"),
    "auth.password_set": _("비밀번호 설정"),
    "auth.role_grant": _("역할 부여"),
    "auth.role_revoke": _("역할 회수"),
    "auth.superuser_grant": _("최고 관리자 권한 부여"),
    "auth.superuser_revoke": _("최고 관리자 권한 회수"),
    "auth.token_create": _("API 토큰 발급"),
    "auth.token_delete": _("API 토큰 폐기"),
    "auth.group_create": _("역할 그룹 생성"),
    "auth.group_change": _("역할 그룹 변경"),
    "auth.group_delete": _("역할 그룹 삭제"),
    "auth.group_permission_grant": _("역할 권한 부여"),
    "auth.group_permission_revoke": _("역할 권한 회수"),
    "auth.user_permission_grant": _("사용자 권한 부여"),
    "auth.user_permission_revoke": _("사용자 권한 회수"),
    "attachments.swept": _("첨부 파일 정리"),
    "intake.photo": _("오류 화면 사진 접수"),
    "intake.filed": _("현장 요청 접수"),
    "intake.clarification": _("접수 확인 질문"),
    "intake.forbidden": _("범위 밖 시스템 요청 거부"),
    "intake.refused": _("파괴적 요청 거부"),
    "messenger.identity": _("메신저 계정 변경"),
    "messenger.webhook": _("메신저 웹훅 변경"),
    "messenger.command": _("메신저 명령 수신"),
    "messenger.refused": _("메신저 명령 거부"),
    "messenger.step_up_link": _("메신저 재인증 링크 발급"),
    "messenger.step_up_failed": _("메신저 재인증 실패"),
    "messenger.webhook_refused": _("메신저 웹훅 요청 거부"),
    "messenger.delivered": _("메신저 알림 전달"),
    "messenger.failed": _("메신저 알림 전달 실패"),
    "execution.plan_mismatch": _("승인된 계획과 불일치로 실행 거부"),
    "execution.group": _("배치 시작"),
    "execution.recovered": _("실행 복구"),
    "execution.waiting": _("서버 대기"),
    "execution.scheduled": _("예약 시작 대기"),
    "execution.worker_lost": _("워커 유실"),
    "cmdb.owner_create": _("담당자 표 추가"),
    "cmdb.owner_change": _("담당자 표 변경"),
    "cmdb.credential_create": _("자격 증명 추가"),
    "cmdb.credential_change": _("자격 증명 변경"),
    "cmdb.credential_delete": _("자격 증명 삭제"),
    "cmdb.vault_rotate": _("암호화 키 교체"),
    "cmdb.server_import": _("서버 CSV 가져오기"),
    "cmdb.host_key_scan": _("호스트 키 고정"),
    "cmdb.testbed_registered": _("테스트베드 등록"),
    "cmdb.env_scan_accepted": _("환경 스캔을 스키마로 반영"),
    "cmdb.env_schema_import": _("환경 스키마 CSV 가져오기"),
    "cmdb.security_policy_import": _("보안 정책 CSV 가져오기"),
    "execution.env_scan": _("환경 스캔"),
    "cmdb.seed_demo": _("데모 데이터 생성"),
    "gateway.silent": _("게이트웨이 응답 없음"),
    "gateway.back": _("게이트웨이 응답 재개"),
}

# "cmdb.<model>_create/_change/_delete" for the rest of the inventory.
_SUFFIX_LABELS = {"_create": _("추가"), "_change": _("변경"), "_delete": _("삭제")}
_CMDB_MODEL_LABELS = {
    "institution": _("기관"),
    "system": _("시스템"),
    "server": _("서버"),
    "healthcriteria": _("헬스 체크 기준"),
    "systemowner": _("담당자 표"),
    "credential": _("자격 증명"),
    "command_rule": _("명령 규칙"),
    "gateway": _("게이트웨이"),
    "systemsource": _("소스 저장소"),
    "envschema": _("환경 스키마"),
    "securitypolicy": _("보안 정책"),
}

RESULT_LABELS = {
    "ok": _("정상"),
    "found": _("조치 필요"),
    "csv": "CSV",
    "jsonl": "JSON Lines",
    "pdf": "PDF",
}

BREAK_LABELS = {
    "modified": _("변조"),
    "deleted": _("삭제"),
    "inserted": _("삽입"),
    "reordered": _("순서 변경"),
    "truncated": _("끝부분 삭제"),
    "rewritten": _("전체 재작성"),
    "checkpoint_forged": _("체크포인트 위조"),
    "subchain_diverged": _("기관 하위 체인 불일치"),
}


# Actors that are not people: the product itself, the approval policy, the scheduled inspections.
MACHINE_ACTORS = {"system": _("시스템"), "policy": _("정책(자동)"), "inspection": _("정기 점검"), "": _("시스템")}


def actor_label(actor: str) -> str:
    return str(MACHINE_ACTORS[actor]) if actor in MACHINE_ACTORS else actor


def action_label(action: str) -> str:
    """A Korean label for an action name; the raw name for one not listed here."""
    if action in ACTION_LABELS:
        return str(ACTION_LABELS[action])
    if action.startswith("cmdb."):
        for suffix, verb in _SUFFIX_LABELS.items():
            if action.endswith(suffix):
                model = action[5 : -len(suffix)]
                return f"CMDB {_CMDB_MODEL_LABELS.get(model, model)} {verb}"
    return action


def result_label(code: str) -> str:
    if code in RESULT_LABELS:
        return str(RESULT_LABELS[code])
    if code.startswith("broken:"):
        kind = code.split(":", 1)[1]
        return f"{_('손상')}: {BREAK_LABELS[kind] if kind in BREAK_LABELS else kind}"
    return code


def break_label(kind: str) -> str:
    return str(BREAK_LABELS.get(kind, kind))
