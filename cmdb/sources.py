"""Where a system's code lives, for the AI work agent (docs/agent.md): the source repository,
the commands that build and test it, the artifact the build leaves, and the paths the agent
may change.

The commands are the CMDB administrator's, never a requester's: a request only describes the
change. They run in the round's own git worktree, with a clean environment, a timeout and a
cap on their output (execution/agent/). Imported by cmdb/models.py so Django registers it.
"""

from __future__ import annotations

import posixpath
import re

from django.core.exceptions import ValidationError
from django.db import models
from django.utils.translation import gettext_lazy as _

# A relative path inside the repository: no leading "/", no "..", no control characters.
_RELATIVE = re.compile(r"^(?!/)(?!.*(?:^|/)\.\.(?:/|$))[^\x00-\x1f\\]{1,255}$")
_FILE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
_GIT_REF = re.compile(r"^(?!-)(?!.*\.\.)[A-Za-z0-9._/-]{1,100}$")


def validate_relative(value: str) -> None:
    if not _RELATIVE.match(value or "") or posixpath.normpath(value).startswith(".."):
        raise ValidationError(_("저장소 안의 상대 경로여야 합니다 ('..', '/'로 시작, 제어 문자 불가)"))


def validate_scope(value: str) -> None:
    entries = split_scope(value)
    if not entries:
        raise ValidationError(_("수정 가능한 경로를 한 줄에 하나씩 하나 이상 입력하세요"))
    for entry in entries:
        if entry.startswith(".guardia") or entry.startswith(".git"):
            raise ValidationError(_("'.git'과 '.guardia'는 범위에 넣을 수 없습니다: %(entry)s") % {"entry": entry})
        validate_relative(entry)


def split_scope(value: str) -> list[str]:
    return [line.strip() for line in (value or "").splitlines() if line.strip() and not line.strip().startswith("#")]


class SystemSource(models.Model):
    """One system's source repository and how to build, test and deploy what it produces."""

    system = models.OneToOneField(
        "cmdb.System", verbose_name=_("시스템"), on_delete=models.CASCADE, related_name="source"
    )
    repository = models.CharField(
        _("소스 저장소 경로"),
        max_length=255,
        help_text=_("GUARDiA 서버에 있는 git 저장소의 절대 경로"),
    )
    ref = models.CharField(_("기준 브랜치"), max_length=100, default="HEAD")
    build_command = models.CharField(
        _("빌드 명령"), max_length=500, help_text=_("작업 트리에서 실행되어 배포 산출물을 만드는 명령")
    )
    test_command = models.CharField(_("테스트 명령"), max_length=500, blank=True)
    artifact_path = models.CharField(
        _("산출물 경로"), max_length=255, default="dist/app.war", validators=[validate_relative]
    )
    deploy_name = models.CharField(
        _("서버의 배포 파일명"), max_length=128, default="app.war", help_text=_("APP_DEPLOY의 artifact_name")
    )
    scope = models.TextField(
        _("수정 가능 경로"),
        help_text=_("에이전트가 바꿀 수 있는 경로, 한 줄에 하나 (디렉터리는 '/'로 끝남, * ? 패턴 가능)"),
        validators=[validate_scope],
    )
    build_timeout = models.PositiveIntegerField(_("빌드 제한 시간(초)"), default=300)
    test_timeout = models.PositiveIntegerField(_("테스트 제한 시간(초)"), default=300)

    class Meta:
        db_table = "TB_SYSTEM_SOURCE"
        verbose_name = verbose_name_plural = _("소스 저장소 (TB_SYSTEM_SOURCE)")

    def __str__(self) -> str:
        return f"source: {self.system.code}"

    @property
    def scope_entries(self) -> list[str]:
        return split_scope(self.scope)

    def clean(self) -> None:
        errors: dict[str, str] = {}
        repository = self.repository or ""
        if not repository.startswith("/") or "\x00" in repository or "\n" in repository or "/../" in repository + "/":
            errors["repository"] = str(_("'..' 없는 절대 경로여야 합니다"))
        if not _GIT_REF.match(self.ref or ""):
            errors["ref"] = str(_("브랜치나 태그 이름이어야 합니다"))
        if not _FILE_NAME.match(self.deploy_name or ""):
            errors["deploy_name"] = str(_("파일 이름만 (영문자, 숫자, '.', '_', '-')"))
        for name in ("build_command", "test_command"):
            if "\x00" in getattr(self, name) or "\n" in getattr(self, name):
                errors[name] = str(_("한 줄 명령이어야 합니다"))
        for name in ("build_timeout", "test_timeout"):
            if not 1 <= (getattr(self, name) or 0) <= 3600:
                errors[name] = str(_("1~3600초"))
        if errors:
            raise ValidationError(errors)
