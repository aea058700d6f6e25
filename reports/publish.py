"""`make publish`: asv's own HTML (`asv publish`) in report/asv_html, made to work offline.

asv 0.6.6's index.html loads jQuery, flot, stupidtable, md5 and bootstrap from CDNs and is
blank without network (docs/design.md trap 8). We publish, then copy the same libraries from
reports/vendor/asv/ (fetched from the npm registry, see reports/vendor/README.md) into
<html_dir>/vendor/ and point the page's <script>/<link> tags at them. Any CDN tag we do not
know fails loudly instead of leaving a page that silently needs the network.

asv's page reads its data (index.json, graphs/) with XHR, which browsers refuse on file://
(a CORS error, a blank graph): `make serve` serves the folder on http://127.0.0.1:8080
(``serve_command``), and publish says so. Our own report (report/html/index.html) needs no
server.

asv's graphs start with every machine selected (h100, its A/A repeat and the -x2 pair on one
plot, the legend over it): ``set_default_machine`` makes them start with one
(``default_machine``: the machine with the most result files, A/A repeats and CPU machines
last); the machine buttons still add the others.
"""

from __future__ import annotations

import json
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


SERVE_PORT = 8080
# asv 0.6's graphdisplay.js: the graph's first state (setup_benchmark_params) selects every
# value of every parameter, machines included; the end of that loop is where one is picked
# (before a URL's own selection, which still wins).
_ALL_MACHINES = """                        state[param] = [values[0]];
                    }
                }
            });
"""


def serve_command(html_dir: Path, port: int = SERVE_PORT) -> str:
    return f"make serve  (python -m http.server -d {html_dir} -b 127.0.0.1 {port})"


def _config(config: Path) -> dict:
    """asv.conf.json (full-line // comments, as runner/asv_run.py reads it)."""
    lines = [ln for ln in config.read_text(encoding="utf-8").splitlines()]
    return json.loads("\n".join(ln for ln in lines if not ln.lstrip().startswith("//")))


def default_machine(results_dir: Path) -> str | None:
    """The machine asv's graphs start on: the most result files; A/A repeats (-aa) and CPU
    machines (cpu-*) only when there is nothing else; ties by name."""
    from reports import metrics

    counts = {}
    for d in sorted(results_dir.iterdir()) if results_dir.is_dir() else []:
        if d.is_dir() and (d / "machine.json").is_file():
            n = sum(1 for f in d.glob("*.json") if f.name != "machine.json")
            counts[d.name] = n
    if not counts:
        return None

    def rank(name: str):
        demoted = metrics.is_aa_machine(name) or name.startswith("cpu-")
        return (demoted, -counts[name], name)

    return min(counts, key=rank)


def set_default_machine(html_dir: Path, machine: str | None) -> bool:
    """Patch the published graphdisplay.js so that a graph starts with ``machine`` only (when
    asv knows it); False when the page has no such line (another asv version)."""
    js = html_dir / "graphdisplay.js"
    if machine is None or not js.is_file():
        return False
    code = js.read_text(encoding="utf-8")
    if _ALL_MACHINES not in code:
        return False
    pick = json.dumps(machine)
    code = code.replace(
        _ALL_MACHINES,
        _ALL_MACHINES
        + f"            if (state.machine.indexOf({pick}) >= 0) {{ state.machine = [{pick}]; }}"
        "  // reports/publish.py: one machine by default\n",
        1,
    )
    js.write_text(code, encoding="utf-8")
    return True


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
    try:
        results_dir = config.parent / _config(config).get("results_dir", "results")
    except (OSError, ValueError):
        results_dir = config.parent / "results"
    machine = default_machine(results_dir)
    if set_default_machine(html_dir, machine):
        print(f"graphs start on machine {machine} (the machine buttons add the others)")
    print(
        "asv's page reads its data over HTTP, not from file:// (a CORS error, blank graphs): "
        f"view it with\n  {serve_command(html_dir)}\nthen open http://127.0.0.1:{SERVE_PORT}/"
    )
    return 0
