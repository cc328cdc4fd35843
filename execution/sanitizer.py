"""Command sanitizer: the last gate in front of every remote command (SPEC §6, TS-03).

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

The text is then split into simple commands at ; & | && || $( ( ) ` { }, wrappers
(sudo, env, nohup, timeout, xargs, bash -c, ...) are peeled off, and each command is judged
by the rules for its name; a few rules look at the whole text (pipes into a shell, fork
bombs, device writes, SQL). When in doubt it blocks: a blocked operator can use a playbook.
"""

from __future__ import annotations

import base64
import binascii
import codecs
import posixpath
import re


class SecurityViolation(Exception):
    """A command was refused before it reached any server."""

    def __init__(self, reason: str, pattern: str):
        super().__init__(f"blocked by the command sanitizer: {reason} [{pattern}]")
        self.reason, self.pattern = reason, pattern


TOP_DIRS = {"/", "/bin", "/boot", "/dev", "/etc", "/home", "/lib", "/lib32", "/lib64", "/libx32", "/media",
            "/mnt", "/opt", "/proc", "/root", "/run", "/sbin", "/srv", "/sys", "/tmp", "/usr", "/var",
            "/usr/bin", "/usr/sbin", "/usr/lib", "/usr/lib64", "/usr/local", "/usr/share", "/var/lib",
            "/var/log", "/var/spool", "/etc/ssh", "/etc/init.d", "/boot/grub"}
CRITICAL_FILES = re.compile(r"^/etc/(passwd|shadow|group|gshadow|sudoers|fstab)$|^/boot/vmlinuz")
SHELLS = {"sh", "bash", "dash", "zsh", "ksh", "csh", "tcsh", "fish", "ash", "busybox"}
WRAPPERS = {"sudo", "doas", "exec", "eval", "nohup", "env", "command", "builtin", "time", "nice", "ionice",
            "then", "do", "else", "elif", "if", "while", "until", "!", "xargs", "timeout", "watch", "stdbuf",
            "setsid", "unbuffer", "su", "chroot", "nsenter", "runuser"}
SEPARATORS = re.compile(r"&&|\|\||\$\(|[;&|()`{}]")

TEXT_RULES: list[tuple[str, re.Pattern[str]]] = [
    ("fork bomb", re.compile(r"([\w:.]+)\s*\(\s*\)\s*\{\s*\1\s*\|\s*\1\s*&")),
    ("fork bomb", re.compile(
        r"\bfork\s+while\s+fork\b|\bwhile\s*\(?\s*(?:1|true)\s*\)?\s*;?\s*do\s+\S+\s*&\s*;?\s*done")),
    ("piping text into a shell hides what runs",
     re.compile(r"\|\s*(?:(?:sudo|exec|env|nohup)\s+)*(?:\S*/)?(?:ba|da|z|k|tc|c|fi|a)?sh\b(?!\.)")),
    ("piping into an interpreter hides what runs",
     re.compile(r"\|\s*(?:sudo\s+)?(?:\S*/)?(?:python|perl|ruby|php|node)[\d.]*\s*(?:-\s*)?(?:;|$)")),
    ("shell reading a process substitution", re.compile(r"(?:\b(?:ba|da|z|k)?sh|\bsource|(?:^|\s)\.)\s+<\(")),
    ("network shell", re.compile(r"/dev/(?:tcp|udp)/|\b(?:nc|ncat|netcat)\b[^;|]*\s-[ec]\b|\bsocat\b[^;|]*exec:")),
    ("writing to a block or memory device",
     re.compile(r">\s*/dev/(?:sd|hd|vd|xvd|nvme|mmcblk|dm-|md\d|disk/|mapper/|mem\b|kmem\b|port\b)")),
    ("dd to a device", re.compile(r"\bdd\b[^;|]*\bof=/dev/(?!null\b|zero\b|stdout\b|stderr\b|fd/)")),
    ("kernel trigger", re.compile(r"/proc/sysrq-trigger|\bsysctl\b[^;|]*kernel\.panic")),
    ("overwriting an account or boot file",
     re.compile(r"(?:>|\btee\b(?:\s+-a)?)\s*/etc/(?:passwd|shadow|group|gshadow|sudoers|fstab)\b")),
    ("erasing shell history",
     re.compile(r"\bhistory\s+-[cwd]|\bHISTFILE\b|\bHIST(?:FILE)?SIZE\s*=\s*0|\.bash_history|set\s+\+o\s+history")),
    ("tampering with system logs",
     re.compile(r"(?:>|\brm\b[^;|]*|\bshred\b[^;|]*|\btruncate\b[^;|]*)\s*/var/log/"
                r"(?:wtmp|btmp|lastlog|auth\.log|secure|messages|syslog|audit)\b")),
    ("--no-preserve-root", re.compile(r"--no-preserve-root")),
    ("SQL DROP", re.compile(r"\bdrop\s+(?:table|database|schema|user|tablespace|index|view|procedure|function|"
                            r"trigger)\b|\balter\s+table\s+\S+\s+drop\b", re.I)),
    ("SQL TRUNCATE", re.compile(r"\btruncate\s+table\b|\btruncate\s+(?![-/])[A-Za-z_][\w.]*\s*(?:;|$)", re.I)),
    ("SQL DELETE without WHERE", re.compile(r"\bdelete\s+from\s+[\w.]+\s*(?:;|$)", re.I)),
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
        text = re.sub(r"\$\{" + name + r"\}|\$" + name + r"\b", lambda _m, v=value: v, text)
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
    text = re.sub(r"[ \t\f\v]+", " ", text)
    text = re.sub(r"\s*\n\s*", " ; ", text).strip()
    if _depth < 3:
        for decoded in _base64_payloads(text):
            text += " ; " + normalise(decoded, _depth + 1)
    return text


# -- rules per command -----------------------------------------------------------------------
def _peel(tokens: list[str]) -> tuple[str, list[str], set[str]]:
    """Strip wrappers (sudo, env X=1, timeout 5, bash -c ...); return the command word, args, wrappers seen."""
    seen: set[str] = set()
    while tokens:
        word = tokens[0]
        base = posixpath.basename(word)
        if re.match(r"^[A-Za-z_]\w*=", word):
            tokens = tokens[1:]
        elif base in WRAPPERS:
            seen.add(base)
            tokens = tokens[1:]
            while tokens and (tokens[0].startswith("-") or re.fullmatch(r"\d+(?:\.\d+)?[smhd]?", tokens[0])):
                tokens = tokens[1:]
        elif base in SHELLS and len(tokens) > 1 and tokens[1].startswith("-") and "c" in tokens[1]:
            seen.add("shell -c")
            tokens = tokens[2:]
        else:
            break
    if not tokens:
        return "", [], seen
    return tokens[0], tokens[1:], seen


def _flags(args: list[str]) -> str:
    return "".join(a[1:] for a in args if a.startswith("-") and not a.startswith("--"))


def _dangerous_target(arg: str) -> bool:
    if arg in {"~", "~/", "*", ".", "..", ".*", "$HOME", "${HOME}"} or re.match(r"^\$\{?\w+\}?/", arg):
        return True
    if not arg.startswith(("/", "~")):
        return False
    path = re.sub(r"(/\*|/\.\*|/)+$", "", arg) or "/"
    return posixpath.normpath(path) in TOP_DIRS or path.startswith("~") and path in {"~", "~/*"}


def _judge(word: str, args: list[str], wrappers: set[str], segment: str) -> tuple[str, str] | None:
    name = posixpath.basename(word)
    flags = _flags(args)
    long = {a for a in args if a.startswith("--")}
    targets = [a for a in args if not a.startswith("-")]
    recursive = "r" in flags or "R" in flags or "--recursive" in long
    if name == "rm":
        if recursive and ("f" in flags or "--force" in long):
            return "recursive forced delete (rm -rf): use a cleanup playbook with a dry-run", segment
        if recursive and ("xargs" in wrappers or any(_dangerous_target(t) for t in targets)):
            return "recursive delete of a system directory, / or a wildcard", segment
        if any(CRITICAL_FILES.match(t) for t in targets):
            return "deleting an account or boot file", segment
    if name in {"chmod", "chown", "chgrp"}:
        if any(_dangerous_target(t) for t in targets[1:] if t) and (recursive or "/" in targets[1:]):
            return f"{name} on / or a system directory", segment
        if name == "chmod" and targets and re.fullmatch(r"[ugoa]*\+[rwx]*s[rwx]*|[2467][0-7]{3}", targets[0]):
            return "setting a setuid/setgid bit", segment
    if name == "find" and targets and _dangerous_target(targets[0]) and (
            "-delete" in args or any(a in {"-exec", "-execdir", "-ok"} for a in args) and "rm" in args):
        return "find deleting from / or a system directory", segment
    if name.startswith(("mkfs", "mke2fs", "mkswap", "wipefs", "fdisk", "sfdisk", "parted", "blkdiscard")):
        return "formatting or partitioning a disk", segment
    if name == "format":
        return "format", segment
    if name in {"shutdown", "reboot", "halt", "poweroff", "kexec"}:
        return "shutting down or rebooting the server", segment
    if name in {"init", "telinit"} and targets[:1] and targets[0] in {"0", "1", "6", "s", "S"}:
        return "changing the runlevel (halt/reboot)", segment
    if name == "systemctl":
        verbs = set(targets)
        if verbs & {"poweroff", "reboot", "halt", "kexec", "rescue", "emergency", "suspend", "hibernate",
                    "isolate", "default"}:
            return "shutting down or rebooting the server", segment
        if verbs & {"stop", "disable", "mask", "kill"} and verbs & {"sshd", "ssh", "sshd.service", "ssh.service",
                                                                    "firewalld", "auditd", "iptables"}:
            return "stopping remote access, the firewall or auditing", segment
    if name in {"kill", "pkill", "killall"} and ("-1" in args[-1:] or targets[-1:] == ["1"]) and name == "kill":
        return "killing every process or init", segment
    if name == "killall5":
        return "killing every process", segment
    if name in {"iptables", "ip6tables"} and (
            "F" in flags or "X" in flags or {"--flush", "--delete-chain"} & long or "P" in flags and "ACCEPT" in args):
        return "flushing or opening the firewall", segment
    if (name == "nft" and "flush" in targets) or (name == "ufw" and targets[:1] in (["disable"], ["reset"])):
        return "flushing or disabling the firewall", segment
    if name == "setenforce" and targets[:1] == ["0"]:
        return "disabling SELinux", segment
    if name == "crontab" and "r" in flags:
        return "removing every cron job (crontab -r)", segment
    if name == "mv" and (targets[-1:] == ["/dev/null"] or any(_dangerous_target(t) for t in targets[:-1])):
        return "moving a system directory away or into /dev/null", segment
    if name == "shred" and any(t.startswith("/dev/") or _dangerous_target(t) for t in targets):
        return "shredding a device or system directory", segment
    if name == "rsync" and "--delete" in " ".join(long) and targets and _dangerous_target(targets[-1]):
        return "rsync --delete into / or a system directory", segment
    if name == "passwd" and "d" in flags:
        return "removing a password", segment
    if name == "eval" or ("eval" in wrappers and re.search(r"\$\(|\$\{?\w", segment)):
        return "eval of generated text", segment
    if re.search(r"[?*\[]", word) and re.search(r"[A-Za-z/]", word):  # /???/r? is /bin/rm
        return "wildcard in a command name", segment
    return None


def check(command: str) -> None:
    """Raise SecurityViolation if the command (after normalisation) is destructive."""
    if not isinstance(command, str):
        raise SecurityViolation("command is not text", repr(type(command)))
    if "\x00" in command:
        raise SecurityViolation("NUL byte in command", "\\x00")
    text = normalise(command)
    for reason, pattern in TEXT_RULES:
        match = pattern.search(text)
        if match:
            raise SecurityViolation(reason, match.group(0).strip())
    for segment in SEPARATORS.split(text):
        tokens = segment.split()
        if not tokens:
            continue
        name, args, wrappers = _peel(tokens)
        if not name:
            continue
        verdict = _judge(name, args, wrappers, segment.strip())
        if verdict:
            raise SecurityViolation(*verdict)
