"""A self-contained static HTML report: no script, no CDN, no network at view time.

One page, ``<out>/html/index.html``: summary of each machine's latest results (per preset,
the newest commit that measured it: tables.latest_rows_per_class), regressions
(vs the previous commit, and the newest commit vs a baseline) linking to the commit, the
plots (referenced relatively, ../plots/<machine>/*.png, or embedded as data URIs), one
section per benchmark, the list of commits and the thresholds used. Inline CSS only.
"""

from __future__ import annotations

import base64
import html
import os
import re
import subprocess
from pathlib import Path

import pandas as pd

from reports import metrics, peaks, regress, tables

MAX_REGRESSION_ROWS = 300  # history tables beyond this are cut (the CSV has them all)
MAX_BENCHMARK_SECTIONS = 1000  # per-benchmark sections (the suite has ~100)
MAX_SUMMARY_ROWS = 3000  # rows of a machine's summary table (the suite makes ~400)
STATUS_CLASS = {
    regress.REGRESSION: "bad",
    regress.FAILED: "bad",
    regress.IMPROVEMENT: "good",
    regress.NOISE: "noise",
}

CSS = """
body { font-family: system-ui, sans-serif; margin: 1.5em; color: #222; max-width: 1400px; }
h1 { font-size: 1.5em; } h2 { border-bottom: 1px solid #ccc; margin-top: 2em; }
h3 { margin-top: 1.5em; font-size: 1.05em; } h4 { margin: 1em 0 0.3em; font-size: 0.95em; }
table { border-collapse: collapse; font-size: 0.85em; margin: 0.4em 0 1em; }
th, td { border: 1px solid #ddd; padding: 2px 6px; text-align: right; white-space: nowrap; }
th { background: #f3f3f3; } td.l, th.l { text-align: left; }
tr.math td { background: #fafafa; } .bad { background: #fde0dc; } .good { background: #e0f3e0; }
.noise { color: #888; } .win { color: #1a7f37; font-weight: 600; }
.loss { color: #b42318; font-weight: 600; }
img { max-width: 100%; border: 1px solid #eee; margin: 0.3em 0; }
nav a { margin-right: 1em; } code { font-size: 0.95em; } .muted { color: #777; }
"""


def github_commit_url(repo: str | Path | None) -> str | None:
    """'https://github.com/<owner>/<name>/commit/{commit}' from `git remote get-url origin`."""
    if repo is None:
        return None
    try:
        url = subprocess.run(
            ["git", "-C", str(repo), "remote", "get-url", "origin"],
            capture_output=True,
            text=True,
            timeout=30,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    m = re.match(r"^(?:https?://|git@|ssh://git@)github\.com[:/]([^/]+)/(.+?)(?:\.git)?/?$", url)
    if not m:
        return None
    return f"https://github.com/{m.group(1)}/{m.group(2)}/commit/{{commit}}"


def _e(x) -> str:
    return html.escape(str(x), quote=True)


def _num(x, spec=".4g") -> str:
    return tables.fmt(x, spec)


def _anchor(name: str) -> str:
    return "b-" + re.sub(r"[^A-Za-z0-9_.-]", "_", name)


class CommitLinks:
    """Renders a commit id as a link: the configured URL format, else the Commits section."""

    def __init__(self, url_format: str | None):
        self.url_format = url_format

    def __call__(self, commit: str) -> str:
        short = _e(str(commit)[:8])
        if not isinstance(commit, str) or not commit:
            return "n/a"
        href = (
            self.url_format.format(commit=commit, short=commit[:8])
            if self.url_format
            else f"#commit-{commit[:8]}"
        )
        return f'<a href="{_e(href)}"><code>{short}</code></a>'


def _summary_table(table: pd.DataFrame, peak: float | None, link: CommitLinks | None = None) -> str:
    """One row per (family, preset, config, mode). With ``link``, a commit column names the
    commit each row was measured at (the latest view spans several commits)."""
    commit_col = link is not None and "commit" in table
    head = (
        "<tr><th class=l>family</th><th class=l>preset</th><th class=l>config</th>"
        + ("<th class=l>commit</th>" if commit_col else "")
        + "<th class=l>mode</th><th>ms</th><th>speedup vs math</th><th>win/loss</th>"
        "<th>peak MiB</th><th>MiB vs math</th><th>TFLOP/s</th>"
        f"<th>% of {_num(peak, '.0f')} peak</th><th>parity</th><th>host ms</th></tr>"
    )
    rows = []
    for r in table.head(MAX_SUMMARY_ROWS).itertuples(index=False):
        wl = r.win_loss
        cls = "math" if r.bwd_mode == tables.BASELINE_MODE else ""
        rows.append(
            f"<tr class='{cls}'><td class=l>{_e(r.family)}</td><td class=l>{_e(r.preset)}</td>"
            f"<td class=l>{_e(r.config)}</td>"
            + (f"<td class=l>{link(r.commit)}</td>" if commit_col else "")
            + f"<td class=l>{_e(r.bwd_mode)}</td>"
            f"<td>{_num(r.ms)}</td><td>{_num(r.speedup, '.2f')}x</td>"
            f"<td class='{wl if wl in ('win', 'loss') else ''}'>{_e(wl)}</td>"
            f"<td>{_num(r.peak_mib, '.0f')}</td><td>{_num(r.mem_ratio, '.2f')}x</td>"
            f"<td>{tables.fmt_tflops(r.tflops)}</td><td>{_num(r.pct_peak, '.1f')}</td>"
            f"<td>{_num(r.parity, '.2f')}</td><td>{_num(r.host_ms)}</td></tr>"
        )
    more = (
        f"<p class=muted>{len(table) - MAX_SUMMARY_ROWS} more rows in data/all_results.csv.</p>"
        if len(table) > MAX_SUMMARY_ROWS
        else ""
    )
    return f"<table class='summary'>{head}{''.join(rows)}</table>{more}"


def _changes_table(changes: pd.DataFrame, link: CommitLinks, limit: int) -> str:
    if changes.empty:
        return "<p class=muted>None.</p>"
    shown = changes.head(limit)
    head = (
        "<tr><th class=l>status</th><th class=l>machine</th><th class=l>commit</th>"
        "<th class=l>vs</th><th class=l>benchmark</th><th class=l>params</th><th>old</th>"
        "<th>new</th><th class=l>unit</th><th>change</th><th>threshold</th></tr>"
    )
    rows = []
    for r in shown.itertuples(index=False):
        cls = STATUS_CLASS.get(r.status, "")
        rows.append(
            f"<tr class='{cls}'><td class=l>{_e(r.status)}</td><td class=l>{_e(r.machine)}</td>"
            f"<td class=l>{link(r.commit_new)}</td><td class=l>{link(r.commit_old)}</td>"
            f"<td class=l><a href='#{_anchor(r.benchmark)}'>{_e(r.benchmark)}</a></td>"
            f"<td class=l>{_e(r.params)}</td><td>{_num(r.value_old)}</td>"
            f"<td>{_num(r.value_new)}</td><td class=l>{_e(r.unit)}</td>"
            f"<td>{_num(r.change_pct, '+.1f')}%</td><td>{_num(r.threshold_pct, '.1f')}%</td></tr>"
        )
    more = (
        f"<p class=muted>{len(changes) - limit} more rows in data/changes.csv.</p>"
        if len(changes) > limit
        else ""
    )
    return f"<table class='regressions'>{head}{''.join(rows)}</table>{more}"


def _image_tag(path: Path, html_dir: Path, embed: bool, alt: str) -> str:
    if embed:
        data = base64.b64encode(path.read_bytes()).decode("ascii")
        src = f"data:image/png;base64,{data}"
    else:
        src = Path(os.path.relpath(path, html_dir)).as_posix()
    return f'<img src="{_e(src)}" alt="{_e(alt)}">'


def _invalid_list(latest: pd.DataFrame, limit: int = 50) -> str:
    """The latest view's values that are not valid measurements (shown as n/a in the table)."""
    if "invalid" not in latest:
        return ""
    bad = latest[latest["invalid"].astype(bool)].sort_values(["benchmark", "params"])
    if bad.empty:
        return ""
    items = "".join(
        f"<li><code>{_e(r.benchmark)}</code> {_e(r.params)}: <b>invalid</b> {_e(r.invalid)}</li>"
        for r in bad.head(limit).itertuples(index=False)
    )
    more = f"<li>... {len(bad) - limit} more</li>" if len(bad) > limit else ""
    return (
        f"<div class='invalid bad'><p>{len(bad)} invalid value(s) in the result files, "
        f"shown as n/a above:</p><ul>{items}{more}</ul></div>"
    )


def _skipped_list(skipped: list[tuple[str, str]], limit: int = 200) -> str:
    items = "".join(
        f"<li><code>{_e(path)}</code>: {_e(reason)}</li>" for path, reason in skipped[:limit]
    )
    more = f"<li>... {len(skipped) - limit} more</li>" if len(skipped) > limit else ""
    return (
        f"<h3 id='skipped'>Skipped input</h3><div class='skipped bad'><p>{len(skipped)} "
        f"result file(s) or benchmark rows could not be read and are left out:</p>"
        f"<ul>{items}{more}</ul></div>"
    )


def _benchmark_sections(df, latest_changes, base_changes, machines) -> str:
    """One section per benchmark name: each series' newest value, the step from the previous
    commit, and the change from the baseline. At most MAX_BENCHMARK_SECTIONS sections."""
    keys = ["machine", "benchmark", "params"]
    shown = df[df["machine"].isin(machines)]
    units = shown.drop_duplicates("benchmark").set_index("benchmark")["unit"]
    series = shown[keys].drop_duplicates()
    cols = ["value_new", "value_old", "change_pct", "status"]
    rows = series.merge(latest_changes[keys + cols].drop_duplicates(keys), on=keys)
    if base_changes is not None and not base_changes.empty:
        base = base_changes[keys + ["value_old", "change_pct", "status"]].drop_duplicates(keys)
        base = base.rename(columns={"value_old": "b_old", "change_pct": "b_pct", "status": "b_st"})
        rows = rows.merge(base, on=keys, how="left", indicator="has_base")
        rows["has_base"] = rows["has_base"] == "both"
    else:
        rows["has_base"] = False
    by_name = dict(iter(rows.sort_values(["benchmark", "machine", "params"]).groupby("benchmark")))
    names = sorted(units.index)
    out = []
    for name in names[:MAX_BENCHMARK_SECTIONS]:
        unit = units[name]
        rule = metrics.unit_rule(unit)
        out.append(
            f"<h3 id='{_anchor(name)}'>{_e(name)} <span class=muted>({_e(unit)}, "
            f"{rule.direction} is better)</span></h3>"
        )
        cells_rows = []
        g = by_name.get(name)
        for n in [] if g is None else g.itertuples(index=False):
            cls = STATUS_CLASS.get(n.status, "")
            cells = (
                f"<td class=l>{_e(n.machine)}</td><td class=l>{_e(n.params)}</td>"
                f"<td>{_num(n.value_new)}</td><td>{_num(n.value_old)}</td>"
                f"<td class='{cls}'>{_num(n.change_pct, '+.1f')}% {_e(n.status)}</td>"
            )
            if n.has_base:
                bcls = STATUS_CLASS.get(n.b_st, "")
                cells += (
                    f"<td>{_num(n.b_old)}</td>"
                    f"<td class='{bcls}'>{_num(n.b_pct, '+.1f')}% {_e(n.b_st)}</td>"
                )
            else:
                cells += "<td>n/a</td><td>n/a</td>"
            cells_rows.append(f"<tr>{cells}</tr>")
        out.append(
            "<table><tr><th class=l>machine</th><th class=l>params</th><th>newest</th>"
            "<th>previous</th><th>change vs previous</th><th>baseline</th>"
            f"<th>change vs baseline</th></tr>{''.join(cells_rows)}</table>"
        )
    if len(names) > MAX_BENCHMARK_SECTIONS:
        out.append(
            f"<p class=muted>{len(names) - MAX_BENCHMARK_SECTIONS} more benchmarks in "
            "data/all_results.csv.</p>"
        )
    return "\n".join(out)


def _commits_table(df: pd.DataFrame, changes: pd.DataFrame, link: CommitLinks) -> str:
    commits = (
        df.groupby("commit")
        .agg(
            order=("commit_order", "first"),
            date=("commit_date", "first"),
            subject=("subject", "first"),
            machines=("machine", lambda s: ", ".join(sorted(set(s)))),
            measured=("value", "count"),
        )
        .sort_values("order", ascending=False)
    )
    bad = changes[changes["status"].isin(regress.BAD_STATUSES)].groupby("commit_new").size()
    rows = []
    for commit, r in commits.iterrows():
        date = r["date"].strftime("%Y-%m-%d %H:%M") if pd.notna(r["date"]) else "n/a"
        n_bad = int(bad.get(commit, 0))
        rows.append(
            f"<tr id='commit-{_e(commit[:8])}'><td class=l>{link(commit)}</td>"
            f"<td class=l><code>{_e(commit)}</code></td><td class=l>{_e(date)}</td>"
            f"<td class=l>{_e(r['subject'])}</td><td class=l>{_e(r['machines'])}</td>"
            f"<td>{r['measured']}</td><td class='{'bad' if n_bad else ''}'>{n_bad}</td></tr>"
        )
    return (
        "<table><tr><th class=l>commit</th><th class=l>full id</th><th class=l>date (UTC)</th>"
        "<th class=l>subject</th><th class=l>machines</th><th>measurements</th>"
        f"<th>regressions + failures</th></tr>{''.join(rows)}</table>"
    )


def _thresholds_table(overrides: dict[str, float] | None) -> str:
    overrides = overrides or {}
    rows = []
    noise = metrics.aa_defaults().get("noise", {})
    for unit, rule in metrics.UNIT_RULES.items():
        rel = overrides.get(unit, rule.rel_threshold)
        aa = ", ".join(
            f"{k.split('|', 1)[1]} {100 * v['threshold']:.1f}%"
            for k, v in sorted(noise.items())
            if k.split("|", 1)[0] == unit
        )
        rows.append(
            f"<tr><td class=l>{_e(unit)}</td><td class=l>{_e(rule.direction)} is better</td>"
            f"<td>{100 * rel:.1f}%</td><td>{rule.abs_floor:g}</td>"
            f"<td class=l>{_e(aa or '-')}</td></tr>"
        )
    return (
        "<table><tr><th class=l>unit</th><th class=l>direction</th><th>minimum effect</th>"
        "<th>absolute floor</th><th class=l>A/A noise when a row stores none "
        f"(reports/aa_noise.py)</th></tr>{''.join(rows)}</table>"
    )


def write_html(
    df: pd.DataFrame,
    changes: pd.DataFrame,
    baseline_changes: pd.DataFrame | None,
    baseline_commit: str | None,
    machines: list[str],
    plot_files: dict[str, list[Path]],
    html_dir: Path,
    commit_url: str | None = None,
    embed_images: bool = False,
    overrides: dict[str, float] | None = None,
    skipped: list[tuple[str, str]] | None = None,
) -> Path:
    html_dir.mkdir(parents=True, exist_ok=True)
    link = CommitLinks(commit_url)
    parts = [
        "<!doctype html><html lang=en><head><meta charset='utf-8'>",
        "<meta name='viewport' content='width=device-width, initial-scale=1'>",
        "<title>Attention kernel benchmarks</title>",
        f"<style>{CSS}</style></head><body>",
        "<h1>Grad-grad attention kernels: benchmark report</h1>",
        f"<p class=muted>{df['commit'].nunique()} commits, {len(machines)} machine(s), "
        f"{df.groupby(['machine', 'benchmark', 'params']).ngroups} series, "
        f"{int(df['value'].notna().sum())} measurements. Regenerate with <code>make report</code>."
        "</p>",
        "<nav><a href='#summary'>Summary</a><a href='#regressions'>Regressions</a>"
        "<a href='#plots'>Plots</a><a href='#benchmarks'>Benchmarks</a>"
        "<a href='#commits'>Commits</a><a href='#thresholds'>Thresholds</a></nav>",
        "<h2 id='summary'>Summary: newest results</h2>",
    ]
    for machine in machines:
        # The same latest view as <machine>_latest.txt: per benchmark class, the newest
        # commit that measured it (tables.latest_rows_per_class).
        latest = tables.latest_rows_per_class(df, machine)
        newest = latest["commit_order"].max()
        first = latest[latest["commit_order"] == newest].iloc[0]
        fills = tables.older_commit_fill_ins(latest)
        card = peaks.card_peak(df, machine)  # issue 17: the machine's own Peak, else legacy
        peak = card.tflops if card else None
        date = first["commit_date"]
        parts.append(
            f"<h3>{_e(machine)} @ {link(first['commit'])} "
            f"<span class=muted>{_e(date.strftime('%Y-%m-%d %H:%M UTC') if pd.notna(date) else '')}"
            f" {_e(first['subject'])}</span></h3>"
        )
        if fills:
            parts.append(
                "<p class='fill-ins'>Older commits fill in presets not measured at the newest: "
                + "; ".join(
                    f"{_e(', '.join(f['labels']))} from {link(f['commit'])} "
                    f"({_e(tables.fmt_date(f['commit_date']))}, {f['n_ok']} of {f['n_rows']} "
                    "measurements present)"
                    for f in fills
                )
                + ". The commit column says which commit each row was measured at.</p>"
            )
        table = tables.config_table(latest, peak) if "bwd_mode" in latest else pd.DataFrame()
        if table.empty:
            parts.append("<p class=muted>No bwd_mode-parameterised results.</p>")
        else:
            parts.append(_summary_table(table, peak, link if fills else None))
        if peak:
            parts.append(
                f"<p class=muted>% of peak: TFLOP/s / {peak:.0f}, the bf16 dense matmul "
                f"ceiling: {_e(card.source)}.</p>"
            )
        invalid = _invalid_list(latest)
        if invalid:
            parts.append(invalid)
    if skipped:
        parts.append(_skipped_list(skipped))

    visible = changes[changes["machine"].isin(machines)]
    bad = visible[visible["status"].isin(regress.BAD_STATUSES)]
    bad = bad.sort_values(["commit_order_new", "worse_pct"], ascending=[False, False])
    parts += [
        "<h2 id='regressions'>Regressions</h2>",
        "<p>A change counts when it exceeds the unit's threshold (see Thresholds) and the "
        "two measurements' noise intervals do not overlap; direction per unit (ms, MiB, "
        "parity: lower is better; TFLOP/s: higher is better). <b>failed</b> = a value turned "
        "into a failure.</p>",
        "<h3>Each commit vs the previous commit with results</h3>",
        _changes_table(bad, link, MAX_REGRESSION_ROWS),
    ]
    if baseline_changes is not None and baseline_commit:
        vb = baseline_changes[baseline_changes["machine"].isin(machines)]
        vb = vb[vb["status"].isin([*regress.BAD_STATUSES, regress.IMPROVEMENT])]
        vb = vb.sort_values("worse_pct", ascending=False)
        parts += [
            f"<h3>Newest commit vs baseline {link(baseline_commit)}</h3>",
            _changes_table(vb, link, MAX_REGRESSION_ROWS),
        ]
    parts.append("<h2 id='plots'>Plots</h2>")
    for machine in machines:
        pngs = [p for p in plot_files.get(machine, []) if p.suffix == ".png"]
        if not pngs:
            continue
        parts.append(f"<h3>{_e(machine)}</h3>")
        for p in pngs:
            svg = p.with_suffix(".svg")
            svg_link = (
                f" <a href='{_e(Path(os.path.relpath(svg, html_dir)).as_posix())}'>SVG</a>"
                if svg.exists() and not embed_images
                else ""
            )
            parts.append(f"<h4>{_e(p.stem)}{svg_link}</h4>")
            parts.append(_image_tag(p, html_dir, embed_images, f"{machine} {p.stem}"))
    newest_changes = (
        changes.sort_values("commit_order_new").groupby(["machine", "benchmark", "params"]).tail(1)
    )
    parts += [
        "<h2 id='benchmarks'>Benchmarks</h2>",
        _benchmark_sections(df, newest_changes, baseline_changes, machines),
        "<h2 id='commits'>Commits</h2>",
        _commits_table(df[df["machine"].isin(machines)], visible, link),
        "<h2 id='thresholds'>Thresholds</h2>",
        _thresholds_table(overrides),
        "<p class=muted>Defaults in reports/metrics.py; derive them from an A/A run with "
        "<code>python -m reports aa &lt;dirA&gt; &lt;dirB&gt;</code>.</p>",
        "</body></html>",
    ]
    path = html_dir / "index.html"
    path.write_text("\n".join(parts), encoding="utf-8")
    return path
