"""Allow-listed commands: what RAW_COMMAND and CRON_MANAGE may run.

A requested command is parsed here into argv lists without any shell. Only words, quotes,
backslash escapes and ``|`` are understood; everything else a shell would interpret
(redirections, here-documents and here-strings, ``;``, ``&``, ``&&``, ``||``, newlines,
subshells, command and parameter substitution, variables, comments, ``~``) is refused
rather than passed on. Each argv is then matched against the system's command catalogue
(cmdb.CommandRule): the program by its bare name or its exact absolute path, every
argument by the rule's patterns, every path under the server's CMDB roots. A pipe is
allowed only into programs the catalogue marks as filters.

The remote command line is rebuilt from the argv with every element shell-quoted, so the
only thing the remote shell interprets is the ``|`` between catalogue programs. The
rebuilt line then still passes the deny-list sanitizer as a second layer.
"""

from __future__ import annotations

import posixpath
import re
import shlex
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

from cmdb.models import PROGRAMS_THAT_RUN_PROGRAMS, CommandRule, program_basename

from . import sanitizer
from .errors import CommandRefused, SecurityViolation

MAX_LENGTH = 2000
MAX_STAGES = 5
GLOB_CHARS = set("*?[]")
ROOT_LABEL = {
    "app": "app_path",
    "deploy": "deploy_path",
    "backup": "backup_path",
    "scripts": "script_path",
    "log": "log_path 디렉터리",
}

Pipeline = list[list[str]]
# A server's CMDB roots by kind ("app", "log", ...), normalised: execution.parameters.server_roots.
RootsOf = Callable[[object], dict[str, str]]


# --- parsing ---------------------------------------------------------------------------------

_REFUSED_OPERATORS = {
    ";": "';'로 여러 명령을 이을 수 없습니다",
    "&": "'&', '&&'(백그라운드·연속 실행)는 쓸 수 없습니다",
    "(": "괄호(서브셸·그룹)는 쓸 수 없습니다",
    ")": "괄호(서브셸·그룹)는 쓸 수 없습니다",
}


def _refuse_redirection(text: str, i: int) -> None:
    rest = text[i : i + 3]
    if rest.startswith("<<<"):
        raise CommandRefused("here-string('<<<')은 쓸 수 없습니다")
    if rest.startswith("<<"):
        raise CommandRefused("here-document('<<')는 쓸 수 없습니다")
    if rest.startswith("<("):
        raise CommandRefused("프로세스 치환('<(…)')은 쓸 수 없습니다")
    raise CommandRefused("리디렉션('<', '>', '>>', '>|')은 쓸 수 없습니다: 파일을 쓰거나 읽게 바꿀 수 있습니다")


def parse(text: str) -> Pipeline:
    """Split ``text`` into a pipeline of argv lists, or raise CommandRefused."""
    if not isinstance(text, str) or not text.strip():
        raise CommandRefused("명령이 비어 있습니다")
    if len(text) > MAX_LENGTH:
        raise CommandRefused(f"명령은 {MAX_LENGTH}자 이내여야 합니다")
    if "\n" in text or "\r" in text:
        raise CommandRefused("줄바꿈으로 여러 명령을 이을 수 없습니다")
    if re.search(r"[\x00-\x08\x0b-\x1f\x7f]", text):
        raise CommandRefused("제어 문자는 쓸 수 없습니다")
    if "`" in text or "$(" in text:
        raise CommandRefused("명령 치환('$(…)', '`…`')은 쓸 수 없습니다")
    if "${" in text:
        raise CommandRefused("변수 치환('${…}')은 쓸 수 없습니다")
    stages: Pipeline = [[]]
    word: list[str] | None = None
    i, n = 0, len(text)

    def end_word() -> None:
        nonlocal word
        if word is not None:
            stages[-1].append("".join(word))
            word = None

    while i < n:
        ch = text[i]
        if ch in " \t":
            end_word()
        elif ch == "'":
            close = text.find("'", i + 1)
            if close < 0:
                raise CommandRefused("닫히지 않은 작은따옴표가 있습니다")
            word = (word or []) + [text[i + 1 : close]]
            i = close
        elif ch == '"':
            word = word or []
            i += 1
            while i < n and text[i] != '"':
                c = text[i]
                if c == "\\" and i + 1 < n and text[i + 1] in '$`"\\':
                    word.append(text[i + 1])
                    i += 2
                    continue
                if c == "$" and i + 1 < n and re.match(r"[A-Za-z0-9_@*#?!$-]", text[i + 1]):
                    raise CommandRefused("변수('$이름')는 쓸 수 없습니다")
                word.append(c)
                i += 1
            if i >= n:
                raise CommandRefused("닫히지 않은 큰따옴표가 있습니다")
        elif ch == "\\":
            if i + 1 >= n:
                raise CommandRefused("명령이 '\\'로 끝납니다")
            word = (word or []) + [text[i + 1]]
            i += 1
        elif ch == "|":
            if text[i + 1 : i + 2] == "|":
                raise CommandRefused("'||'는 쓸 수 없습니다")
            if text[i + 1 : i + 2] == "&":
                raise CommandRefused("'|&'는 쓸 수 없습니다")
            end_word()
            if not stages[-1]:
                raise CommandRefused("'|' 앞에 명령이 없습니다")
            stages.append([])
        elif ch in "<>":
            _refuse_redirection(text, i)
        elif ch in _REFUSED_OPERATORS:
            raise CommandRefused(_REFUSED_OPERATORS[ch])
        elif ch == "$" and i + 1 < n and re.match(r"[A-Za-z0-9_@*#?!$'\"-]", text[i + 1]):
            raise CommandRefused("변수('$이름', \"$'…'\")는 쓸 수 없습니다")
        elif ch == "#" and word is None:
            raise CommandRefused("'#'(주석)으로 시작하는 단어는 쓸 수 없습니다")
        elif ch == "~" and word is None:
            raise CommandRefused("'~'(홈 디렉터리)는 쓸 수 없습니다: 절대 경로를 쓰십시오")
        else:
            word = (word or []) + [ch]
        i += 1
    end_word()
    if not stages[-1]:
        raise CommandRefused("'|' 뒤에 명령이 없습니다")
    if len(stages) > MAX_STAGES:
        raise CommandRefused(f"파이프는 {MAX_STAGES - 1}개까지 쓸 수 있습니다")
    return stages


def command_line(pipeline: Pipeline) -> str:
    """The remote command line: every element quoted, only ``|`` left for the shell."""
    return " | ".join(" ".join(shlex.quote(arg) for arg in argv) for argv in pipeline)


# --- the catalogue ------------------------------------------------------------------------


@dataclass(frozen=True)
class Rule:
    """A catalogue row as plain data, so checks run without the database (engine threads)."""

    pk: int
    system_id: int | None
    program: str
    option_pattern: str = ""
    operand_pattern: str = ""
    argv_pattern: str = ""
    roots: tuple[str, ...] = ()
    max_args: int = 12
    is_filter: bool = False
    runs_programs: bool = False
    run_as: str = ""

    @classmethod
    def of(cls, row: CommandRule) -> Rule:
        return cls(
            pk=row.pk,
            system_id=row.system_id,
            program=row.program,
            option_pattern=row.option_pattern,
            operand_pattern=row.operand_pattern,
            argv_pattern=row.argv_pattern,
            roots=tuple(row.roots),
            max_args=row.max_args,
            is_filter=row.is_filter,
            runs_programs=row.runs_programs,
            run_as=row.run_as,
        )


def rules_for(system) -> list[Rule]:
    return [Rule.of(r) for r in CommandRule.objects.for_system(system).order_by("pk")]


def all_rules() -> dict[int | None, list[Rule]]:
    """Every enabled rule by system id (None: the default set); read once before a run."""
    catalogue: dict[int | None, list[Rule]] = {}
    for row in CommandRule.objects.filter(enabled=True).order_by("pk"):
        catalogue.setdefault(row.system_id, []).append(Rule.of(row))
    return catalogue


def _full(pattern: str, value: str) -> bool:
    try:
        return bool(pattern) and re.fullmatch(pattern, value) is not None
    except re.error:
        return False


def _check_path(arg: str, rule: Rule, servers: Sequence, roots_of: RootsOf) -> None:
    name = rule.program
    if not rule.roots:
        raise CommandRefused(f"{name}: 경로 인자를 쓸 수 없습니다 ({arg})")
    if not arg.startswith("/"):
        raise CommandRefused(f"{name}: 상대 경로는 쓸 수 없습니다 ({arg}): 절대 경로를 쓰십시오")
    if "//" in arg or any(part in {".", ".."} for part in arg.split("/")):
        raise CommandRefused(f"{name}: 정규화되지 않은 경로입니다 ({arg}): '//', '.', '..' 없이 쓰십시오")
    if GLOB_CHARS & set(arg):
        raise CommandRefused(f"{name}: 경로에 와일드카드를 쓸 수 없습니다 ({arg})")
    if not servers:
        raise CommandRefused(f"{name}: 대상 서버가 없어 경로({arg})를 확인할 수 없습니다")
    path = posixpath.normpath(arg)
    for server in servers:
        roots = roots_of(server)
        allowed = [roots[key] for key in rule.roots if roots.get(key)]
        if not any(path == root or path.startswith(root + "/") for root in allowed):
            where = ", ".join(f"{root}/" for root in allowed) or ", ".join(ROOT_LABEL.get(k, k) for k in rule.roots)
            raise CommandRefused(f"{name}: {arg}는 {server.server_id}의 허용 경로({where}) 밖입니다")


def _check_args(rule: Rule, args: list[str], servers: Sequence, roots_of: RootsOf) -> None:
    name = rule.program
    if len(args) > rule.max_args:
        raise CommandRefused(f"{name}: 인자는 {rule.max_args}개까지입니다")
    for arg in args:
        if arg.startswith("-") and arg != "-":
            if not _full(rule.option_pattern, arg):
                raise CommandRefused(f"{name}: 옵션 {arg}는 허용 목록에 없습니다")
            if "/" in arg:  # a path inside an option (--file=/x, -f/x) is confined like any other
                _check_path(arg[arg.index("/") :], rule, servers, roots_of)
        elif "/" in arg:
            _check_path(arg, rule, servers, roots_of)
        elif not _full(rule.operand_pattern, arg):
            raise CommandRefused(f"{name}: 인자 {arg!r}는 허용 목록에 없습니다")
    if rule.argv_pattern and not _full(rule.argv_pattern, " ".join(args)):
        raise CommandRefused(f"{name}: 이 인자 조합은 허용 목록에 없습니다")


def _candidates(word: str, rules: Iterable[Rule]) -> list[Rule]:
    if "/" in word:
        # Only the catalogue's exact absolute path: /tmp/evil/ps is not ps.
        return [r for r in rules if r.program.startswith("/") and r.program == word]
    return [r for r in rules if r.program in (word, f"/{word}") or r.program.endswith(f"/{word}")]


def resolve(
    pipeline: Pipeline, rules: Sequence[Rule], servers: Sequence, system_label: str = "", *, roots_of: RootsOf
) -> Pipeline:
    """Match every stage against the rules; returns the pipeline with each program replaced
    by the catalogue's own spelling of it. Raises CommandRefused."""
    where = f"시스템 {system_label}의 " if system_label else ""
    resolved: Pipeline = []
    for index, argv in enumerate(pipeline):
        word, args = argv[0], argv[1:]
        base = program_basename(word)
        candidates = _candidates(word, rules)
        if not candidates:
            if base in PROGRAMS_THAT_RUN_PROGRAMS:
                raise CommandRefused(
                    f"{word}: 다른 프로그램이나 코드를 실행하는 프로그램(래퍼·인터프리터)은 "
                    f"{where}명령 카탈로그가 명시적으로 허용할 때만 쓸 수 있습니다"
                )
            if "/" in word:
                raise CommandRefused(f"{word}: {where}명령 카탈로그에 이 경로의 프로그램이 없습니다")
            raise CommandRefused(f"{word}: {where}명령 카탈로그에 없는 프로그램입니다")
        if index > 0:
            candidates = [r for r in candidates if r.is_filter]
            if not candidates:
                raise CommandRefused(f"{word}: 파이프('|') 뒤에는 카탈로그에서 필터로 지정된 프로그램만 올 수 있습니다")
        candidates = [
            r for r in candidates if r.runs_programs or program_basename(r.program) not in PROGRAMS_THAT_RUN_PROGRAMS
        ]
        if not candidates:
            raise CommandRefused(f"{word}: 다른 프로그램을 실행하는 프로그램은 카탈로그가 명시적으로 허용해야 합니다")
        first_error: CommandRefused | None = None
        for rule in candidates:
            try:
                _check_args(rule, args, servers, roots_of)
            except CommandRefused as exc:
                first_error = first_error or exc
                continue
            # A rule with a run-as user goes through sudo, which the generated sudoers file
            # allows for exactly this program and argument list (cmdb.sudoers).
            prefix = ["sudo", "-n", "-u", rule.run_as, "--"] if rule.run_as else []
            resolved.append([*prefix, rule.program, *args])
            break
        else:
            assert first_error is not None
            raise first_error
    return resolved


def check(
    text: str, rules: Sequence[Rule], servers: Sequence, system_label: str = "", *, roots_of: RootsOf
) -> tuple[Pipeline, str]:
    """Parse, match against the catalogue and rebuild: (argv pipeline, quoted command line).
    ``roots_of(server)`` gives the server's CMDB roots that path arguments are confined under."""
    pipeline = resolve(parse(text), rules, servers, system_label, roots_of=roots_of)
    line = command_line(pipeline)
    try:
        sanitizer.check(line)  # the second layer sees exactly what will run
    except SecurityViolation as exc:
        raise CommandRefused(str(exc)) from exc
    return pipeline, line
