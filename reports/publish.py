"""`make publish`: asv's own HTML (`asv publish`) in report/asv_html, made to work offline.

asv 0.6.6's index.html loads jQuery, flot, stupidtable, md5 and bootstrap from CDNs and is
blank without network (docs/design.md trap 8). We publish, then copy the same libraries from
reports/vendor/asv/ (fetched from the npm registry, see reports/vendor/README.md) into
<html_dir>/vendor/ and point the page's <script>/<link> tags at them. Any CDN tag we do not
know fails loudly instead of leaving a page that silently needs the network.

asv's page reads its data (index.json, graphs/) with XHR, which browsers refuse on file://:
serve the folder locally (`python -m http.server -d report/asv_html`, or `asv preview`).
Our own report (report/html/index.html) needs no server.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

VENDOR_DIR = Path(__file__).resolve().parent / "vendor" / "asv"

# File name at the end of asv's CDN URL -> vendored file (relative to VENDOR_DIR).
# Byte-identical to the CDN files (asv's integrity hashes match): jQuery, bootstrap js/css,
# orderBars, md5. flot 0.8.3 is the npm package's unminified source of the same release;
# stupidtable is 1.1.3 (the npm package; cdnjs's 1.0.1 is not on npm), same API.
VENDORED = {
    "jquery-3.3.1.min.js": "jquery-3.3.1.min.js",
    "jquery.flot.min.js": "jquery.flot-0.8.3.js",
    "jquery.flot.time.min.js": "jquery.flot.time-0.8.3.js",
    "jquery.flot.selection.min.js": "jquery.flot.selection-0.8.3.js",
    "jquery.flot.categories.min.js": "jquery.flot.categories-0.8.3.js",
    "jquery.flot.orderBars.js": "jquery.flot.orderBars-1.0.0.js",
    "stupidtable.min.js": "stupidtable-1.1.3.min.js",
    "md5.min.js": "md5-2.19.0.min.js",
    "bootstrap.min.js": "bootstrap-3.1.1.min.js",
    "bootstrap.min.css": "css/bootstrap-3.1.1.min.css",
}

_SCRIPT = re.compile(r"<script\b[^>]*?\bsrc=\"(https?://[^\"]+)\"[^>]*>\s*</script>", re.I)
_LINK = re.compile(r"<link\b[^>]*?\bhref=\"(https?://[^\"]+)\"[^>]*>", re.I)
_REMOTE_LOAD = re.compile(
    r"<(?:script|link|img|iframe)\b[^>]*?\b(?:src|href)=\"(https?://[^\"]+)\"", re.I
)


class UnvendoredAsset(RuntimeError):
    pass


def _vendored(url: str) -> str:
    name = url.rstrip("/").rsplit("/", 1)[-1]
    if name not in VENDORED:
        raise UnvendoredAsset(
            f"asv's page loads {url}, which reports/vendor/asv/ lacks: vendor it "
            "(reports/vendor/README.md) and add it to reports/publish.py VENDORED"
        )
    return "vendor/" + VENDORED[name]


def make_offline(html_dir: Path) -> list[str]:
    """Rewrite <html_dir>/index.html to load vendored copies; returns the replaced URLs."""
    index = html_dir / "index.html"
    page = index.read_text(encoding="utf-8")
    replaced: list[str] = []

    def script(m: re.Match) -> str:
        replaced.append(m.group(1))
        return f'<script src="{_vendored(m.group(1))}"></script>'

    def link(m: re.Match) -> str:
        tag = m.group(0)
        if not re.search(r"rel=\"?stylesheet", tag, re.I):
            return tag  # e.g. rel=alternate feeds: not loaded by the page
        replaced.append(m.group(1))
        return f'<link rel="stylesheet" href="{_vendored(m.group(1))}">'

    page = _LINK.sub(link, _SCRIPT.sub(script, page))
    for m in _REMOTE_LOAD.finditer(page):
        if not m.group(0).lower().startswith("<link") or "stylesheet" in m.group(0).lower():
            raise UnvendoredAsset(f"{index} still loads {m.group(1)}")
    target = html_dir / "vendor"
    if target.exists():
        shutil.rmtree(target)
    shutil.copytree(VENDOR_DIR, target, ignore=shutil.ignore_patterns("licenses"))
    shutil.copytree(VENDOR_DIR / "licenses", target / "licenses")
    index.write_text(page, encoding="utf-8")
    return replaced


def publish(html_dir: Path, config: Path) -> int:
    if not config.is_file():
        print(
            f"error: {config} not found: `asv publish` needs the asv config of the suite "
            "(bench_suite issue); pass --config",
            file=sys.stderr,
        )
        return 2
    # asv publish empties html_dir first (docs/design.md trap 8): never point it at
    # report/html, nor at a folder holding it (report/ itself).
    own = (Path("report") / "html").resolve()
    if html_dir.resolve() == own or html_dir.resolve() in own.parents:
        print("error: asv publish would wipe our own report in report/html", file=sys.stderr)
        return 2
    cmd = [
        sys.executable,
        "-m",
        "asv",
        "publish",
        "--config",
        str(config),
        "--html-dir",
        str(html_dir),
    ]
    proc = subprocess.run(cmd)
    if proc.returncode != 0:
        print(f"error: {' '.join(cmd)} exited {proc.returncode}", file=sys.stderr)
        return proc.returncode
    try:
        replaced = make_offline(html_dir)
    except UnvendoredAsset as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(f"{html_dir}/index.html: {len(replaced)} CDN assets replaced by vendored copies")
    print(f"view offline: python -m http.server -d {html_dir} 8080, then http://127.0.0.1:8080")
    return 0
