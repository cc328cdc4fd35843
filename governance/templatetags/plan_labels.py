"""Korean labels for the machine names inside an execution plan (step names, check kinds).

The plan itself keeps the playbooks' names (they are part of what is hashed); the pages show
a Korean label beside the name. An unknown name is shown as it is."""

from __future__ import annotations

from django import template
from django.utils.translation import gettext_lazy as _

from governance import labels

register = template.Library()

STEP_LABELS = {
    "pre-check": _("사전 점검"),
    "pre-disk": _("디스크 여유 공간 점검"),
    "pre-version": _("현재 버전 확인"),
    "upload": _("파일 업로드"),
    "upload-verify": _("업로드 파일 SHA-256 확인 후 이동"),
    "verify": _("검증"),
    "backup": _("백업"),
    "shutdown": _("서비스 중지"),
    "startup": _("서비스 시작"),
    "restart": _("서비스 재시작"),
    "swap": _("새 버전으로 교체"),
    "unpack": _("압축 해제"),
    "port": _("포트 응답 확인"),
    "http": _("HTTP 응답 확인"),
    "health": _("헬스 체크"),
    "post-check": _("사후 점검"),
    "post-port": _("사후 포트 확인"),
    "post-http": _("사후 HTTP 확인"),
    "drain": _("트래픽 차단(드레인)"),
    "undrain": _("트래픽 복귀"),
    "log-tail": _("로그 끝부분 보관"),
    "rb-restore": _("백업에서 복원"),
    "rb-swap": _("이전 버전으로 되돌림"),
    "rb-clean-staging": _("임시 파일 정리"),
    "chmod-key": _("키 파일 권한 설정"),
    "timeline": _("오류 타임라인"),
    "grep-log": _("로그 검색"),
    "count-errors": _("오류 건수 집계"),
    "free": _("메모리 사용량"),
    "top-rss": _("메모리 상위 프로세스"),
    "df": _("디스크 사용량"),
    "list": _("대상 목록"),
    "delete": _("삭제"),
    "prune": _("오래된 파일 정리"),
    "rotate": _("로그 로테이트"),
    "guard-file": _("대상 파일 확인"),
    "gate-exists": _("존재 확인"),
    "gate-crontab": _("크론탭 확인"),
    "command": _("명령 실행"),
    "run": _("실행"),
    "agent": _("AI 에이전트 작업 (작업 트리)"),
    "build": _("빌드"),
    "test": _("테스트"),
    "deploy": _("승인 후 배포 요청 (APP_DEPLOY)"),
}

CHECK_LABELS = {
    "disk": _("디스크"),
    "http": "HTTP",
    "log": _("로그 오류 패턴"),
    "port": _("포트"),
    "process": _("프로세스"),
    "report": _("결과 보고"),
    "tls": _("TLS 인증서"),
    "worker": _("작업 서버 점검"),
    "agent": _("GUARDiA 서버에서 실행"),
    "build": _("GUARDiA 서버에서 실행"),
    "test": _("GUARDiA 서버에서 실행"),
    "follow_up": _("별도 작업으로 접수"),
    "env-variant": _("환경 변형 (종료·기동 명령)"),
}


@register.filter
def step_label(name) -> str:
    return str(STEP_LABELS.get(str(name or ""), ""))


@register.filter
def check_label(kind) -> str:
    return str(CHECK_LABELS.get(str(kind or ""), ""))


TIER_LABELS = {"canary": _("카나리"), "batch": _("배치"), "all": _("전체")}


@register.filter
def group_label(group) -> str:
    """A plan group in Korean ("그룹 1, 배치 0", "카나리", "전체 서버"), as the run's timeline
    names it; the plan keeps its stored label (hashed)."""
    if not isinstance(group, dict):
        return str(group or "")
    return labels.group_label(
        group.get("tier"), group.get("rolling_group"), group.get("index"), str(group.get("label") or "")
    )


@register.filter
def tier_label(tier) -> str:
    return str(TIER_LABELS.get(str(tier or ""), tier or ""))
