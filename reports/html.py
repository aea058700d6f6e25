"""The static HTML report, a small dashboard: no script, no CDN, no network at view time.

``<out>/html/``:

- ``index.html`` opens on the headline (per card: fused vs the best baseline per preset,
  grad-grad fused vs math: reports/dashboard.py), the latest changes (each machine's newest
  commit vs its previous one: subject, old -> new with the noise band the gate used, a link
  to the commit), links to the machine and preset pages, and the rules the gate applies
  (rendered from reports/metrics.py and reports/regress.py);
- ``machine-<name>.html``: that machine's newest changes, its newest commit vs the baseline,
  its plots (``../plots/<machine>/*.png``, or embedded), links to its preset tables, invalid
  values and its commits (with subjects);
- ``preset-<name>.html``: the latest summary table of one preset (per config and mode: ms,
  speedup vs math, memory, TFLOP/s, parity) for each machine that measured it.

Commit ids link to ``--commit-url`` or the URL derived from the git remote
(``commit_url_from_remote``: GitHub, GitLab, Codeberg, Bitbucket), else to the commit's row
on its machine page. Inline CSS only; laid out to fit a 1,400 px window without sideways
scrolling (wide tables wrap their text cells, or scroll inside their own box).
"""

from __future__ import annotations

import base64
import html
import os
import re
import subprocess
from pathlib import Path

import pandas as pd

from reports import dashboard, regress, tables
from reports import machines as machine_pairs
from reports import peaks as card_peaks
from reports.paths import slug

MAX_REGRESSION_ROWS = 300  # tables of changes beyond this are cut (the CSV has them all)
MAX_SUMMARY_ROWS = 3000  # rows of one preset's summary table per machine (the suite: ~100)
MAX_COMMIT_ROWS = 500  # a machine's commit list
# Presets with a page (and a headline row), in preset order; the suite has 6. A results file
# of 20,000 classes would otherwise write 20,000 pages (data/all_results.csv has them all).
MAX_PRESET_PAGES = 40
STATUS_CLASS = {
    regress.REGRESSION: "bad",
    regress.FAILED: "bad",
    regress.IMPROVEMENT: "good",
    regress.NOISE: "noise",
}

CSS = """
body { font-family: system-ui, sans-serif; margin: 1em auto; padding: 0 1em; color: #222;
  max-width: 1360px; }
h1 { font-size: 1.4em; margin-bottom: 0.2em; } h2 { border-bottom: 1px solid #ccc;
  margin-top: 1.6em; font-size: 1.2em; }
h3 { margin-top: 1.2em; font-size: 1.02em; } h4 { margin: 1em 0 0.3em; font-size: 0.95em; }
table { border-collapse: collapse; font-size: 0.82em; margin: 0.4em 0 1em; }
th, td { border: 1px solid #ddd; padding: 2px 6px; text-align: right; white-space: nowrap;
  vertical-align: top; }
th { background: #f3f3f3; } td.l, th.l { text-align: left; white-space: normal;
  overflow-wrap: break-word; }
td.na { color: #999; text-align: center; }
.scroll { max-width: 100%; overflow-x: auto; }
tr.math td { background: #fafafa; } .bad { background: #fde0dc; } .good { background: #e0f3e0; }
.noise { color: #888; } .win { color: #1a7f37; font-weight: 600; }
.loss { color: #b42318; font-weight: 600; }
img { max-width: 100%; height: auto; border: 1px solid #eee; margin: 0.3em 0; }
nav { margin: 0.5em 0 1em; } nav a { margin-right: 1em; } code { font-size: 0.95em; }
.muted { color: #777; } .subject { color: #444; }
ul.cards { list-style: none; padding: 0; display: flex; flex-wrap: wrap; gap: 0.6em; }
ul.cards li { border: 1px solid #ddd; border-radius: 4px; padding: 0.5em 0.8em;
  min-width: 15em; max-width: 26em; }
"""


def commit_url_from_remote(repo: str | Path | None) -> str | None:
    """A commit URL format ('https://host/owner/name/commit/{commit}') from `git remote
    get-url origin`: GitHub, GitLab (any host named gitlab.*), Codeberg, Bitbucket; None for
    any other remote (a path, an unknown host)."""
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
    m = re.match(
        r"^(?:https?://(?:[^@/]+@)?|ssh://git@|git@)([A-Za-z0-9.-]+)(?::\d+)?[:/]"
        r"([^/]+(?:/[^/]+)*?)/([^/]+?)(?:\.git)?/?$",
        url,
    )
    if not m:
        return None
    host, owner, name = m.group(1).lower(), m.group(2), m.group(3)
    if host in ("github.com", "codeberg.org"):
        return f"https://{host}/{owner}/{name}/commit/{{commit}}"
    if host.startswith("gitlab."):
        return f"https://{host}/{owner}/{name}/-/commit/{{commit}}"
    if host == "bitbucket.org":
        return f"https://{host}/{owner}/{name}/commits/{{commit}}"
    return None


def github_commit_url(repo: str | Path | None) -> str | None:
    """The commit URL format derived from the git remote (kept under its old name: cli.py
    calls it); see commit_url_from_remote."""
    return commit_url_from_remote(repo)


def _e(x) -> str:
    return html.escape(str(x), quote=True)


def machine_page(machine: str) -> str:
    return f"machine-{slug(machine)}.html"


def pair_page(a: str, b: str) -> str:
    return f"machines-{slug(a)}-vs-{slug(b)}.html"


def preset_page(preset: str) -> str:
    return f"preset-{slug(str(preset))}.html"


class CommitLinks:
    """Renders a commit id as a link: the configured URL format, else the commit's row on
    its machine's page (``machine``), else ``#commit-<id>`` on the page itself."""

    def __init__(self, url_format: str | None):
        self.url_format = url_format

    def __call__(self, commit: str, machine: str | None = None) -> str:
        if not isinstance(commit, str) or not commit:
            return "n/a"
        short = _e(commit[:8])
        if self.url_format:
            href = self.url_format.format(commit=commit, short=commit[:8])
        else:
            href = (machine_page(machine) if machine else "") + f"#commit-{commit[:8]}"
        return f'<a href="{_e(href)}"><code>{short}</code></a>'


def _num(x, spec=".4g") -> str:
    return tables.fmt(x, spec)


def _x(ratio) -> str:
    """'1.23x', or 'n/a' (not 'n/ax')."""
    text = _num(ratio, ".2f")
    return text if text == "n/a" else text + "x"


def _summary_table(table: pd.DataFrame, peak: float | None, link, commit_col: bool) -> str:
    """One row per (family, preset, config, mode). With ``commit_col``, a commit column names
    the commit each row was measured at (the latest view spans several commits)."""
    commit_col = commit_col and "commit" in table
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
            f"<td>{_num(r.ms)}</td><td>{_x(r.speedup)}</td>"
            f"<td class='{wl if wl in ('win', 'loss') else ''}'>{_e(wl)}</td>"
            f"<td>{_num(r.peak_mib, '.0f')}</td><td>{_x(r.mem_ratio)}</td>"
            f"<td>{tables.fmt_tflops(r.tflops)}</td><td>{_num(r.pct_peak, '.1f')}</td>"
            f"<td>{_num(r.parity, '.2f')}</td><td>{_num(r.host_ms)}</td></tr>"
        )
    more = (
        f"<p class=muted>{len(table) - MAX_SUMMARY_ROWS} more rows in data/all_results.csv.</p>"
        if len(table) > MAX_SUMMARY_ROWS
        else ""
    )
    return f"<div class=scroll><table class='summary'>{head}{''.join(rows)}</table></div>{more}"


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


def _changes_table(rows: pd.DataFrame, link: CommitLinks, limit: int, more_where: str) -> str:
    """Steps of series: status, benchmark and params, old -> new with the noise band the gate
    used, the change, and the rule (its minimum detectable change)."""
    if rows.empty:
        return "<p class=muted>None.</p>"
    head = (
        "<tr><th class=l>status</th><th class=l>benchmark</th><th class=l>params</th>"
        "<th>old -&gt; new</th><th class=l>noise band</th><th>change</th>"
        "<th>flags at</th></tr>"
    )
    out = []
    for r in rows.head(limit).itertuples(index=False):
        cls = STATUS_CLASS.get(r.status, "")
        out.append(
            f"<tr class='{cls}'><td class=l>{_e(r.status)}</td><td class=l>{_e(r.benchmark)}</td>"
            f"<td class=l>{_e(r.params)}</td><td>{_num(r.value_old)} -&gt; {_num(r.value_new)} "
            f"{_e(r.unit)}</td><td class=l>{dashboard.band(r)}</td>"
            f"<td>{_num(r.change_pct, '+.1f')}%</td><td>{_num(r.mdc_pct, '.1f')}%</td></tr>"
        )
    more = (
        f"<p class=muted>{len(rows) - limit} more rows in {more_where}.</p>"
        if len(rows) > limit
        else ""
    )
    return f"<div class=scroll><table class='regressions'>{head}{''.join(out)}</table></div>{more}"


def _latest_block(
    changes: pd.DataFrame,
    machine: str,
    link: CommitLinks,
    subjects: dict,
    limit: int,
    on_index: bool,
) -> str:
    """One machine's newest commit vs its previous one: a line naming both commits (with the
    subject) and the counts, then the regressions and failures (on the machine page: every
    step that is not unchanged)."""
    rows = dashboard.latest_changes(changes, machine)
    name = f"<a href='{_e(machine_page(machine))}'>{_e(machine)}</a>" if on_index else _e(machine)
    if rows.empty:
        return f"<h3>{name}</h3><p class=muted>Only one commit measured: nothing to compare.</p>"
    new = rows["commit_new"].iloc[0]
    olds = sorted(set(rows["commit_old"].dropna()))
    vs = ", ".join(link(c, machine) for c in olds[:3]) or "nothing (first measurement)"
    head = (
        f"<h3>{name}: {link(new, machine)} <span class=subject>{_e(subjects.get(new, ''))}"
        f"</span></h3><p>vs {vs}: {_e(dashboard.status_counts(rows))}.</p>"
    )
    # New series are counted, not listed (a first run would list every series).
    shown = rows[rows["status"].isin(regress.BAD_STATUSES)] if on_index else rows
    shown = shown[shown["status"] != regress.NEW]
    if shown.empty:
        return head
    where = f"<a href='{_e(machine_page(machine))}'>{_e(machine)}'s page</a>"
    return head + _changes_table(shown, link, limit, where if on_index else "data/changes.csv")


def _commits_table(mdf: pd.DataFrame, changes: pd.DataFrame, link: CommitLinks, machine) -> str:
    commits = (
        mdf.groupby("commit")
        .agg(
            order=("commit_order", "first"),
            date=("commit_date", "first"),
            subject=("subject", "first"),
            measured=("value", "count"),
        )
        .sort_values("order", ascending=False)
        .head(MAX_COMMIT_ROWS)
    )
    bad = changes[changes["status"].isin(regress.BAD_STATUSES)].groupby("commit_new").size()
    rows = []
    for commit, r in commits.iterrows():
        date = r["date"].strftime("%Y-%m-%d %H:%M") if pd.notna(r["date"]) else "n/a"
        n_bad = int(bad.get(commit, 0))
        rows.append(
            f"<tr id='commit-{_e(commit[:8])}'><td class=l>{link(commit, machine)}</td>"
            f"<td class=l>{_e(date)}</td><td class=l>{_e(r['subject'])}</td>"
            f"<td>{r['measured']}</td><td class='{'bad' if n_bad else ''}'>{n_bad}</td></tr>"
        )
    return (
        "<div class=scroll><table class=commits><tr><th class=l>commit</th>"
        "<th class=l>date (UTC)</th><th class=l>subject</th><th>measurements</th>"
        f"<th>regressions + failures</th></tr>{''.join(rows)}</table></div>"
    )


def _page(title: str, body: list[str], home: bool = False) -> str:
    nav = "" if home else "<nav><a href='index.html'>&larr; dashboard</a></nav>"
    return "\n".join(
        [
            "<!doctype html><html lang=en><head><meta charset='utf-8'>",
            "<meta name='viewport' content='width=device-width, initial-scale=1'>",
            f"<title>{_e(title)}</title>",
            f"<style>{CSS}</style></head><body>",
            nav,
            *body,
            "</body></html>",
        ]
    )


def _view_label(latest: pd.DataFrame, link: CommitLinks, machine: str) -> str:
    newest = latest[latest["commit_order"] == latest["commit_order"].max()].iloc[0]
    older = latest["commit_order"].nunique() > 1
    return link(newest["commit"], machine) + (" + older" if older else "")


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
    """index.html, a page per machine and a page per preset into ``html_dir``; returns the
    index's path. Pages of an earlier build that no longer apply are removed."""
    html_dir.mkdir(parents=True, exist_ok=True)
    link = CommitLinks(commit_url)
    subjects = df.drop_duplicates("commit").set_index("commit")["subject"].to_dict()
    views, tables_of, peaks, cards = {}, {}, {}, {}
    for machine in machines:
        latest = tables.latest_rows_per_class(df, machine)
        views[machine] = latest
        # issue 17: the machine's own measured Peak, else the labelled legacy number
        cards[machine] = card_peaks.card_peak(df, machine)
        peaks[machine] = cards[machine].tflops if cards[machine] else None
        tables_of[machine] = (
            tables.config_table(latest, peaks[machine])
            if "bwd_mode" in latest and not latest.empty
            else pd.DataFrame()
        )
    written: dict[str, str] = {}

    # Preset pages: per machine, the latest summary table of that preset.
    all_presets = sorted(
        {p for t in tables_of.values() if not t.empty for p in t["preset"].dropna().unique()},
        key=tables.preset_sort_key,
    )
    presets = all_presets[:MAX_PRESET_PAGES]
    by_preset = {
        m: ({} if t.empty else dict(iter(t[t["preset"].isin(presets)].groupby("preset"))))
        for m, t in tables_of.items()
    }
    for preset in presets:
        body = [f"<h1>Preset {_e(preset)}: newest results per card</h1>"]
        for machine in machines:
            t = by_preset[machine].get(preset)
            if t is None or t.empty:
                continue
            fills = t["commit"].nunique() > 1 if "commit" in t else False
            body.append(
                f"<h2 id='m-{_e(slug(machine))}'><a href='{_e(machine_page(machine))}'>"
                f"{_e(machine)}</a> @ {_view_label(t, link, machine)}</h2>"
            )
            body.append(_summary_table(t, peaks[machine], (lambda c, m=machine: link(c, m)), fills))
        written[preset_page(preset)] = _page(f"{preset}: benchmarks", body)

    # Machine pages.
    for machine in machines:
        latest = views[machine]
        first = latest[latest["commit_order"] == latest["commit_order"].max()].iloc[0]
        body = [
            f"<h1>{_e(machine)}</h1>",
            f"<p>newest commit {link(first['commit'], machine)} "
            f"({_e(tables.fmt_date(first['commit_date']))}) <span class=subject>"
            f"{_e(first['subject'])}</span></p>",
            "<nav><a href='#changes'>Latest changes</a><a href='#presets'>Tables</a>"
            "<a href='#plots'>Plots</a><a href='#commits'>Commits</a></nav>",
        ]
        fills = tables.older_commit_fill_ins(latest)
        if fills:
            body.append(
                "<p class='fill-ins'>Older commits fill in presets not measured at the newest: "
                + "; ".join(
                    f"{_e(', '.join(f['labels']))} from {link(f['commit'], machine)} "
                    f"({_e(tables.fmt_date(f['commit_date']))}, {f['n_ok']} of {f['n_rows']} "
                    "measurements present)"
                    for f in fills
                )
                + ".</p>"
            )
        body.append("<h2 id='changes'>Latest changes</h2>")
        body.append(_latest_block(changes, machine, link, subjects, MAX_REGRESSION_ROWS, False))
        has_base = baseline_changes is not None and baseline_commit
        vb = baseline_changes[baseline_changes["machine"] == machine] if has_base else None
        if vb is not None and not vb.empty:  # machines that measured the baseline commit
            counts = dashboard.status_counts(vb[vb["status"] != regress.UNCHANGED])
            vb = vb[vb["status"].isin(regress.BAD_STATUSES)]
            body.append(
                f"<h3>Newest commit vs baseline {link(baseline_commit, machine)}</h3>"
                f"<p>{_e(counts)}; regressions and failures listed (every step: "
                f"<code>python -m reports compare {_e(baseline_commit[:8])} latest --machine "
                f"{_e(machine)} --all</code>).</p>"
            )
            if not vb.empty:
                body.append(
                    _changes_table(
                        vb.sort_values("worse_pct", ascending=False),
                        link,
                        MAX_REGRESSION_ROWS,
                        "data/changes.csv",
                    )
                )
        t = tables_of[machine]
        body.append("<h2 id='presets'>Tables</h2><ul>")
        for preset in [p for p in presets if p in by_preset[machine]]:
            n = by_preset[machine][preset]["config"].nunique()
            body.append(
                f"<li><a href='{_e(preset_page(preset))}#m-{_e(slug(machine))}'>{_e(preset)}</a>"
                f" <span class=muted>({n} config{'' if n == 1 else 's'})</span></li>"
            )
        body.append("</ul>")
        if peaks[machine]:
            body.append(
                f"<p class=muted>% of peak: TFLOP/s / {peaks[machine]:.0f}, the bf16 dense "
                f"matmul ceiling: {_e(cards[machine].source)}.</p>"
            )
        body.append(_invalid_list(latest))
        body.append("<h2 id='plots'>Plots</h2>")
        pngs = [p for p in plot_files.get(machine, []) if p.suffix == ".png"]
        if not pngs:
            body.append("<p class=muted>No plots.</p>")
        for p in pngs:
            svg = p.with_suffix(".svg")
            svg_link = (
                f" <a href='{_e(Path(os.path.relpath(svg, html_dir)).as_posix())}'>SVG</a>"
                if svg.exists() and not embed_images
                else ""
            )
            body.append(f"<h4>{_e(p.stem)}{svg_link}</h4>")
            body.append(_image_tag(p, html_dir, embed_images, f"{machine} {p.stem}"))
        if not any(p.stem.startswith("trend_") for p in pngs):
            body.append("<p class=muted>No trends: one commit measured.</p>")
        body.append("<h2 id='commits'>Commits</h2>")
        mdf = df[df["machine"] == machine]
        body.append(_commits_table(mdf, changes[changes["machine"] == machine], link, machine))
        written[machine_page(machine)] = _page(machine, body)

    # The index.
    n_series = df[df["machine"].isin(machines)].groupby(["machine", "benchmark", "params"]).ngroups
    body = [
        "<h1>Grad-grad attention kernels: benchmarks</h1>",
        f"<p class=muted>{df['commit'].nunique()} commits, {len(machines)} machine(s), "
        f"{n_series} series, {int(df['value'].notna().sum())} measurements. Regenerate with "
        "<code>make report</code>; every row is in <code>data/all_results.csv</code>.</p>",
        "<nav><a href='#headline'>Headline</a><a href='#latest'>Latest changes</a>"
        "<a href='#machines'>Machines</a><a href='#presets'>Presets</a>"
        "<a href='#thresholds'>Rules</a></nav>",
        "<h2 id='headline'>Headline</h2>",
        dashboard.headline(
            {m: t[t["preset"].isin(presets)] if not t.empty else t for m, t in tables_of.items()},
            {m: machine_page(m) for m in machines},
            lambda m: _view_label(views[m], link, m),
        ),
        "<h2 id='latest'>Latest changes</h2>",
        "<p class=muted>Each machine's newest commit against the previous commit it measured; "
        "regressions and failures listed (all steps on the machine's page). Rules below.</p>",
    ]
    if not commit_url:
        body.append(
            "<p class=muted>No commit URL: pass <code>--commit-url</code> or give the "
            "repository a GitHub/GitLab <code>origin</code>; commits link to their machine "
            "page.</p>"
        )
    body += [
        _latest_block(changes, m, link, subjects, dashboard.MAX_LATEST_ROWS, True) for m in machines
    ]
    body.append("<h2 id='machines'>Machines</h2><ul class=cards>")
    for machine in machines:
        mdf = df[df["machine"] == machine]
        gpu = mdf["gpu"].dropna().iloc[-1] if "gpu" in mdf and mdf["gpu"].notna().any() else ""
        t = tables_of[machine]
        ps = [p for p in presets if p in by_preset[machine]]
        body.append(
            f"<li><a href='{_e(machine_page(machine))}'><b>{_e(machine)}</b></a><br>"
            f"<span class=muted>{_e(gpu)}</span><br>{mdf['commit'].nunique()} commit(s), "
            f"newest {_view_label(views[machine], link, machine)}<br>"
            + ", ".join(
                f"<a href='{_e(preset_page(p))}#m-{_e(slug(machine))}'>{_e(p)}</a>" for p in ps
            )
            + "</li>"
        )
    body.append("</ul>")
    pairs = machine_pairs.pairs(df, machines)
    if pairs:  # the same preset/config/mode on two cards (reports/machines.py)
        body.append("<p>Side by side: ")
        links = []
        for a, b in pairs:
            name = pair_page(a, b)
            written[name] = _page(f"{a} vs {b}", [machine_pairs.machines_html(df, a, b)])
            links.append(f"<a href='{_e(name)}'>{_e(a)} vs {_e(b)}</a>")
        body.append(", ".join(links) + "</p>")
    body.append("<h2 id='presets'>Presets</h2><ul class=cards>")
    for preset in presets:
        on = [m for m in machines if preset in by_preset[m]]
        body.append(
            f"<li><a href='{_e(preset_page(preset))}'><b>{_e(preset)}</b></a><br>"
            f"<span class=muted>{_e(', '.join(on))}</span></li>"
        )
    if len(all_presets) > len(presets):
        body.append(
            f"<li>{len(all_presets) - len(presets)} more presets: data/all_results.csv</li>"
        )
    body.append("</ul>")
    invalid = sum(int(v["invalid"].astype(bool).sum()) for v in views.values() if "invalid" in v)
    if invalid:
        body.append(
            f"<p class='invalid bad'>{invalid} invalid value(s) in the latest results: listed "
            "on their machine pages, shown as n/a.</p>"
        )
    if skipped:
        body.append(_skipped_list(skipped))
    body += [
        "<h2 id='thresholds'>Rules of the regression gate</h2>",
        dashboard.rules_html(overrides),
        "<p class=muted>From reports/metrics.py, reports/regress.py and reports/aa_noise.py "
        "(<code>python -m reports aa &lt;dirA&gt; &lt;dirB&gt; --write</code>).</p>",
    ]
    written["index.html"] = _page("Attention kernel benchmarks", body, home=True)

    stale = ("machine-*.html", "machines-*.html", "preset-*.html")
    for old in [p for pattern in stale for p in html_dir.glob(pattern)]:
        if old.name not in written:
            old.unlink()
    for name, page in written.items():
        (html_dir / name).write_text(page, encoding="utf-8")
    return html_dir / "index.html"
