"""Fail at once, with the setup steps, when no Modal token is configured.

Standard library only, and run as a script (``python runner/modal_token.py``) so that it
imports nothing else: `make bench-modal` calls it before building the venv, importing
torch or modal, or talking to the network. It looks where the modal client looks:
MODAL_TOKEN_ID + MODAL_TOKEN_SECRET in the environment, else the profile named by
MODAL_PROFILE (or the one marked ``active``, or ``default``) in MODAL_CONFIG_PATH or
~/.modal.toml. It does not check that the token is valid: `modal run` says so itself.
"""

from __future__ import annotations

import os
import re
import sys
from collections.abc import Mapping

SETUP_HINT = """\
No Modal token found: `make bench-modal` runs the suite on Modal's H100s and needs one.
Set it up once, then run the same command again:
    .venv/bin/python -m modal setup       # opens a browser; or: python -m modal token new
or, in CI or a headless shell, export a token made at modal.com (Settings > API Tokens):
    export MODAL_TOKEN_ID=ak-...  MODAL_TOKEN_SECRET=as-...
Looked in: {looked}"""


def _read_profiles(text: str) -> dict[str, dict]:
    try:
        import tomllib  # Python >= 3.11
    except ModuleNotFoundError:  # Python 3.10: read [section] key = "value" lines
        profiles: dict[str, dict] = {}
        section = None
        for line in text.splitlines():
            line = line.strip()
            if m := re.fullmatch(r"\[\s*([^\]]+?)\s*\]", line):
                section = profiles.setdefault(m.group(1).strip("'\""), {})
            elif section is not None and (m := re.fullmatch(r"(\w+)\s*=\s*(.+)", line)):
                value = m.group(2).strip()
                section[m.group(1)] = (
                    value.strip("'\"") if value not in ("true", "false") else (value == "true")
                )
        return profiles
    try:
        return {k: v for k, v in tomllib.loads(text).items() if isinstance(v, dict)}
    except tomllib.TOMLDecodeError:
        return {}


def token_problem(environ: Mapping[str, str] = os.environ) -> str | None:
    """None when a token is configured, else the message that says how to set one up."""
    if environ.get("MODAL_TOKEN_ID") and environ.get("MODAL_TOKEN_SECRET"):
        return None
    home = environ.get("HOME") or os.path.expanduser("~")
    config_path = environ.get("MODAL_CONFIG_PATH") or os.path.join(home, ".modal.toml")
    looked = f"MODAL_TOKEN_ID/MODAL_TOKEN_SECRET (not both set), {config_path}"
    try:
        with open(config_path, encoding="utf-8") as f:
            profiles = _read_profiles(f.read())
    except OSError:
        return SETUP_HINT.format(looked=looked + " (no such file)")
    active = [name for name, values in profiles.items() if values.get("active") is True]
    name = environ.get("MODAL_PROFILE") or (active[0] if active else "default")
    profile = profiles.get(name, {})
    token_id = environ.get("MODAL_TOKEN_ID") or profile.get("token_id")
    token_secret = environ.get("MODAL_TOKEN_SECRET") or profile.get("token_secret")
    if token_id and token_secret:
        return None
    return SETUP_HINT.format(looked=f"{looked} (profile {name!r} has no token_id/token_secret)")


def main() -> int:
    problem = token_problem()
    if problem:
        print(problem, file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
