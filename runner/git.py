"""The runner's one git helper: commands, commits, ranges and the one worktree manager.

Standard library only (reports/regress.py imports it too).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
from contextlib import contextmanager
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]


class GitError(ValueError):
    """A git command failed (not a repository, an unknown ref, ...)."""


def git(*args: str, repo: str | os.PathLike = REPO_ROOT, timeout: float | None = None) -> str:
    """``git -C repo args...`` -> its stdout, stripped; GitError with git's message if it fails."""
    try:
        proc = subprocess.run(
            ["git", "-C", str(repo), *args], capture_output=True, text=True, timeout=timeout
        )
    except (OSError, subprocess.SubprocessError) as exc:
        raise GitError(f"git {' '.join(args)}: {exc}") from None
    if proc.returncode != 0:
        raise GitError(f"git {' '.join(args)}: {proc.stderr.strip()}")
    return proc.stdout.strip()


def resolve_commit(ref: str, repo: str | os.PathLike = REPO_ROOT) -> str:
    """A ref (HEAD, a branch, a hash prefix) -> the full hash; GitError if it is no commit."""
    try:
        return git("rev-parse", "--verify", f"{ref}^{{commit}}", repo=repo, timeout=30)
    except GitError as exc:
        msg = f"not a commit in {repo} (a git checkout is needed): {ref!r} ({exc})"
        raise GitError(msg) from None


def resolve_commits(spec: str, repo: str | os.PathLike = REPO_ROOT) -> list[str]:
    """``HEAD``, ``A..B`` (git's meaning: in B, not in A; oldest first) or a comma/space
    separated list of refs -> full hashes."""
    spec = spec.strip()
    if not spec:
        raise GitError("no commits given (use HEAD, A..B or a list)")
    if ".." in spec:
        hashes = git("rev-list", "--reverse", spec, repo=repo).split()
        if not hashes:
            raise GitError(f"commit range {spec!r} is empty")
        return hashes
    return [resolve_commit(c, repo) for c in re.split(r"[,\s]+", spec)]


def subject(sha: str, repo: str | os.PathLike = REPO_ROOT) -> str:
    return git("log", "-1", "--format=%s", sha, repo=repo)


def dirty(src: str | os.PathLike, *paths: str) -> bool:
    """Whether ``paths`` of the checkout ``src`` have uncommitted changes."""
    return bool(git("status", "--porcelain", "--", *paths, repo=src))


@contextmanager
def worktree(sha: str, repo: str | os.PathLike = REPO_ROOT):
    """``git worktree add --detach`` of a commit at <repo>/.asv/worktrees/<sha8>-<random>,
    removed on exit (a folder of its own: parallel runs of one commit never share one)."""
    parent = Path(repo) / ".asv" / "worktrees"
    parent.mkdir(parents=True, exist_ok=True)
    path = Path(tempfile.mkdtemp(prefix=f"{sha[:8]}-", dir=parent))
    try:
        git("worktree", "add", "--detach", "--force", str(path), sha, repo=repo)
        yield path
    finally:
        subprocess.run(
            ["git", "-C", str(repo), "worktree", "remove", "--force", str(path)],
            capture_output=True,
        )
        shutil.rmtree(path, ignore_errors=True)
        subprocess.run(["git", "-C", str(repo), "worktree", "prune"], capture_output=True)
