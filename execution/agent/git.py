"""git, as GUARDiA runs it on a repository an agent has had its hands in.

Every call names the git directory and the work tree explicitly (never trusting a ``.git``
file the agent could have rewritten), ignores the user's and the system's git
configuration, and switches off what could run code: hooks, fsmonitor, external diff
drivers and textconv. ``safe.directory=*`` because the worktree belongs to the agent's
account while GUARDiA reads it.
"""

from __future__ import annotations

import os
import subprocess
from dataclasses import dataclass
from pathlib import Path

GIT_SAFETY = [
    "-c",
    "safe.directory=*",
    "-c",
    "core.hooksPath=/dev/null",
    "-c",
    "core.fsmonitor=false",
    "-c",
    "core.symlinks=true",
    "-c",
    "diff.external=",
    "-c",
    "user.name=GUARDiA",
    "-c",
    "user.email=guardia@localhost",
]
GUARDIA_DIR = ".guardia"  # context.md and result.json: GUARDiA's, never part of the change


class GitError(RuntimeError):
    pass


def _env() -> dict[str, str]:
    return {
        "PATH": "/usr/local/bin:/usr/bin:/bin",
        "LANG": "C.UTF-8",
        "HOME": "/nonexistent",
        "GIT_CONFIG_NOSYSTEM": "1",
        "GIT_CONFIG_GLOBAL": os.devnull,
        "GIT_TERMINAL_PROMPT": "0",
    }


def git(*args: str, cwd: Path | str | None = None, git_dir: Path | None = None, work_tree: Path | None = None) -> str:
    command = ["git", *GIT_SAFETY]
    if git_dir is not None:
        command += [f"--git-dir={git_dir}"]
    if work_tree is not None:
        command += [f"--work-tree={work_tree}"]
    done = subprocess.run(
        [*command, *args], cwd=cwd, env=_env(), capture_output=True, timeout=120, check=False, stdin=subprocess.DEVNULL
    )
    if done.returncode != 0:
        raise GitError(f"git {' '.join(args[:2])}: {done.stderr.decode('utf-8', 'replace').strip()[:500]}")
    return done.stdout.decode("utf-8", "replace")


@dataclass
class Worktree:
    repository: Path
    path: Path
    git_dir: Path  # the worktree's own git directory inside the repository's .git
    branch: str

    def run(self, *args: str) -> str:
        return git(*args, cwd=self.path, git_dir=self.git_dir, work_tree=self.path)


def resolve(repository: Path, ref: str) -> str:
    return git("rev-parse", "--verify", "--end-of-options", f"{ref}^{{commit}}", cwd=repository).strip()


def add_worktree(repository: Path, path: Path, branch: str, start: str) -> Worktree:
    git("worktree", "add", "--quiet", "-b", branch, str(path), start, cwd=repository)
    pointer = (path / ".git").read_text().strip()
    if not pointer.startswith("gitdir: "):
        raise GitError(f"unexpected worktree pointer in {path}/.git")
    return Worktree(repository, path, Path(pointer[len("gitdir: ") :]), branch)


@dataclass
class Change:
    status: str  # A / M / D / R / C / T
    path: str
    old_path: str = ""
    mode: str = ""  # new mode: 100644, 100755, 120000 (symlink), 160000 (submodule)


def stage_and_diff(tree: Worktree, base: str) -> tuple[list[Change], str]:
    """Stage everything the agent left (its own files excluded) and return the changes
    against ``base`` with their unified diff: computed by git, not taken from the agent."""
    tree.run("add", "--all", "--", ".", f":(exclude){GUARDIA_DIR}")
    raw = tree.run("diff", "--cached", "--raw", "-z", "-M", "--no-abbrev", base)
    changes: list[Change] = []
    fields = raw.split("\0")
    i = 0
    while i < len(fields) - 1:
        meta = fields[i].split()
        if not meta:
            i += 1
            continue
        status, new_mode = meta[-1][0], meta[1]
        if status in "RC":
            changes.append(Change(status, fields[i + 2], fields[i + 1], new_mode))
            i += 3
        else:
            changes.append(Change(status, fields[i + 1], "", new_mode))
            i += 2
    diff = tree.run("diff", "--cached", "--no-color", "--no-ext-diff", "--no-textconv", "-M", base)
    return changes, diff


def commit(tree: Worktree, message: str) -> str:
    tree.run("commit", "--quiet", "--no-verify", "--allow-empty", "-m", message)
    return tree.run("rev-parse", "HEAD").strip()


def repository_state(repository: Path, own_branch_prefix: str) -> dict[str, str]:
    """What must not change while the agent works: the repository's own working tree and
    index, its HEAD and every ref except the task's own branches."""
    refs = git("for-each-ref", "--format=%(refname) %(objectname)", cwd=repository).splitlines()
    return {
        "status": git("status", "--porcelain=v1", "--untracked-files=all", cwd=repository),
        "head": git("rev-parse", "HEAD", cwd=repository).strip(),
        "refs": "\n".join(line for line in refs if not line.startswith(f"refs/heads/{own_branch_prefix}")),
    }
