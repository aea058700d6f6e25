"""Where a run's Triton cache lives: one folder per Triton version and card (issue 20).

Triton keeps compiled kernels and autotuning results (``cache_results=True``,
kernels/tuning.py) under ``$TRITON_CACHE_DIR`` (default ``~/.triton/cache``), in folders
named by hashes of what they depend on:

- a compiled kernel: ``triton_key()`` (the hash of Triton's own frontend, compiler and
  backend files and libtriton: another Triton version misses), the target (backend
  ``cuda``, arch ``90``), the options and cache-invalidating ``TRITON_*`` variables, and
  ``JITFunction.cache_key``: the kernel's source, the sources of the jit functions it
  calls, its first line number and the constexpr globals it reads (a kernel edit misses);
- an autotuning result: the same kernel key and target, the tuning key's values and the
  candidate configs.

No file path or working folder enters them (the function's *module* name does, via its
dependencies' names, and is the same in every worktree), so the worktrees of
``make bench-history`` share every entry of a commit that does not touch ``kernels/``: the
second commit compiles and tunes nothing (tests/test_caches.py computes the keys of two
worktrees). But the target is the architecture, not the card: an H100 and an H200 are both
``cuda:90`` and would share autotuning results timed on the other card. So the runner puts
the cache in a folder of the Triton version and the card (:func:`triton_cache_dir`): the
default root locally, the Modal Volume in a container (modal_runner.py). A
``TRITON_CACHE_DIR`` set by the user is left alone.

Standard library only.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

TRITON_CACHE_ENV = "TRITON_CACHE_DIR"
DEFAULT_ROOT = Path("~/.cache/gradgrad-attention/triton")


def slug(text: str) -> str:
    """A folder-name-safe form of a version or card name ('NVIDIA H100 80GB HBM3' ->
    'NVIDIA-H100-80GB-HBM3')."""
    return re.sub(r"[^A-Za-z0-9._-]+", "-", str(text)).strip("-") or "unknown"


def triton_cache_dir(root: str | os.PathLike, triton_version: str, card: str) -> Path:
    """``root/<triton version>-<card>``: another Triton version or another card misses."""
    return Path(root) / f"{slug(triton_version)}-{slug(card)}"


def card_of(info: dict) -> str:
    """The card a machine file's info names (runner.machine.machine_info: ``gpu``), or the
    CPU's architecture on a machine without one (the interpreter compiles nothing)."""
    gpu = str(info.get("gpu") or "").strip()
    if gpu and gpu != "-":
        return gpu
    return f"cpu-{info.get('arch') or 'unknown'}"


def run_triton_dir(env: dict, info: dict, root: str | os.PathLike | None = None) -> str:
    """The TRITON_CACHE_DIR for a run's environment ``env`` (a user's own wins), from the
    machine file's ``info`` (triton version, card)."""
    if env.get(TRITON_CACHE_ENV):
        return env[TRITON_CACHE_ENV]
    root = Path(root) if root is not None else DEFAULT_ROOT.expanduser()
    return str(triton_cache_dir(root, str(info.get("triton") or "no-triton"), card_of(info)))


def scrub_triton_dir(path: str | os.PathLike, say=None) -> list[Path]:
    """Remove every entry of a Triton cache folder holding a JSON file that does not parse
    (an autotuning result, a kernel's metadata or its group file); the removed entry
    folders, each said with a warning through ``say``. Triton reads these with a bare
    ``json.load``: a corrupt one (a file cut short on a full disk, a Volume that lost a
    block) would raise out of the kernel launch and the mode would be recorded as FAILED;
    without the entry Triton compiles or tunes again. Triton writes every entry into a
    temporary folder and renames it, so a live writer's half-written file is never seen.
    Binary files (cubin) carry no checksum in Triton's format and are not checked."""
    import json
    import shutil

    root = Path(path)
    removed: list[Path] = []
    try:
        entries = [e for e in root.iterdir() if e.is_dir()]
    except OSError:
        return removed
    for entry in entries:
        for file in entry.glob("*.json"):
            try:
                json.loads(file.read_bytes())
            except (OSError, ValueError) as exc:
                why = f"{type(exc).__name__}: {str(exc)[:120]}"
                shutil.rmtree(entry, ignore_errors=True)
                removed.append(entry)
                if say is not None:
                    say(
                        f"warning: Triton cache entry {entry} removed ({file.name}: {why}); "
                        "it is compiled or tuned again"
                    )
                break
    return removed
