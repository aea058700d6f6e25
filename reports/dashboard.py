"""What the report's front page (html.py, ``index.html``) says first, as data and HTML parts.

- ``headline``: per card (machine) and preset, the fused mode against the best baseline of
  each config (the fastest other mode: SDPA, flash, math or a PyTorch-backed bwd_mode), and
  grad-grad fused against math (time and memory), from tables.config_table of the latest
  view (tables.latest_rows_per_class), so that it agrees with the text report and summary;
- ``latest_changes``: per machine, what changed at its newest commit (regress.history's steps
  into that commit), with the noise band the gate used;
- ``rules_html``: the rules the gate applies, rendered from their definitions in
  reports/metrics.py (units, minimum effects, regimes, A/A noise from aa_noise.py) and
  reports/regress.py (failures, TFLOP/s following ms, drift), so the table cannot drift from
  the code.
"""

from __future__ import annotations

import html
import math

import numpy as np
import pandas as pd

from reports import metrics, regress, tables

FAMILY_HEADLINE = "gradgrad"  # the family "grad-grad vs math" is about
MAX_LATEST_ROWS = 25  # per machine on the front page; its machine page has all


def _e(x) -> str:
    return html.escape(str(x), quote=True)


def _ratio(x: float) -> str:
    return tables.fmt(x, ".2f") + "x" if pd.notna(x) and math.isfinite(x) else "n/a"


# --------------------------------------------------------------------------------------------
# Headline


def best_baseline(table: pd.DataFrame) -> pd.DataFrame:
    """Per (family, preset, config) with a fused row: fused ms, the fastest other mode and
    its ms, ``ratio`` = baseline ms / fused ms (> 1: fused is faster), and fused's speedup
    and memory ratio vs math."""
    if table.empty or tables.FUSED_MODE not in set(table["bwd_mode"]):
        return pd.DataFrame()
    key = ["family", "preset", "config"]
    fused = table[table["bwd_mode"] == tables.FUSED_MODE].set_index(key)
    others = table[(table["bwd_mode"] != tables.FUSED_MODE) & table["ms"].notna()]
    others = others.sort_values("ms").drop_duplicates(key).set_index(key)
    out = fused[["ms", "speedup", "mem_ratio"]].rename(columns={"ms": "fused_ms"})
    out["baseline"] = others["bwd_mode"].reindex(out.index)
    out["baseline_ms"] = others["ms"].reindex(out.index)
    out["ratio"] = out["baseline_ms"] / out["fused_ms"]
    return out.reset_index()


def _summary_cell(values: pd.Series, label: str = "") -> str:
    """Median with the range and the number of configs, coloured win/loss."""
    v = values.dropna()
    v = v[np.isfinite(v)]
    if v.empty:
        return "<td class=na>n/a</td>"
    med = float(v.median())
    cls = "win" if med > 1 else "loss"
    spread = (
        f" <span class=muted>({_ratio(v.min())}-{_ratio(v.max())}, {len(v)} configs)</span>"
        if len(v) > 1
        else " <span class=muted>(1 config)</span>"
    )
    return f"<td class=l><span class={cls}>{_ratio(med)}</span>{_e(label)}{spread}</td>"


def headline(views: dict[str, pd.DataFrame], machine_href: dict[str, str], commit_label) -> str:
    """Two tables, a column per card: fused vs the best baseline per preset and family, and
    grad-grad fused vs math (time and memory) per preset. ``views``: machine -> the
    config_table of its latest view; ``commit_label(machine)``: HTML naming its commit."""
    machines = [m for m in views if not views[m].empty]
    if not machines:
        return "<p class=muted>No bwd_mode-parameterised results.</p>"
    best = {m: best_baseline(views[m]) for m in machines}
    heads = "".join(
        f"<th class=l><a href='{_e(machine_href[m])}'>{_e(m)}</a><br>"
        f"<span class=muted>{commit_label(m)}</span></th>"
        for m in machines
    )
    presets = sorted(
        {p for m in machines for p in views[m]["preset"].dropna().unique()},
        key=tables.preset_sort_key,
    )
    families = sorted(
        {f for m in machines for f in views[m]["family"].dropna().unique()},
        key=tables.family_sort_key,
    )
    rows = []
    for preset in presets:
        for family in families:
            cells = []
            for m in machines:
                b = best[m]
                sel = b[(b["preset"] == preset) & (b["family"] == family)] if not b.empty else b
                if sel.empty:
                    cells.append("<td class=na>-</td>")
                    continue
                common = sel["baseline"].dropna().mode()
                label = f" vs {common.iloc[0]}" if not common.empty else ""
                cells.append(_summary_cell(sel["ratio"], label))
            if any("class=l" in c for c in cells):
                rows.append(f"<tr><td class=l>{_e(preset)}</td><td class=l>{_e(family)}</td>")
                rows[-1] += "".join(cells) + "</tr>"
    gg = []
    for preset in presets:
        cells = []
        for m in machines:
            b = best[m]
            sel = (
                b[(b["preset"] == preset) & (b["family"] == FAMILY_HEADLINE)] if not b.empty else b
            )
            if sel.empty:
                cells.append("<td class=na>-</td>")
                continue
            mem = sel["mem_ratio"].dropna()
            mem_txt = f", memory {_ratio(mem.median())} of math" if not mem.empty else ""
            cells.append(_summary_cell(sel["speedup"], mem_txt))
        if any("class=l" in c for c in cells):
            gg.append(f"<tr><td class=l>{_e(preset)}</td>{''.join(cells)}</tr>")
    return (
        "<h3>Fused vs the best baseline</h3>"
        "<p class=muted>Per config: the fastest other mode's ms / fused ms (&gt; 1: fused is "
        "faster); the median over the preset's configs, the mode that is fastest most often, "
        "and the range.</p>"
        f"<div class=scroll><table class=headline><tr><th class=l>preset</th>"
        f"<th class=l>family</th>{heads}</tr>{''.join(rows)}</table></div>"
        "<h3>Grad-grad: fused vs math</h3>"
        "<p class=muted>math ms / fused ms (the double backward through PyTorch's math path), "
        "median over the preset's configs, and fused peak memory as a fraction of math's.</p>"
        f"<div class=scroll><table class=headline><tr><th class=l>preset</th>{heads}</tr>"
        f"{''.join(gg)}</table></div>"
    )


# --------------------------------------------------------------------------------------------
# Latest changes


def latest_changes(changes: pd.DataFrame, machine: str) -> pd.DataFrame:
    """The history steps into ``machine``'s newest commit (every status but unchanged),
    regressions and failures first, worst first."""
    mc = changes[changes["machine"] == machine]
    if mc.empty:
        return mc
    newest = mc["commit_order_new"].max()
    out = mc[(mc["commit_order_new"] == newest) & (mc["status"] != regress.UNCHANGED)].copy()
    out["_bad"] = ~out["status"].isin(regress.BAD_STATUSES)
    out = out.sort_values(["_bad", "worse_pct"], ascending=[True, False])
    return out.drop(columns="_bad")


def band(r) -> str:
    """The noise the rule used for one step: the stored intervals, else the +- band."""
    lo_o, hi_o = getattr(r, "noise_lo_old", np.nan), getattr(r, "noise_hi_old", np.nan)
    lo_n, hi_n = getattr(r, "noise_lo_new", np.nan), getattr(r, "noise_hi_new", np.nan)
    if all(pd.notna(x) and np.isfinite(x) for x in (lo_o, hi_o, lo_n, hi_n)):
        return (
            f"[{tables.fmt(lo_o, '.4g')}, {tables.fmt(hi_o, '.4g')}] -&gt; "
            f"[{tables.fmt(lo_n, '.4g')}, {tables.fmt(hi_n, '.4g')}]"
        )
    if pd.notna(r.threshold_pct):
        return f"&plusmn;{r.threshold_pct:.1f}% ({_e(getattr(r, 'regime', ''))})"
    return "n/a"


def status_counts(rows: pd.DataFrame) -> str:
    if rows.empty:
        return "nothing changed"
    counts = rows["status"].value_counts()
    order = [regress.REGRESSION, regress.FAILED, regress.IMPROVEMENT, regress.NOISE]
    order += [s for s in counts.index if s not in order]
    return ", ".join(f"{s}: {int(counts[s])}" for s in order if s in counts)


# --------------------------------------------------------------------------------------------
# The gate's rules


REGIME_WHEN = {
    metrics.HOST_BOUND: lambda: (
        f"own ms &lt; {metrics.HOST_BOUND_BELOW_MS:g}, or host ms &ge; "
        f"{100 * metrics.HOST_BOUND_SHARE:.0f}% of it"
    ),
    metrics.GPU_BOUND: lambda: (
        f"own ms &ge; {metrics.HOST_BOUND_BELOW_MS:g} and host ms &lt; "
        f"{100 * metrics.HOST_BOUND_SHARE:.0f}% of it"
    ),
    metrics.BACKEND_CHOICE: lambda: "bwd_mode " + ", ".join(sorted(metrics.BACKEND_CHOICE_MODES)),
    metrics.ALL: lambda: "the other rows",
}


def unit_regimes(unit: str) -> list[str]:
    """The regimes metrics.regime can give rows of ``unit``."""
    if unit in metrics.MS_REGIME_UNITS:
        return [metrics.HOST_BOUND, metrics.GPU_BOUND]
    if unit == "graph ms":
        return [metrics.BACKEND_CHOICE, metrics.GPU_BOUND]
    if unit in metrics.CHOICE_REGIME_UNITS:
        return [metrics.BACKEND_CHOICE, metrics.ALL]
    return [metrics.ALL]


def _borrowed(card: dict, unit: str, reg: str) -> str:
    """ " (borrowed: ...)" where this card's A/A pair has no rows of ``unit`` in ``reg`` and
    metrics.AA_BORROW lends it another unit's noise; "" where the card has its own."""
    borrowed = metrics.AA_BORROW.get((unit, reg))
    if not borrowed or f"{unit}|{reg}" in card.get("noise", {}):
        return ""
    return f" (borrowed: {borrowed[0]} {borrowed[1]})"


def rules_html(overrides: dict[str, float] | None = None) -> str:
    """Every rule the gate applies, from metrics.py / regress.py / aa_noise.py."""
    overrides = overrides or {}
    cards = metrics.aa_defaults().get("cards", {})
    rows = []
    for unit, rule in metrics.UNIT_RULES.items():
        rel = overrides.get(unit, rule.rel_threshold)
        regimes = unit_regimes(unit)
        for i, reg in enumerate(regimes):
            # one A/A pair per card (aa_noise.py): each card's noise and what it flags at
            per_card = [(c, metrics.aa_noise(unit, reg, c)) for c in sorted(cards)]
            per_card = [(c, n) for c, n in per_card if n is not None]
            if not per_card:
                aa_txt, flags = "none recorded", f"{100 * rel:.1f}%"
            else:
                aa_txt = "<br>".join(
                    f"{_e(c)}: {100 * n:.1f}%{_e(_borrowed(cards[c], unit, reg))}"
                    for c, n in per_card
                )
                flags = "<br>".join(f"{100 * max(rel, n):.1f}%" for _, n in per_card)
            first = i == 0
            span = f" rowspan={len(regimes)}" if len(regimes) > 1 else ""
            lead = (
                f"<td class=l{span}>{_e(unit)}</td><td class=l{span}>{_e(rule.direction)}</td>"
                f"<td{span}>{100 * rel:.1f}%{' (override)' if unit in overrides else ''}</td>"
                f"<td{span}>{rule.abs_floor:g}</td>"
                if first
                else ""
            )
            when = "every row (a replay holds no host time)" if unit == "graph ms" else None
            rows.append(
                f"<tr>{lead}<td class=l>{_e(reg)}: {when or REGIME_WHEN[reg]()}</td>"
                f"<td>{aa_txt}</td><td>{flags}</td></tr>"
            )
    hosts = [(c, metrics.aa_noise("ms", metrics.HOST_BOUND, c)) for c in sorted(cards)]
    host_txt = ", ".join(f"{100 * n:.1f}% on {c}" for c, n in hosts if n is not None)
    host_txt = host_txt or "its A/A noise"
    srcs = []
    for card, entry in sorted(cards.items()):
        src = entry.get("source", {})
        srcs.append(" vs ".join(str(src[k]) for k in ("a", "b") if k in src) or card)
    src_txt = "; ".join(srcs) or "no A/A pair recorded"
    other = metrics.UNKNOWN_UNIT_RULE
    items = [
        "A step is flagged (regression or improvement, by the unit's direction) only when it "
        "reaches the row's <b>minimum detectable change</b>, the larger of the unit's "
        "<b>minimum effect</b> and the <b>A/A noise</b> of its unit and regime on its card "
        f"(columns above; from {_e(src_txt)}: 1.5x the largest same-commit difference, "
        "rounded up to 0.5%; a card with no pair takes the largest recorded), and exceeds the "
        "absolute floor;",
        "<b>and</b>, when both measurements store an interval (asv's 99% CI of the median, "
        "else q25-q75 of the samples), the two intervals do not overlap. A stored interval "
        "is one run's; the A/A noise is what moves between runs (clocks, the host).",
        f"<b>Host-bound rows</b>: an ms row under {metrics.HOST_BOUND_BELOW_MS:g} ms, or "
        f"whose host ms reaches {100 * metrics.HOST_BOUND_SHARE:.0f}% of its ms, takes the "
        f"host-bound noise ({host_txt}); with a <code>graph ms</code> sibling its kernels are "
        "judged on graph ms and its host on <code>host ms</code>.",
        "<b>TFLOP/s follows ms</b>: a TFLOP/s row with an ms sibling takes the ms row's "
        "decision (the rate is the FLOP model over that time).",
        "<b>Failures</b>: a value that becomes a failure, or a new series whose first value "
        f"fails, is <code>{regress.FAILED}</code>; "
        + " and ".join(f"<code>{_e(s)}</code>" for s in regress.BAD_STATUSES)
        + " fail the gate; an asv skip (the combination does not apply) is "
        f"<code>{regress.SKIPPED}</code>.",
        f"<b>Drift</b> (<code>python -m reports compare</code>): the new commit against the "
        f"median of each series' last {regress.DRIFT_WINDOW} commits (at least "
        f"{regress.DRIFT_MIN_POINTS}) under the A/A rule.",
        f"Units not listed: {other.direction} is better, minimum effect "
        f"{100 * other.rel_threshold:.0f}%.",
    ]
    return (
        "<div class=scroll><table class=rules><tr><th class=l>unit</th><th class=l>better</th>"
        "<th>minimum effect</th><th>absolute floor</th><th class=l>regime (rows)</th>"
        "<th>A/A noise (between runs)</th><th>flags at</th></tr>"
        + "".join(rows)
        + "</table></div><ul class=rules>"
        + "".join(f"<li>{i}</li>" for i in items)
        + "</ul>"
    )
