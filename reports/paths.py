"""Names from result files made safe as file names, and every written path kept under the
output folder.

Machine names (asv's ``params.machine``, else the results folder) and benchmark families come
from the result files, which anyone can write: ``../../x``, ``/tmp/x`` or ``a/b`` must not
pick where the report writes. ``slug`` turns any name into one path component; ``inside``
refuses a path that resolves outside the output folder (a symlink planted there included).
"""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

# One path component, no leading dot: what the committed machine names already are.
SAFE_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9._-]{0,99}")
_UNSAFE_RUN = re.compile(r"[^A-Za-z0-9._-]+")


class PathEscape(ValueError):
    """A path to be written resolves outside the output folder."""


def is_safe_name(name: str) -> bool:
    return isinstance(name, str) and SAFE_NAME.fullmatch(name) is not None


def slug(name: str) -> str:
    """``name`` itself when it is a safe file name, else its safe characters (runs of
    others -> '_', no leading dots or '_') and a short hash of the original, so that two
    unsafe names never share a slug: '../../etc' -> 'etc-1f2e3d4c'."""
    name = str(name)
    if is_safe_name(name):
        return name
    digest = hashlib.sha256(name.encode("utf-8", "surrogatepass")).hexdigest()[:8]
    stem = _UNSAFE_RUN.sub("_", name).strip("._-")[:80]
    return f"{stem}-{digest}" if stem else f"name-{digest}"


def inside(root: Path, path: Path) -> Path:
    """``path`` when it resolves inside ``root``; PathEscape otherwise."""
    base = Path(root).resolve()
    target = Path(path).resolve()
    if target != base and base not in target.parents:
        raise PathEscape(f"{path} resolves outside the output folder {root}")
    return path
