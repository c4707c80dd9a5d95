"""The dashboard's own sections, one function each, DashboardData in, an HTML fragment out.

Funnel, sources, resolution, IQA scores, duplicates, kept and rejected examples, history;
the page template (``templates/page.html.j2``) lays them out in order with the sections of
``stages``, ``politeness`` and ``since``. Every text is escaped here (:func:`esc`), so the
page marks the fragments safe as they are.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from flows.dashboard import rejects
from flows.dashboard.charts import esc, fmt, svg_hbars, svg_histogram, svg_lines
from flows.dashboard.model import DashboardData, Thumb, lower_is_better
from storage.schemas import IQA_COLUMNS


def _table(headers: Sequence[str], rows: Iterable[Sequence[Any]], numeric: set[int]) -> str:
    head = "".join(
        f'<th class="num">{esc(h)}</th>' if i in numeric else f"<th>{esc(h)}</th>"
        for i, h in enumerate(headers)
    )
    body = []
    for row in rows:
        cells = []
        for i, cell in enumerate(row):
            if isinstance(cell, tuple):  # (sort value, HTML)
                cells.append(f'<td class="num" data-v="{esc(cell[0])}">{cell[1]}</td>')
            elif i in numeric:
                raw = "" if cell is None else cell
                cells.append(f'<td class="num" data-v="{esc(raw)}">{esc(fmt(cell))}</td>')
            else:
                cells.append(f"<td>{esc(cell)}</td>")
        body.append("<tr>" + "".join(cells) + "</tr>")
    return (
        f'<table class="sortable"><thead><tr>{head}</tr></thead>'
        f"<tbody>{''.join(body)}</tbody></table>"
    )


def _figure(thumb: Thumb, css: str = "") -> str:
    if thumb.image:
        img = f'<img src="{thumb.image}" alt="{esc(thumb.key)}" width="160" height="120">'
    else:
        img = f'<div class="noimg">{esc(thumb.missing or "no image")}</div>'
    lines = [f"<div>{esc(line)}</div>" for line in thumb.caption]
    if thumb.reason:
        lines.insert(0, f'<div class="reason">{esc(thumb.reason)}</div>')
    if thumb.detail:
        lines.append(f'<div class="detail">{esc(thumb.detail)}</div>')
    reason = f' data-reason="{esc(thumb.reason)}"' if thumb.reason else ""
    cls = f' class="{css}"' if css else ""
    return f"<figure{cls}{reason}>{img}<figcaption>{''.join(lines)}</figcaption></figure>"


def _kpi(value: str, label: str) -> str:
    return f'<div class="kpi"><b>{esc(value)}</b><span>{esc(label)}</span></div>'


def _pct(part: int | float, whole: int | float) -> str:
    return f"{part / whole:.1%}" if whole else "–"


def section_overview(d: DashboardData) -> str:
    """The headline numbers at the top of the page."""
    size = sum(s["bytes"] for s in d.sources)
    kpis = "".join(
        [
            _kpi(fmt(d.samples), "samples in version"),
            _kpi(fmt(d.new_kept), "kept by this build"),
            _kpi(fmt(d.candidates), "candidates"),
            _kpi(fmt(d.rejected), "rejected"),
            _kpi(_pct(d.new_kept, d.candidates), "kept ratio"),
            _kpi(fmt(d.stats.get("shards", d.entry.get("shards"))), "shards"),
            _kpi(f"{size / 1e9:.2f} GB" if size >= 1e8 else f"{size / 1e6:.2f} MB", "image bytes"),
        ]
    )
    return f'<section id="overview"><div class="kpis">{kpis}</div></section>'


def section_funnel(d: DashboardData) -> str:
    remaining = d.candidates
    rows: list[tuple[str, list[tuple[str, float]]]] = [("candidates", [("all", d.candidates)])]
    for stage, n in d.funnel_stages:
        # One bar per stage: what entered it (the number), green passed on, red rejected.
        remaining -= n
        rows.append((f"{stage} (−{n:,})", [("kept", max(remaining, 0)), ("rejected", n)]))
    rows.append(("kept (this build)", [("kept", d.new_kept)]))
    bars = svg_hbars(rows, title="funnel")
    table = _table(
        ["stage", "reason", "rejected", "% of candidates"],
        [
            (
                stage,
                reason,
                n,
                (
                    n / d.candidates if d.candidates else 0,
                    f'<span class="pct" style="width:{100 * n / max(d.candidates, 1):.1f}px">'
                    f"</span>{_pct(n, d.candidates)}",
                ),
            )
            for stage, reason, n in d.reasons
        ],
        numeric={2},
    )
    reused = (
        f" This version also lists {d.reused:,} samples of its parent unchanged (not part of "
        "this build's funnel)."
        if d.reused
        else ""
    )
    return (
        '<section id="funnel"><h2>Funnel: what this build kept, dropped and why</h2>'
        f'<p class="note">Candidates of this build, stage by stage in pipeline order: each bar '
        f"is what entered the stage, green what it passed on, red what it rejected.{reused}</p>"
        f'<div class="row"><div class="chart">{bars}</div></div>'
        f"<h3>Rejects by stage and reason</h3>{table}</section>"
    )


def section_sources(d: DashboardData) -> str:
    bars = svg_hbars(
        [(s["source"], [("kept", s["kept"]), ("rejected", s["rejected"])]) for s in d.sources],
        title="per source",
    )
    table = _table(
        ["source", "kept (in version)", "rejected (this build)", "kept %", "median MP", "bytes"],
        [
            (
                s["source"],
                s["kept"],
                s["rejected"],
                (
                    s["kept"] / max(s["kept"] + s["rejected"], 1),
                    _pct(s["kept"], s["kept"] + s["rejected"]),
                ),
                s["median_mp"],
                s["bytes"],
            )
            for s in d.sources
        ],
        numeric={1, 2, 4, 5},
    )
    return (
        '<section id="sources"><h2>Per source</h2>'
        '<p class="note"><span class="legend" style="background:var(--kept)"></span>kept'
        '<span class="legend" style="background:var(--rejected)"></span>rejected</p>'
        f'<div class="chart">{bars}</div>{table}</section>'
    )


def section_resolution(d: DashboardData) -> str:
    charts = "".join(
        f'<div class="chart">{svg_histogram(h, xlabel=name)}</div>'
        for name, h in d.resolution.items()
    )
    summary = "".join(
        _kpi(f"{v:.0%}" if "share" in k and v is not None else fmt(v), k)
        for k, v in d.resolution_summary.items()
    )
    return (
        '<section id="resolution"><h2>Resolution and aspect (kept samples)</h2>'
        f'<div class="kpis">{summary}</div><div class="row">{charts}</div></section>'
    )


def section_quality(d: DashboardData) -> str:
    if not d.metrics:
        return (
            '<section id="quality"><h2>IQA scores</h2>'
            '<p class="note">No IQA scores in this version.</p></section>'
        )
    charts = []
    for m in d.metrics:
        lower = lower_is_better(m.name)
        if lower is None and m.thresholds:  # not a pyiqa metric: the threshold tells the way
            lower = m.thresholds[0][0] == "max"
        if lower is None:
            direction = "direction unknown"
        else:
            direction = "lower is better" if lower else "higher is better"
        charts.append(
            f'<div class="chart"><h3>{esc(m.name)} <span class="note">({direction})</span></h3>'
            + svg_histogram(m.hist, xlabel=m.name, thresholds=m.thresholds, median=m.median)
            + "</div>"
        )
    table = _table(
        ["metric", "scored", "p10", "median", "p90", "threshold", "rejected (low quality)"],
        [
            (
                m.name,
                m.count,
                m.p10,
                m.median,
                m.p90,
                ", ".join(f"{k} {fmt(v)}" for k, v in m.thresholds) or "none",
                m.rejected,
            )
            for m in d.metrics
        ],
        numeric={1, 2, 3, 4, 6},
    )
    return (
        '<section id="quality"><h2>IQA score distributions</h2>'
        '<p class="note"><span class="legend" style="background:var(--kept)"></span>kept'
        '<span class="legend" style="background:var(--rejected)"></span>rejected as low quality '
        "(scores read from the rejects' detail; only the failing metrics are listed there)"
        '<span class="legend" style="background:var(--thr)"></span>threshold '
        "(stats.json <code>quality_thresholds</code>); dotted: median of kept.</p>"
        f'<div class="row">{"".join(charts)}</div>{table}</section>'
    )


def section_duplicates(d: DashboardData) -> str:
    kpis = (
        _kpi(fmt(d.duplicates["exact"]), "exact duplicates dropped")
        + _kpi(fmt(d.duplicates["near"]), "near duplicates dropped")
        + _kpi(fmt(d.duplicates["clusters"]), "clusters (kept samples with copies)")
    )
    blocks = []
    for c in d.clusters:
        more = f" (showing {len(c.dropped)})" if c.size > len(c.dropped) else ""
        dropped = "".join(_figure(t) for t in c.dropped)
        blocks.append(
            f'<div class="cluster">{_figure(c.kept, "keeper")}'
            f'<div class="arrow">kept; dropped {c.size:,} as {esc(", ".join(c.reasons))}{more}'
            f" →</div>{dropped}</div>"
        )
    body = "".join(blocks) or '<p class="note">No duplicates were dropped.</p>'
    return (
        '<section id="duplicates"><h2>Near-duplicate clusters</h2>'
        f'<div class="kpis">{kpis}</div>'
        '<p class="note">Largest clusters first: the kept sample (green frame) and the keys '
        "dropped as its copies.</p>"
        f"{body}</section>"
    )


def section_kept(d: DashboardData) -> str:
    grid = "".join(_figure(t) for t in d.kept_examples)
    return (
        '<section id="kept"><h2>Random kept samples</h2>'
        f'<p class="note">{len(d.kept_examples)} samples drawn with seed {d.seed} '
        "(same seed, same samples).</p>"
        f'<div class="grid-thumbs">{grid}</div></section>'
    )


def section_rejected(d: DashboardData) -> str:
    """Reason by reason (flows.dashboard.rejects); drawn examples where none is stored."""
    stored = {g.label for g in d.reject_groups if g.samples}
    drawn = [t for t in d.rejected_examples if t.reason and t.reason not in stored]
    fallback: dict[str, list[str]] = {}
    for thumb in drawn:
        fallback.setdefault(thumb.reason or "", []).append(_figure(thumb))
    shown = sum(1 for t in drawn if t.image)
    if d.staging_used:
        where = "build staging area " + ", ".join(d.staging_used)
        source = f"{shown} of them have an image, from the {where}"
    else:
        source = "no build staging area is left, so none has an image"
    note = (
        f"The other reasons show {len(drawn)} rejects drawn with seed {d.seed}: {source}; "
        "the others show their reason and detail only."
    )
    return rejects.section_rejected(d.reject_groups, fallback, esc(note))


def _ratio_cell(ratio: float | None) -> tuple[Any, str]:
    return ("", "–") if ratio is None else (ratio, f"{ratio:.1%}")


def section_history(d: DashboardData) -> str:
    labels = [h.version for h in d.history]
    metrics = [m for m in IQA_COLUMNS if any(h.medians.get(m) is not None for h in d.history)]
    counts = svg_lines(
        labels,
        {
            "samples": [h.samples for h in d.history],
            "new": [h.new_samples for h in d.history],
            "rejects": [h.rejects for h in d.history],
        },
        ylabel="counts",
    )
    ratio = svg_lines(
        labels, {"kept ratio": [h.kept_ratio for h in d.history]}, ylabel="kept ratio", percent=True
    )
    medians = "".join(
        f'<div class="chart"><h3>median {m}</h3>'
        + svg_lines(labels, {m: [h.medians.get(m) for h in d.history]}, ylabel=f"median {m}")
        + "</div>"
        for m in metrics
    )
    table = _table(
        ["version", "created", "samples", "new", "candidates", "rejects", "kept ratio"]
        + [f"median {m}" for m in metrics],
        [
            [
                h.version,
                h.created,
                h.samples,
                h.new_samples,
                h.candidates,
                h.rejects,
                _ratio_cell(h.kept_ratio),
            ]
            + [h.medians.get(m) for m in metrics]
            for h in d.history
        ],
        numeric={2, 3, 4, 5, *range(7, 7 + len(metrics))},
    )
    return (
        '<section id="history"><h2>History across versions</h2>'
        '<p class="note">Kept ratio: kept / candidates of the build that made the version.</p>'
        f'<div class="row"><div class="chart"><h3>counts</h3>{counts}</div>'
        f'<div class="chart"><h3>kept ratio</h3>{ratio}</div>{medians}</div>{table}</section>'
    )
