"""The slice of the CMDB the parser matches against, as plain Python.

Built once per request from the caller's systems (``Catalog.for_user``), or from a JSON
fixture for the evaluation set (``Catalog.from_dict``), so the parser itself never touches
the database and runs thousands of times a second.

Every name is also kept in a *compact* form (lower case, no whitespace, no hyphens or dots):
field requests are typed in a hurry and "예산 시스템", "예산시스템" and "예산-시스템" are the
same thing.
"""

from __future__ import annotations

import functools
import re
import unicodedata
from dataclasses import dataclass, field

# A server's role and ordinal, read from its id or host name: budget-was01 -> ("was", 1).
ROLE_ALIASES = {
    "was": "was",
    "web": "web",
    "ws": "web",
    "db": "db",
    "dbms": "db",
    "ap": "was",
    "app": "was",
    "api": "api",
    "batch": "batch",
    "bat": "batch",
    "mq": "mq",
    "lb": "lb",
    "if": "if",
}
_ROLE_IN_NAME = re.compile(r"(?:^|[^a-z])(dbms|batch|was|web|app|api|bat|ws|db|ap|mq|lb|if)[-_]?0*(\d{1,3})(?![0-9])")
_TRAILING_NUMBER = re.compile(r"0*(\d{1,3})$")
_SEPARATORS = re.compile(r"[\s\-_.·/()\u2010-\u2015\u2212]+")  # OCR reads hyphens as dashes


def compact(text: str) -> str:
    """Lower case, NFC, and no separators: the form names are compared in."""
    return _SEPARATORS.sub("", unicodedata.normalize("NFKC", text).lower())


_INITIALS = "ㄱㄲㄴㄷㄸㄹㅁㅂㅃㅅㅆㅇㅈㅉㅊㅋㅌㅍㅎ"
_MEDIALS = "ㅏㅐㅑㅒㅓㅔㅕㅖㅗㅘㅙㅚㅛㅜㅝㅞㅟㅠㅡㅢㅣ"
_FINALS = " ㄱㄲㄳㄴㄵㄶㄷㄹㄺㄻㄼㄽㄾㄿㅀㅁㅂㅄㅅㅆㅇㅈㅊㅋㅌㅍㅎ"


@functools.lru_cache(maxsize=8192)
def jamo(text: str) -> str:
    """Hangul syllables split into their letters: a one-letter typo ("나이쓰" for "나이스",
    "재싲작" for "재시작") then costs one letter of similarity, not a whole syllable."""
    out = []
    for ch in text:
        code = ord(ch) - 0xAC00
        if 0 <= code < 11172:
            out.append(_INITIALS[code // 588])
            out.append(_MEDIALS[(code % 588) // 28])
            if code % 28:
                out.append(_FINALS[code % 28])
        else:
            out.append(ch)
    return "".join(out)


def role_and_number(*names: str) -> tuple[str, int | None]:
    for name in names:
        match = _ROLE_IN_NAME.search(name.lower())
        if match:
            return ROLE_ALIASES[match.group(1)], int(match.group(2))
    for name in names:
        match = _TRAILING_NUMBER.search(name)
        if match:
            return "", int(match.group(1))
    return "", None


@dataclass(frozen=True)
class ServerRef:
    server_id: str
    hostname: str
    system: str
    role: str
    number: int | None
    active: bool = True


@dataclass
class SystemRef:
    code: str
    name: str
    institution: str
    servers: list[ServerRef] = field(default_factory=list)
    in_scope: bool = True
    keys: list[str] = field(default_factory=list)  # compact names that name this system

    def active_servers(self) -> list[ServerRef]:
        return [s for s in self.servers if s.active]


@dataclass
class InstitutionRef:
    code: str
    name: str
    aliases: list[str]
    keys: list[str] = field(default_factory=list)


_SYSTEM_SUFFIXES = ("시스템", "system", "서비스", "포털", "portal", "sys")


def system_keys(name: str, code: str) -> list[str]:
    keys = {compact(name)}
    base = compact(name)
    for suffix in _SYSTEM_SUFFIXES:
        if base.endswith(suffix) and len(base) - len(suffix) >= 2:
            keys.add(base[: -len(suffix)])
    keys.add(compact(code))
    # The code's parts after the institution prefix name the system in English: MOEF-BUDGET -> budget.
    for part in re.split(r"[-_]", code.lower())[1:]:
        if len(part) >= 3 and not part.isdigit():
            keys.add(part)
    return sorted((k for k in keys if len(k) >= 2), key=len, reverse=True)


@dataclass
class Catalog:
    institutions: dict[str, InstitutionRef]
    systems: dict[str, SystemRef]

    def __post_init__(self) -> None:
        for inst in self.institutions.values():
            inst.keys = sorted(
                {compact(x) for x in [inst.name, inst.code, *inst.aliases] if len(compact(x)) >= 2},
                key=len,
                reverse=True,
            )
        for system in self.systems.values():
            system.keys = system_keys(system.name, system.code)
        self.server_index = {compact(s.server_id): s for sys in self.systems.values() for s in sys.servers}
        self.server_index.update(
            {compact(s.hostname): s for sys in self.systems.values() for s in sys.servers if s.hostname}
        )

    def systems_of(self, institution: str) -> list[SystemRef]:
        return [s for s in self.systems.values() if s.institution == institution]

    @classmethod
    def from_dict(cls, data: dict, scope: set[str] | None = None) -> Catalog:
        """``{"institutions": [{code, name, aliases}], "systems": [{code, name, institution,
        servers: [{server_id, hostname?, active?}]}]}``; servers may also be listed at the top
        level with a ``system`` each, and aliases given as a list or a "a|b" / "a,b" string.
        ``scope`` is the system codes the caller may use (all when None)."""
        institutions = {}
        for row in data.get("institutions", []):
            aliases = row.get("aliases") or []
            if isinstance(aliases, str):
                aliases = [a.strip() for a in re.split(r"[|,]", aliases) if a.strip()]
            institutions[row["code"]] = InstitutionRef(row["code"], row["name"], list(aliases))
        loose: dict[str, list[dict]] = {}
        for row in data.get("servers", []):
            loose.setdefault(row.get("system") or row.get("system_code", ""), []).append(row)
        systems: dict[str, SystemRef] = {}
        for s in data.get("systems", []):
            code = s.get("code") or s["system_code"]
            servers = []
            for row in [*s.get("servers", []), *loose.get(code, [])]:
                role, number = role_and_number(row["server_id"], row.get("hostname", ""))
                servers.append(
                    ServerRef(
                        row["server_id"], row.get("hostname", ""), code, role, number, bool(row.get("active", True))
                    )
                )
            institution = s.get("institution") or s.get("institution_code", "")
            systems[code] = SystemRef(code, s["name"], institution, servers, in_scope=scope is None or code in scope)
        return cls(institutions, systems)

    @classmethod
    def for_user(cls, user) -> Catalog:
        """Every system, each marked whether the caller may file for it: a request that names
        another institution's system is refused as such (403), not mistaken for a typo."""
        from cmdb.models import Institution, Server, System

        scope = set(System.objects.for_user(user).values_list("code", flat=True))
        institutions = {
            i.code: InstitutionRef(i.code, i.name, i.alias_list)
            for i in Institution.objects.only("code", "name", "aliases")
        }
        systems = {
            s.code: SystemRef(s.code, s.name, s.institution.code, [], in_scope=s.code in scope)
            for s in System.objects.select_related("institution").only("code", "name", "institution__code")
        }
        for row in Server.objects.values("server_id", "hostname", "system__code", "active"):
            role, number = role_and_number(row["server_id"], row["hostname"])
            system = systems.get(row["system__code"])
            if system is not None:
                system.servers.append(
                    ServerRef(row["server_id"], row["hostname"], system.code, role, number, row["active"])
                )
        return cls(institutions, systems)
