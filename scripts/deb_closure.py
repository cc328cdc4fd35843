"""Print `package version architecture` for the given Debian packages and everything they depend on, as
installed on this machine (the build host is the reference Debian 12 system).

Alternatives (`a | b`) and virtual packages resolve to the one that is installed here, so the
set is one that dpkg has already accepted together; packages every Debian system has
(Essential: yes, or priority required) are left out. Used by scripts/bundle.sh.

    python3 scripts/deb_closure.py openssh-server redis-server ...
"""

from __future__ import annotations

import re
import subprocess
import sys

FIELDS = (
    "${Package}\t${Version}\t${Architecture}\t${Pre-Depends}, ${Depends}\t${Priority}\t${Essential}\t${Provides}"
    "\t${Status}\n"
)


def installed() -> tuple[dict[str, dict], dict[str, str]]:
    out = subprocess.run(["dpkg-query", "-W", "-f", FIELDS], capture_output=True, text=True, check=True).stdout
    packages: dict[str, dict] = {}
    provides: dict[str, str] = {}
    for line in out.splitlines():
        name, version, arch, depends, priority, essential, provided, status = line.split("\t")
        if not status.endswith(" installed"):
            continue
        packages[name] = {
            "version": version,
            "arch": arch,
            "depends": depends,
            "base": essential == "yes" or priority == "required",
        }
        for item in filter(None, (p.strip() for p in provided.split(","))):
            provides.setdefault(item.split()[0], name)
    return packages, provides


def alternatives(depends: str) -> list[list[str]]:
    groups = []
    for group in depends.split(","):
        names = [re.split(r"[\s(:]", alt.strip(), maxsplit=1)[0] for alt in group.split("|")]
        names = [n for n in names if n]
        if names:
            groups.append(names)
    return groups


def closure(roots: list[str]) -> list[str]:
    packages, provides = installed()
    seen: set[str] = set()
    todo = list(roots)
    while todo:
        name = todo.pop()
        name = name if name in packages else provides.get(name, "")
        if not name or name in seen:
            continue
        seen.add(name)
        for group in alternatives(packages[name]["depends"]):
            chosen = next((n for n in group if n in packages), None) or next(
                (provides[n] for n in group if n in provides), None
            )
            if chosen:
                todo.append(chosen)
    missing = [r for r in roots if r not in packages and r not in provides]
    if missing:
        sys.exit(f"not installed on the build host: {' '.join(missing)}")
    return sorted(f"{n} {packages[n]['version']} {packages[n]['arch']}" for n in seen if not packages[n]["base"])


if __name__ == "__main__":
    print("\n".join(closure(sys.argv[1:])))
