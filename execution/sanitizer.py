"""Command sanitizer: the last gate in front of every remote command (TS-03).

``check(command)`` raises SecurityViolation(reason, pattern) for destructive commands;
``normalise(command)`` shows the text the rules see. Obfuscation is undone first, in
this order (docs/testbed.md has the table):

1. line continuations (backslash-newline) removed;
2. ANSI-C strings ``$'\\x72\\x6d'`` decoded; ``$(printf '\\x72m')`` / ``$(echo rm)`` inlined;
3. ``$IFS``/``${IFS}``/``${IFS%?}`` become a space; empty positional parameters
   (``$9``, ``$@``, ``${1}``) vanish; ``${PATH:0:1}`` becomes ``/``;
4. quotes removed (``'r''m'`` -> ``rm``), then every backslash (``r\\m`` -> ``rm``);
5. simple variable assignments substituted (``a=rm; $a -rf /``);
6. brace lists at a word start expanded (``{rm,-rf,/}`` -> ``rm -rf /``);
7. whitespace collapsed (tabs, runs of spaces), newlines become ``;``;
8. base64 payloads fed to ``base64 -d`` decoded and appended, so their content is checked.

9. ``>|`` becomes ``>``; repeated slashes collapse and ``/./`` and ``/x/../`` resolve in
   paths (``of=//dev/sda``, ``/etc//shadow``, ``/etc/x/../passwd``);
10. for the SQL rules only, comments are removed (``drop/**/table``, ``drop -- x`` + newline)
    and MySQL's executable comments ``/*!…*/`` opened.

The text is then split into simple commands at ; & | && || $( ( ) ` { } <<<, wrappers
(sudo, env, nohup, timeout, xargs, busybox, bash -c, ...) are peeled off — and since a
wrapper's options may take values, every later word is judged as a possible command
name too — and each command is judged by the rules for its name; a few rules look at the
whole text (pipes and here-strings into a shell, substituted downloads, fork bombs, device
and account-file writes, SQL). When in doubt it blocks: a blocked operator can use a
playbook. This is the second layer: RAW_COMMAND and CRON_MANAGE first go through the
command catalogue (execution/commands.py), which allows rather than denies.
"""

from __future__ import annotations

import base64
import binascii
import codecs
import functools
import posixpath
import re

from django.utils.functional import Promise
from django.utils.translation import gettext
from django.utils.translation import gettext_lazy as _

from audit.scrub import fold

from .errors import SecurityViolation

StrOrPromise = str | Promise  # a reason: its Korean msgid, translated when a command is refused

TOP_DIRS = {
    "/",
    "/bin",
    "/boot",
    "/dev",
    "/etc",
    "/home",
    "/lib",
    "/lib32",
    "/lib64",
    "/libx32",
    "/media",
    "/mnt",
    "/opt",
    "/proc",
    "/root",
    "/run",
    "/sbin",
    "/srv",
    "/sys",
    "/tmp",
    "/usr",
    "/var",
    "/usr/bin",
    "/usr/sbin",
    "/usr/lib",
    "/usr/lib64",
    "/usr/local",
    "/usr/share",
    "/var/lib",
    "/var/log",
    "/var/spool",
    "/etc/ssh",
    "/etc/init.d",
    "/boot/grub",
}
# Trees no operator command deletes from or writes into.
SYSTEM_TREES = (
    "/etc",
    "/boot",
    "/dev",
    "/proc",
    "/sys",
    "/bin",
    "/sbin",
    "/lib",
    "/lib32",
    "/lib64",
    "/libx32",
    "/usr/bin",
    "/usr/sbin",
    "/usr/lib",
    "/usr/lib64",
    "/root",
    "/var/spool/cron",
    "/var/lib/rpm",
    "/var/lib/dpkg",
)
CRITICAL_FILES = re.compile(r"^/etc/(passwd|shadow|group|gshadow|sudoers|fstab)$|^/boot/vmlinuz")
# Files and devices whose overwrite takes the server or its accounts: account and sudo files,
# cron, the loader's preload list, PAM, sshd, authorized keys, the boot tree, block devices.
PROTECTED_PATH = re.compile(
    r"^/etc/(?:passwd|shadow|group|gshadow|sudoers|fstab|crontab|ld\.so\.preload|ld\.so\.conf|profile|bashrc|"
    r"environment|rc\.local|hosts\.equiv|securetty|login\.defs)(?:-|\+)?$"
    r"|^/etc/(?:sudoers\.d|cron\.(?:d|hourly|daily|weekly|monthly)|pam\.d|security|profile\.d|ld\.so\.conf\.d|"
    r"systemd/system|init\.d|ssh)(?:/|$)"
    r"|^/var/spool/cron(?:/|$)|^/boot(?:/|$)|^/root/\.ssh(?:/|$)|(?:^|/)\.ssh/authorized_keys2?$"
    r"|^/dev/(?:sd|hd|vd|xvd|nvme|mmcblk|dm-|md\d|disk/|mapper/|mem$|kmem$|port$|loop|sr\d)"
)
SHELLS = {"sh", "bash", "dash", "zsh", "ksh", "csh", "tcsh", "fish", "ash", "rbash", "mksh"}
WRAPPERS = {
    "sudo",
    "doas",
    "exec",
    "eval",
    "nohup",
    "env",
    "command",
    "builtin",
    "time",
    "nice",
    "ionice",
    "then",
    "do",
    "else",
    "elif",
    "if",
    "while",
    "until",
    "!",
    "xargs",
    "timeout",
    "watch",
    "stdbuf",
    "setsid",
    "unbuffer",
    "su",
    "chroot",
    "nsenter",
    "runuser",
    "busybox",
    "toybox",
    "pkexec",
    "unshare",
    "chrt",
    "taskset",
    "flock",
    "strace",
    "ltrace",
    "valgrind",
    "catchsegv",
    "script",
    "sudoedit",
    "systemd-run",
    "firejail",
    "proot",
}
INTERPRETERS = re.compile(
    r"^(?:python[\d.]*|pypy[\d.]*|perl[\d.]*|ruby[\d.]*|node(?:js)?|php[\d.]*|lua[\d.]*|"
    r"luajit|tclsh[\d.]*|wish|rscript|jrunscript|jshell|groovy|osascript|pwsh|powershell|"
    r"expect|gdb)$",
    re.I,
)
INLINE_FLAGS = {
    "python": "c",
    "pypy": "c",
    "perl": "eE",
    "ruby": "e",
    "node": "ep",
    "nodejs": "ep",
    "php": "rBRE",
    "lua": "e",
    "luajit": "e",
    "jrunscript": "e",
    "groovy": "e",
    "osascript": "e",
    "expect": "c",
    "gdb": "x",
    "tclsh": "",
    "rscript": "e",
    "pwsh": "cC",
    "powershell": "cC",
}
DOWNLOADERS = r"(?:curl|wget|fetch|lwp-download|lwp-request|GET|aria2c|tftp|ftp|nc|ncat|netcat|socat)"
SEPARATORS = re.compile(r"&&|\|\||\$\(|<<<|[;&|()`{}]")
SHELL_WORD = r"(?:\S*/)?(?:(?:ba|da|z|k|tc|c|fi|a|rba|mk)?sh|busybox\s+(?:ba|a)?sh|toybox\s+sh)\b(?!\.)"
INTERP_WORD = r"(?:\S*/)?(?:python|pypy|perl|ruby|php|node|lua)[\d.]*"

# Rules searched only in a text that holds one of the literals each needs (a part of the
# expression no match can do without: its backreference's brackets, a path, a command's name):
# exact for a case-sensitive rule, in the text folded by audit.scrub.fold for a case-insensitive
# one. An ordinary command holds few of them, and most of a check's time was these searches.
_NEEDS: dict[re.Pattern[str], tuple[bool, tuple[str, ...]]] = {}  # pattern -> (folded?, literals)


def _needing(literals: tuple[str, ...], pattern: re.Pattern[str]) -> re.Pattern[str]:
    folded = bool(pattern.flags & re.I)
    if folded:
        assert all(literal == fold(literal) for literal in literals), literals
    _NEEDS[pattern] = (folded, literals)
    return pattern


def _search(pattern: re.Pattern[str], text: str, folded: list[str]) -> re.Match[str] | None:
    """``pattern.search(text)``, unless the text lacks every literal the pattern needs
    (``folded`` holds the folded text once it was made)."""
    needs = _NEEDS.get(pattern)
    if needs is not None:
        haystack = text
        if needs[0]:
            if not folded:
                folded.append(fold(text))
            haystack = folded[0]
        for literal in needs[1]:
            if literal in haystack:
                break
        else:
            return None
    return pattern.search(text)


TEXT_RULES: list[tuple[StrOrPromise, re.Pattern[str]]] = [
    (_("포크 폭탄"), _needing(("{",), re.compile(r"([\w:.]+)\s*\(\s*\)\s*\{\s*\1\s*\|\s*\1\s*&"))),
    (
        _("포크 폭탄"),
        re.compile(r"\bfork\s+while\s+fork\b|\bwhile\s*\(?\s*(?:1|true)\s*\)?\s*;?\s*do\s+\S+\s*&\s*;?\s*done"),
    ),
    (
        _("셸로 파이프하면 실제로 실행되는 명령이 가려집니다"),
        _needing(
            ("|",),
            re.compile(
                r"\|\s*(?:(?:sudo|doas|exec|env|nohup|timeout|xargs|nice|ionice|setsid|command|stdbuf|su|runuser|"
                r"chroot)(?:\s+(?:-[ugCnsIkcpL]\s+\S+|-\S+|\d\S*|\w+=\S*))*\s+)*" + SHELL_WORD
            ),
        ),
    ),
    (
        _("인터프리터로 파이프하면 실제로 실행되는 명령이 가려집니다"),
        _needing(("|",), re.compile(r"\|\s*(?:sudo\s+)?" + INTERP_WORD + r"\s*(?:-\s*)?(?:;|$|\|)")),
    ),
    (
        _("셸이나 인터프리터가 here-string·here-document를 읽으면 실제로 실행되는 명령이 가려집니다"),
        _needing(
            ("<<",),
            re.compile(r"(?:^|[\s;&|(])" + r"(?:" + SHELL_WORD + r"|" + INTERP_WORD + r"|source|\.)(?:\s+-\S+)*\s*<<"),
        ),
    ),
    (
        _("셸이 표준 입력이나 파이프에서 명령을 읽음"),
        _needing(
            ("/dev/",),
            re.compile(r"(?:\b(?:ba|da|z|k)?sh|\bsource|(?:^|\s)\.)\s+(?:-\S+\s+)*/dev/(?:stdin|fd/\d|tcp|udp)"),
        ),
    ),
    (
        _("셸이 프로세스 치환을 읽음"),
        _needing(("<(",), re.compile(r"(?:\b(?:ba|da|z|k)?sh|\bsource|(?:^|\s)\.)\s+<\(")),
    ),
    (
        _("내려받은 내용을 실행함"),
        _needing(("$(", "`", "<(", ">("), re.compile(r"(?:\$\(|`|<\(|>\()\s*(?:\S*/)?" + DOWNLOADERS + r"\b")),
    ),
    (
        _("생성한 텍스트를 명령으로 실행함"),
        _needing(("$(", "`"), re.compile(r"(?:^|[;&|]|&&|\|\|)\s*(?:(?:sudo|exec|env|nohup|command)\s+)*(?:\$\(|`)")),
    ),
    (_("네트워크 셸"), re.compile(r"/dev/(?:tcp|udp)/|\bsocat\b[^;|]*\b(?:exec|system):", re.I)),
    (
        _("이름 있는 파이프를 통한 리버스 셸"),
        _needing(("mkfifo",), re.compile(r"\bmkfifo\b.*\b(?:nc|ncat|netcat|telnet|openssl)\b")),
    ),
    (
        _("블록 장치나 메모리 장치에 씀"),
        re.compile(r">\s*/dev/(?:sd|hd|vd|xvd|nvme|mmcblk|dm-|md\d|disk/|mapper/|mem\b|kmem\b|port\b|loop)"),
    ),
    (
        _("dd로 장치에 씀"),
        _needing(("of=/dev/",), re.compile(r"\bdd\b[^;|]*\bof=/dev/(?!null\b|zero\b|stdout\b|stderr\b|fd/)")),
    ),
    (_("커널 트리거"), re.compile(r"/proc/sysrq-trigger|\bsysctl\b[^;|]*kernel\.panic|>\s*/proc/sys/")),
    (
        _("계정·sudo·cron·로그인·부팅 파일을 덮어씀"),
        re.compile(
            r"(?:>|\btee\b(?:\s+-\S+)*)\s*(?:/etc/(?:passwd|shadow|group|gshadow|sudoers|fstab|crontab|"
            r"ld\.so\.preload|profile|bashrc|environment|rc\.local)\b|/etc/(?:sudoers\.d|cron\.\w+|pam\.d|"
            r"profile\.d|ssh|security|systemd/system)/|/var/spool/cron|/boot/|/root/\.ssh|\S*\.ssh/authorized_keys)"
        ),
    ),
    (
        _("셸 기록 삭제"),
        _needing(
            ("hist", "HIST"),
            re.compile(
                r"\bhistory\s+-[cwd]|\bHISTFILE\b|\bHIST(?:FILE)?SIZE\s*=\s*0|\.bash_history|set\s+\+o\s+history"
            ),
        ),
    ),
    (
        _("시스템 로그 변조"),
        _needing(
            ("/var/log/",),
            re.compile(
                r"(?:>|\brm\b[^;|]*|\bshred\b[^;|]*|\btruncate\b[^;|]*)\s*/var/log/"
                r"(?:wtmp|btmp|lastlog|auth\.log|secure|messages|syslog|audit)\b"
            ),
        ),
    ),
    (_("--no-preserve-root 사용"), re.compile(r"--no-preserve-root")),
    (
        _("모든 프로세스에 코드를 싣거나 셸이 명령을 읽는 방식을 바꿈"),
        re.compile(
            r"(?:^|[\s;&|(])(?:export\s+)?(?:LD_PRELOAD|LD_LIBRARY_PATH|LD_AUDIT|BASH_ENV|ENV|PROMPT_COMMAND|"
            r"IFS|PS4|SHELLOPTS|BASHOPTS|GCONV_PATH|PYTHONSTARTUP|PERL5OPT|NODE_OPTIONS)="
        ),
    ),
    (
        _("텍스트를 바꾸는 매개변수 확장(간접 참조, 대소문자·패턴 치환)"),
        _needing(("${",), re.compile(r"\$\{!\w|\$\{\w+(?:\^\^?|,,?|//?[^}]*|:-?\d+(?::\d+)?|@[QEPAaKkUuL])\}")),
    ),
    (
        _("awk가 명령을 실행함(system(), 명령에서 getline, |&)"),
        _needing(("awk",), re.compile(r"\b[gmn]?awk\b.*(?:\bsystem\s*\(|\bgetline\b|\|&)")),
    ),
    (
        _("파이프·표준 입력·here-string으로 crontab을 씀"),
        _needing(
            ("crontab",),
            re.compile(
                r"\|\s*(?:(?:sudo|env|command)\s+)*(?:\S*/)?crontab\b|\bcrontab\b(?:\s+-u\s+\S+)?\s+-(?:\s|$)|"
                r"\bcrontab\b[^;|&]*<"
            ),
        ),
    ),
]

SQL_RULES: list[tuple[StrOrPromise, re.Pattern[str]]] = [
    (
        _("SQL DROP 문"),
        _needing(
            ("drop",),
            re.compile(
                r"\bdrop\s+(?:table|database|schema|user|tablespace|index|view|procedure|function|"
                r"trigger|role|owned|materialized|sequence|extension)\b|\balter\s+table\s+\S+\s+drop\b",
                re.I,
            ),
        ),
    ),
    (
        _("SQL TRUNCATE 문"),
        _needing(
            ("truncate",), re.compile(r"\btruncate\s+table\b|\btruncate\s+(?![-/])[A-Za-z_][\w.]*\s*(?:;|$)", re.I)
        ),
    ),
    (_("WHERE 없는 SQL DELETE"), _needing(("delete",), re.compile(r"\bdelete\s+from\s+[\w.]+\s*(?:;|$)", re.I))),
    (
        _("WHERE가 항상 참인 SQL DELETE 또는 UPDATE"),
        _needing(
            ("delete", "update"),
            re.compile(
                r"\b(?:delete\s+from|update)\s+[\w.]+\b.*?\bwhere\s+(?:1\s*=\s*1|true|1|(\w+)\s*=\s*\1|"
                r"(\d+)\s*=\s*\2|1\s*<>\s*0)\s*(?:;|$)",
                re.I,
            ),
        ),
    ),
    (
        _("WHERE 없는 SQL UPDATE"),
        _needing(("update",), re.compile(r"\bupdate\s+[\w.]+\s+set\s+(?:(?!\bwhere\b)[^;])*(?:;|$)", re.I)),
    ),
    (
        _("동적 SQL은 실제로 실행되는 문장을 가립니다"),
        _needing(
            ("exec", "prepare", "xp_cmdshell", "into", "copy"),
            re.compile(
                r"\bexecute\s+immediate\b|\bexec(?:ute)?\s*\(\s*@?\w*\s*[+|]|\bprepare\s+\w+\s+from\b|"
                r"\bxp_cmdshell\b|\bsys_exec\b|\binto\s+(?:out|dump)file\b|\bcopy\s+\S+\s+(?:from|to)\s+program\b",
                re.I,
            ),
        ),
    ),
]


# -- normalisation ---------------------------------------------------------------------------
def _decode_escapes(text: str) -> str:
    try:
        return codecs.decode(text.encode("latin-1", "backslashreplace"), "unicode_escape")
    except (UnicodeDecodeError, ValueError):
        return text


def _inline_printf(match: re.Match[str]) -> str:
    arg = match.group(2).strip().strip("'\"")
    return _decode_escapes(arg) if match.group(1) == "printf" or "-e" in match.group(0) else arg


def _assignments(text: str) -> str:
    values = dict(re.findall(r"(?:^|[;&|\s])([A-Za-z_]\w*)=([^\s;&|]*)", text))
    for name, value in values.items():
        text = re.sub(r"\$\{" + name + r"\}|\$" + name + r"\b", value.replace("\\", r"\\"), text)
    return text


def _expand_braces(text: str) -> str:
    return re.sub(r"(?:(?<=^)|(?<=[\s;&|(`]))\{([^{}\s]*,[^{}\s]*)\}", lambda m: m.group(1).replace(",", " "), text)


def _base64_payloads(text: str) -> list[str]:
    found = re.findall(r"(?:echo|printf)(?:\s+-\w+)*\s+([A-Za-z0-9+/=]{8,})\s*\|\s*base64\s+(?:-d|--decode|-D)", text)
    found += re.findall(r"base64\s+(?:-d|--decode|-D)\s*<<<\s*([A-Za-z0-9+/=]{8,})", text)
    decoded = []
    for payload in found:
        try:
            decoded.append(base64.b64decode(payload + "=" * (-len(payload) % 4)).decode("utf-8", "replace"))
        except (binascii.Error, ValueError):
            continue
    return decoded


def _paths(text: str) -> str:
    """Collapse '//' (not in URLs), drop '/./' and resolve '/x/../' so a path is judged once."""
    text = re.sub(r"(?<![:/])/{2,}", "/", text)
    text = re.sub(r"^/{2,}", "/", text)
    previous = None
    while previous != text:
        previous = text
        text = re.sub(r"/\.(?=/|\s|$)", "", text)
        text = re.sub(r"/(?!\.\.(?:/|\s|$))[^/\s;&|]+/\.\.(?=/|\s|$)", "", text)
    return text


def sql_view(text: str) -> str:
    """The text as a SQL parser sees it: comments gone, executable comments opened."""
    text = re.sub(r"/\*!\d*(.*?)\*/", r" \1 ", text, flags=re.S)
    text = re.sub(r"/\*.*?\*/", " ", text, flags=re.S)
    text = re.sub(r"(?:--|#)[^\n]*\n", " ", text)  # only a comment a newline ends: "--force" is an option
    return re.sub(r"\s+", " ", text.replace("'", "").replace('"', "").replace("`", ""))


def normalise(command: str, _depth: int = 0) -> str:
    text = command.replace("\\\n", "").replace("\r", "")
    text = re.sub(r"\$'((?:[^'\\]|\\.)*)'", lambda m: _decode_escapes(m.group(1)), text)
    text = re.sub(r"\$\(\s*(printf|echo)((?:\s+-[neE]+)?\s+[^()|;&]*)\)", _inline_printf, text)
    text = re.sub(r"`\s*(printf|echo)((?:\s+-[neE]+)?\s+[^`|;&]*)`", _inline_printf, text)
    text = re.sub(r"\$\{IFS[^}]*\}|\$IFS\b", " ", text)
    text = re.sub(r"\$\{[0-9@*]\}|\$[0-9@*]", "", text)
    text = re.sub(r"\$\{\w+:0:1\}", "/", text)
    text = text.replace("'", "").replace('"', "").replace("\\", "")
    text = _assignments(text)
    text = _expand_braces(text)
    text = text.replace(">|", ">")
    text = re.sub(r"[ \t\f\v]+", " ", text)
    text = re.sub(r"\s*\n\s*", " ; ", text).strip()
    payloads = _base64_payloads(text) if _depth < 3 else []  # before '//' collapses inside base64
    text = _paths(text)
    for decoded in payloads:
        text += " ; " + normalise(decoded, _depth + 1)
    return text


# -- rules per command -----------------------------------------------------------------------
def _is_option(word: str) -> bool:
    return word.startswith("-") or bool(re.fullmatch(r"\d+(?:\.\d+)?[smhd]?", word))


def _peel(tokens: list[str]) -> list[tuple[str, list[str], set[str]]]:
    """Strip wrappers (sudo, env X=1, timeout 5, busybox, bash -c ...) and return every
    (command word, args, wrappers seen) the words could run: a wrapper's option may take a
    value (``sudo -u root rm``), so after one every later non-option word is a candidate."""
    seen: set[str] = set()
    while tokens:
        word = tokens[0]
        base = posixpath.basename(word)
        if re.match(r"^[A-Za-z_]\w*=", word):
            tokens = tokens[1:]
        elif base in WRAPPERS or base in SHELLS and len(tokens) > 1 and tokens[1].startswith("-"):
            seen.add("shell -c" if base in SHELLS else base)
            tokens = tokens[1:]
            while tokens and _is_option(tokens[0]):
                tokens = tokens[1:]
        else:
            break
    if not tokens:
        return []
    found = [(tokens[0], tokens[1:], seen)]
    if seen:
        found += [(tokens[i], tokens[i + 1 :], seen) for i in range(1, len(tokens)) if not _is_option(tokens[i])]
    return found


def _flags(args: list[str]) -> str:
    return "".join(a[1:] for a in args if a.startswith("-") and not a.startswith("--"))


def _norm(arg: str) -> str:
    value = arg.split("=", 1)[1] if re.match(r"^(?:of|if|--?[\w-]+)=", arg) else arg
    if not value.startswith("/"):
        return value
    return posixpath.normpath(re.sub(r"/+", "/", value))


def _in_system_tree(arg: str) -> bool:
    path = _norm(arg)
    return path.startswith("/") and any(path == t or path.startswith(t + "/") for t in SYSTEM_TREES)


def _dangerous_target(arg: str) -> bool:
    if arg in {"~", "~/", "*", ".", "..", ".*", "$HOME", "${HOME}"} or re.match(r"^\$\{?\w+\}?/", arg):
        return True
    if not arg.startswith(("/", "~")):
        return False
    path = re.sub(r"(/\*|/\.\*|/)+$", "", arg) or "/"
    path = re.sub(r"/+", "/", path)
    return posixpath.normpath(path) in TOP_DIRS or path.startswith("~") and path in {"~", "~/*"}


def _setuid_mode(mode: str) -> bool:
    if re.fullmatch(r"[0-7]{3,5}", mode):
        return bool(int(mode, 8) & 0o6000)
    return any(re.fullmatch(r"[ugoa]*[+=][rwxXst]*s[rwxXst]*", clause) for clause in mode.split(","))


FIND_FILTERS = {
    "-name",
    "-iname",
    "-mtime",
    "-mmin",
    "-newer",
    "-size",
    "-path",
    "-ipath",
    "-regex",
    "-iregex",
    "-atime",
    "-ctime",
    "-amin",
    "-cmin",
    "-user",
    "-group",
}
FIND_EXEC = {"-exec", "-execdir", "-ok", "-okdir"}
DESTRUCTIVE = {
    "rm",
    "shred",
    "unlink",
    "truncate",
    "dd",
    "wipefs",
    "mv",
    "chmod",
    "chown",
    "sh",
    "bash",
    "perl",
    "python",
    "python3",
    "srm",
    "cp",
    "tee",
    "ln",
}
WRITERS = {
    "tee",
    "cp",
    "mv",
    "install",
    "ln",
    "rsync",
    "truncate",
    "dd",
    "shred",
    "chattr",
    "scp",
    "link",
    "sponge",
    "touch",
    "split",
    "csplit",
}


def _judge_find(args: list[str], segment: str) -> tuple[str, str] | None:
    start = [a for a in args[: next((i for i, a in enumerate(args) if a.startswith(("-", "(", "!"))), len(args))]]
    deletes = "-delete" in args
    runs = [args[i + 1] for i, a in enumerate(args[:-1]) if a in FIND_EXEC]
    if any(
        posixpath.basename(r)
        in {
            "shred",
            "wipefs",
            "dd",
            "srm",
            "sh",
            "bash",
            "dash",
            "zsh",
            "perl",
            "python",
            "python3",
            "busybox",
            "xargs",
            "env",
            "sudo",
        }
        for r in runs
    ):
        return gettext("find가 셸을 실행하거나 파일을 파쇄함(-exec)"), segment
    if any(a in {"-fprint", "-fprintf", "-fls", "-fprint0"} for a in args):
        return gettext("find가 파일을 씀(-fprint/-fls)"), segment
    destructive = deletes or any(posixpath.basename(r) in DESTRUCTIVE for r in runs)
    if not destructive:
        return None
    if any(_dangerous_target(t) or _in_system_tree(t) for t in start) or not start:
        return gettext("find가 /, 현재 디렉터리 또는 시스템 디렉터리에서 삭제함"), segment
    if not FIND_FILTERS & set(args):
        return gettext("find가 디렉터리 아래를 모두 삭제함(-name/-mtime 등 조건 없음)"), segment
    return None


def _judge_interpreter(name: str, args: list[str], segment: str) -> tuple[str, str] | None:
    key = re.sub(r"[\d.]+$", "", name.lower())
    flags = _flags(args)
    inline = INLINE_FLAGS.get(key, "")
    if any(f in flags for f in inline) or {"--eval", "--print", "--command", "--exec"} & set(args):
        return gettext("%(name)s 인라인 코드 실행") % {"name": name}, segment
    informational = {"-v", "-V", "--version", "-h", "--help", "-VV"}
    if "-" in args or not [a for a in args if not a.startswith("-")] and not informational & set(args):
        return gettext("%(name)s이(가) 표준 입력에서 프로그램을 읽음") % {"name": name}, segment
    if key in {"python", "pypy"} and "-m" in args:
        module = args[args.index("-m") + 1] if args.index("-m") + 1 < len(args) else ""
        if module not in {"json.tool"}:
            return gettext("%(name)s -m %(module)s: 명령줄에서 코드를 실행함") % {
                "name": name,
                "module": module,
            }, segment
    return None


def _judge_sed(args: list[str], segment: str) -> tuple[str, str] | None:
    scripts = [args[i + 1] for i, a in enumerate(args[:-1]) if a in {"-e", "--expression"}]
    operands = [a for a in args if not a.startswith("-")]
    if not scripts and operands:
        scripts = operands[:1]
    for script in scripts:
        if re.search(r"(?:^|[;{}\s])(?:\d+|\$|/[^/]*/)?\s*e(?:\s|$)", script) or re.search(
            r"(?:^|[;{}\s])s(.).*\1.*\1[gpiImM\dw]*e", script
        ):
            return gettext("sed가 명령을 실행함(e 명령 또는 플래그)"), segment
    if any(PROTECTED_PATH.search(_norm(a)) for a in operands) and (
        "i" in _flags(args) or "--in-place" in args or re.search(r"\bw\s*/", " ".join(scripts))
    ):
        return gettext("sed가 계정·sudo·cron·부팅 파일을 고침"), segment
    return None


def _judge(word: str, args: list[str], wrappers: set[str], segment: str) -> tuple[str, str] | None:
    name = posixpath.basename(word)
    flags = _flags(args)
    long = {a for a in args if a.startswith("--")}
    targets = [a for a in args if not a.startswith("-")]
    recursive = "r" in flags or "R" in flags or "--recursive" in long
    if name == "rm":
        if recursive and ("f" in flags or "--force" in long):
            return gettext("재귀 강제 삭제(rm -rf): 사전 점검(dry-run)이 있는 정리 플레이북을 쓰세요"), segment
        if recursive and ("xargs" in wrappers or any(_dangerous_target(t) or _in_system_tree(t) for t in targets)):
            return gettext("시스템 디렉터리, / 또는 와일드카드의 재귀 삭제"), segment
        if any(CRITICAL_FILES.match(_norm(t)) or PROTECTED_PATH.search(_norm(t)) for t in targets):
            return gettext("계정·sudo·cron·부팅 파일 삭제"), segment
    if name in {"chmod", "chown", "chgrp"}:
        if any(_dangerous_target(t) for t in targets[1:] if t) and (recursive or "/" in targets[1:]):
            return gettext("/ 또는 시스템 디렉터리에 %(name)s") % {"name": name}, segment
        if name == "chmod" and targets and _setuid_mode(targets[0]):
            return gettext("setuid/setgid 비트 설정"), segment
    if name == "install" and any(_setuid_mode(args[i + 1]) for i, a in enumerate(args[:-1]) if a in {"-m", "--mode"}):
        return gettext("setuid/setgid 파일 설치"), segment
    if name in WRITERS and any(PROTECTED_PATH.search(_norm(t)) for t in targets + [a for a in args if "=" in a]):
        return gettext("%(name)s이(가) 계정·sudo·cron·ssh·부팅 파일이나 디스크 장치에 씀") % {"name": name}, segment
    if name == "find":
        found = _judge_find(args, segment)
        if found:
            return found
    if INTERPRETERS.match(name):
        found = _judge_interpreter(name, args, segment)
        if found:
            return found
    if name == "sed":
        found = _judge_sed(args, segment)
        if found:
            return found
    if name in {"nc", "ncat", "netcat"} and (set(flags) & {"e", "c"} or {"--exec", "--sh-exec", "--lua-exec"} & long):
        return gettext("네트워크 셸(nc -e)"), segment
    if name == "socat" and any(re.match(r"^(?:exec|system):", a, re.I) for a in args):
        return gettext("네트워크 셸(socat EXEC:)"), segment
    if name == "tar" and any(
        a.startswith(
            (
                "--checkpoint-action",
                "--to-command",
                "--use-compress-program",
                "--info-script",
                "--new-volume-script",
                "--rsh-command",
            )
        )
        for a in args
    ):
        return gettext("tar가 명령을 실행함"), segment
    if name in {"rsync", "scp", "ssh", "git"} and (
        {"-e", "--rsh"} & set(args)
        or any(
            re.search(
                r"(?i)proxycommand|localcommand|core\.\w+=|"
                r"--upload-pack|--receive-pack|--exec",
                a,
            )
            for a in args
        )
    ):
        return gettext("%(name)s이(가) 옵션으로 명령을 실행함") % {"name": name}, segment
    if name.startswith(("mkfs", "mke2fs", "mkswap", "wipefs", "fdisk", "sfdisk", "parted", "blkdiscard")):
        return gettext("디스크 포맷 또는 파티션 변경"), segment
    if name == "format":
        return gettext("format 실행"), segment
    if name in {"shutdown", "reboot", "halt", "poweroff", "kexec"}:
        return gettext("서버 종료 또는 재부팅"), segment
    if name in {"init", "telinit"} and targets[:1] and targets[0] in {"0", "1", "6", "s", "S"}:
        return gettext("런레벨 변경(정지/재부팅)"), segment
    if name == "systemctl":
        verbs = set(targets)
        if verbs & {
            "poweroff",
            "reboot",
            "halt",
            "kexec",
            "rescue",
            "emergency",
            "suspend",
            "hibernate",
            "isolate",
            "default",
        }:
            return gettext("서버 종료 또는 재부팅"), segment
        if verbs & {"stop", "disable", "mask", "kill"} and verbs & {
            "sshd",
            "ssh",
            "sshd.service",
            "ssh.service",
            "firewalld",
            "auditd",
            "iptables",
        }:
            return gettext("원격 접속·방화벽·감사 기능 중지"), segment
    if name in {"kill", "pkill", "killall"} and ("-1" in args[-1:] or targets[-1:] == ["1"]) and name == "kill":
        return gettext("모든 프로세스 또는 init 종료"), segment
    if name == "killall5":
        return gettext("모든 프로세스 종료"), segment
    if name in {"iptables", "ip6tables"} and (
        "F" in flags or "X" in flags or {"--flush", "--delete-chain"} & long or "P" in flags and "ACCEPT" in args
    ):
        return gettext("방화벽 규칙 비우기 또는 전체 허용"), segment
    if (name == "nft" and "flush" in targets) or (name == "ufw" and targets[:1] in (["disable"], ["reset"])):
        return gettext("방화벽 규칙 비우기 또는 끄기"), segment
    if name == "setenforce" and targets[:1] == ["0"]:
        return gettext("SELinux 끄기"), segment
    if name == "crontab" and ("r" in flags or "-" in args):
        return gettext("모든 cron 작업을 바꾸거나 지움(crontab -r, crontab -)"), segment
    if name in {
        "useradd",
        "adduser",
        "usermod",
        "userdel",
        "deluser",
        "groupadd",
        "groupmod",
        "gpasswd",
        "chpasswd",
        "visudo",
        "vipw",
        "vigr",
        "newusers",
        "chage",
    }:
        return gettext("계정·그룹·sudo 권한 변경"), segment
    if name in {"insmod", "rmmod", "modprobe", "kmod"}:
        return gettext("커널 모듈 적재 또는 제거"), segment
    if name == "setcap":
        return gettext("파일 capability 부여"), segment
    if name in {"at", "batch"}:
        return gettext("GUARDiA 밖에서 명령 예약(at/batch)"), segment
    if name in {"umount", "swapoff"} and ("a" in flags or "/" in targets):
        return gettext("모든 파일 시스템 또는 스왑 해제"), segment
    if name == "mv" and (targets[-1:] == ["/dev/null"] or any(_dangerous_target(t) for t in targets[:-1])):
        return gettext("시스템 디렉터리를 옮기거나 /dev/null로 보냄"), segment
    if name == "shred" and any(t.startswith("/dev/") or _dangerous_target(t) for t in targets):
        return gettext("장치나 시스템 디렉터리 파쇄"), segment
    if name == "rsync" and "--delete" in " ".join(long) and targets and _dangerous_target(targets[-1]):
        return gettext("/ 또는 시스템 디렉터리로 rsync --delete"), segment
    if name == "passwd" and "d" in flags:
        return gettext("비밀번호 제거"), segment
    if name == "eval" or ("eval" in wrappers and re.search(r"\$\(|\$\{?\w", segment)):
        return gettext("생성한 텍스트의 eval"), segment
    if re.search(r"[?*\[]", word) and re.search(r"[A-Za-z/]", word):  # /???/r? is /bin/rm
        return gettext("명령 이름에 와일드카드"), segment
    return None


# Commands that passed, by their exact text: a rollout sends the same commands to every server
# of a system that shares its layout (the same paths, the same artifact hash), and one check of
# the hash-and-move command alone is ~0.5 ms of regular expressions. Only a pass is kept (a
# refusal raises, and functools.lru_cache keeps no result for a call that raised), the key is
# the whole text, so any other text, even one character apart, is judged from scratch; the rules
# are constants of this module, so a text's verdict cannot change while the process runs.
PASSED_CACHE_SIZE = 4096
PASSED_CACHE_MAX_CHARS = 4096  # longer texts (operator scripts) are judged every time


@functools.lru_cache(maxsize=PASSED_CACHE_SIZE)
def _passed(command: str) -> bool:
    _judge_text(command)
    return True


def check(command: str) -> None:
    """Raise SecurityViolation if the command (after normalisation) is destructive."""
    if not isinstance(command, str):
        raise SecurityViolation(gettext("명령이 텍스트가 아닙니다"), repr(type(command)))
    if "\x00" in command:
        raise SecurityViolation(gettext("명령에 NUL 바이트가 있습니다"), "\\x00")
    if type(command) is str and len(command) <= PASSED_CACHE_MAX_CHARS:
        _passed(command)  # a str subclass could compare equal to a different text: never cached
    else:
        _judge_text(command)


def _judge_text(command: str) -> None:
    text = normalise(command)
    folded: list[str] = []
    for reason, pattern in TEXT_RULES:
        match = _search(pattern, text, folded)
        if match:
            raise SecurityViolation(str(reason), match.group(0).strip())
    for view in (text, sql_view(command), sql_view(text)):
        folded = []
        for reason, pattern in SQL_RULES:
            match = _search(pattern, view, folded)
            if match:
                raise SecurityViolation(str(reason), match.group(0).strip())
    for segment in SEPARATORS.split(text):
        tokens = segment.split()
        if not tokens:
            continue
        for name, args, wrappers in _peel(tokens):
            verdict = _judge(name, args, wrappers, segment.strip())
            if verdict:
                raise SecurityViolation(*verdict)
