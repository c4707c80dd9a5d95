"""The dashboard's "Rejected examples", reason by reason, from the version's stored thumbnails.

A published version keeps thumbnails of a bounded sample of its rejects (``vN/reject_samples``,
see ``curation.reject_samples``): candidates rejected after their image was decoded (filters,
quality, dedupe), with what was measured. For each reject reason the section shows a heading
with the count of rejects, the threshold(s) that fired (read from the rejects' ``detail``,
e.g. ``blur_laplacian_var=120 < 150``, so no measurement name is known here), then a grid of
thumbnails, each with its measurements; the measurements named in the detail are highlighted.
Reasons without stored thumbnails (rejected before any decode, or a version published before
thumbnails existed) show the examples ``flows.dashboard.collect`` drew, with or without an
image.

One section of the dashboard package: ``flows.dashboard.collect`` calls :func:`reason_groups`
and ``flows.dashboard.sections`` :func:`section_rejected`; it imports nothing of the package.
"""

from __future__ import annotations

import base64
import html
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import duckdb

from curation.reasons import describe, is_transient
from storage.uri import join, unstrip
from storage.versions import Dataset

#: Thumbnails drawn per reason on the page (the version may keep more: per_reason).
SHOWN_PER_REASON = 12
#: "name=value < limit" (or >, <=, >=) in a reject's detail: the threshold that fired.
_FIRED_RE = re.compile(r"([A-Za-z_][\w.:-]*)\s*=\s*[^;,<>=]*?\s*(<=|>=|<|>)\s*([-+0-9.eE]+)")


@dataclass
class StoredReject:
    candidate_id: str
    image: str  # data: URI of the stored JPEG
    caption: list[str]
    detail: str | None
    measurements: list[tuple[str, float]]


@dataclass
class ReasonGroup:
    stage: str
    reason: str
    count: int  # rejects of this reason in the version
    stored: int  # thumbnails the version keeps for it
    samples: list[StoredReject] = field(default_factory=list)
    thresholds: list[str] = field(default_factory=list)  # "name < limit", as fired

    @property
    def label(self) -> str:
        return f"{self.stage}/{self.reason}"


def _e(text: Any) -> str:
    return html.escape(str(text), quote=True)


def _fmt(value: float) -> str:
    return f"{value:.4g}"


def sample_files(dataset: Dataset, version: str) -> list[str]:
    """DuckDB-readable URIs of the version's reject_samples Parquet files ([] if none)."""
    fs, base = dataset.fs, join(dataset.path, version, "reject_samples")
    if not fs.exists(base):
        return []
    return [unstrip(fs, p) for p in sorted(fs.ls(base, detail=False)) if p.endswith(".parquet")]


def fired_thresholds(details: Sequence[str | None]) -> list[str]:
    """Distinct "name < limit" found in rejects' details, in first-seen order."""
    found: dict[str, None] = {}
    for detail in details:
        for name, op, limit in _FIRED_RE.findall(detail or ""):
            found.setdefault(f"{name} {op} {limit}", None)
    return list(found)


def reason_groups(
    con: duckdb.DuckDBPyConnection,
    files: list[str],
    reasons: Sequence[tuple[str, str, int]],
    quality_thresholds: Mapping[str, list[tuple[str, float]]] | None = None,
    shown: int = SHOWN_PER_REASON,
) -> list[ReasonGroup]:
    """One group per (stage, reason, count) of ``reasons`` (the funnel's order), holding the
    ``shown`` stored thumbnails of smallest candidate id. Thumbnail bytes are read only for
    those: the table may be large when the build kept every reject's (``per_reason: None``)."""
    groups = [ReasonGroup(stage, reason, int(n), 0) for stage, reason, n in reasons]
    by_key = {(g.stage, g.reason): g for g in groups}
    if files:
        source = f"read_parquet([{', '.join(_sql_str(f) for f in files)}], union_by_name = true)"
        for stage, reason, stored in con.execute(
            f"SELECT stage, reason, count(*) FROM {source} GROUP BY ALL"
        ).fetchall():
            if (stage, reason) in by_key:
                by_key[(stage, reason)].stored = int(stored)
        rows = con.execute(
            f"""
            WITH picked AS (
                SELECT candidate_id, stage, reason FROM {source}
                QUALIFY row_number() OVER (PARTITION BY stage, reason ORDER BY candidate_id)
                        <= $shown
            )
            SELECT s.stage, s.reason, s.candidate_id, s.url, s.source, s.detail, s.thumbnail,
                   map_keys(s.measurements), map_values(s.measurements)
            FROM {source} s SEMI JOIN picked p
              ON s.candidate_id = p.candidate_id AND s.stage = p.stage AND s.reason = p.reason
            ORDER BY s.stage, s.reason, s.candidate_id
            """,
            {"shown": int(shown)},
        ).fetchall()
        for stage, reason, cid, url, src, detail, thumbnail, keys, values in rows:
            group = by_key.get((stage, reason))
            if group is None:  # a thumbnail of a reason the rejects table lacks: not shown
                continue
            image = "data:image/jpeg;base64," + base64.b64encode(thumbnail).decode("ascii")
            measurements = sorted(zip(keys or [], values or [], strict=True))
            caption = [cid, " · ".join(t for t in (src, url) if t)]
            group.samples.append(StoredReject(cid, image, caption, detail, measurements))
    for group in groups:
        group.thresholds = fired_thresholds([s.detail for s in group.samples])
        metric = group.reason.removeprefix("low_quality:")
        if not group.thresholds and metric != group.reason:
            limits = (quality_thresholds or {}).get(metric, [])
            group.thresholds = [f"{metric} {kind} {_fmt(v)}" for kind, v in limits]
    return groups


def _sql_str(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def _measures(sample: StoredReject) -> str:
    detail = sample.detail or ""
    spans = []
    for name, value in sample.measurements:
        fired = re.search(rf"(?<![\w.]){re.escape(name)}(?![\w.])", detail) is not None
        cls = ' class="fired"' if fired else ""
        spans.append(f"<span{cls}>{_e(name)} {_e(_fmt(value))}</span>")
    return f'<div class="measures">{"".join(spans)}</div>' if spans else ""


def _stored_figure(group: ReasonGroup, sample: StoredReject) -> str:
    lines = [f'<div class="reason">{_e(group.label)}</div>']
    lines += [f"<div>{_e(line)}</div>" for line in sample.caption if line]
    lines.append(_measures(sample))
    if sample.detail:
        lines.append(f'<div class="detail">{_e(sample.detail)}</div>')
    return (
        f'<figure data-reason="{_e(group.label)}">'
        f'<img src="{sample.image}" alt="{_e(sample.candidate_id)}" width="160" height="120">'
        f"<figcaption>{''.join(lines)}</figcaption></figure>"
    )


def _group_block(group: ReasonGroup, fallback: Sequence[str]) -> str:
    if group.samples:
        figures = "".join(_stored_figure(group, s) for s in group.samples)
        more = f" of {group.stored:,}" if group.stored > len(group.samples) else ""
        kept = f"{len(group.samples)}{more} thumbnails kept in the version"
    else:
        figures = "".join(fallback)
        kept = "no thumbnail kept (rejected before its image was decoded)"
        if fallback:
            kept += f"; {len(fallback)} drawn example(s)"
    thresholds = ", ".join(group.thresholds)
    fired = f" · threshold: <code>{_e(thresholds)}</code>" if thresholds else ""
    grid = f'<div class="grid-thumbs">{figures}</div>' if figures else ""
    return (
        f'<div class="reject-group" data-reason="{_e(group.label)}">'
        f'<h3>{_e(group.label)} <span class="count">· {group.count:,} rejected</span></h3>'
        f'<p class="meaning">{_e(_meaning(group.reason))}</p>'
        f'<p class="note">{_e(kept)}{fired}</p>{grid}</div>'
    )


def _meaning(code: str) -> str:
    """The catalogue's line for ``code`` and whether the next build retries it."""
    retry = "the next build tries it again" if is_transient(code) else "lasting"
    return f"{describe(code)} ({retry})"


def section_rejected(
    groups: Sequence[ReasonGroup], fallback: Mapping[str, Sequence[str]], note: str
) -> str:
    """The whole "Rejected examples" section. ``fallback``: "stage/reason" -> figures (HTML)
    shown for a reason without stored thumbnails; ``note``: HTML saying where those came from.
    Keeps the ids the page's script and tests use (``reject-filter``, ``rejected-grid``)."""
    options = '<option value="">all reasons</option>' + "".join(
        f'<option value="{_e(g.label)}">{_e(g.label)} ({g.count:,})</option>' for g in groups
    )
    blocks = "".join(_group_block(g, fallback.get(g.label, ())) for g in groups)
    stored = sum(len(g.samples) for g in groups)
    return (
        '<section id="rejected"><h2>Rejected examples</h2>'
        f'<p class="note">Every reject reason of this build, with its count. {stored} stored '
        "thumbnails (<code>reject_samples</code>: candidates rejected after their image was "
        "decoded, the smallest candidate ids of each reason) with their measurements; those "
        f"named in the reject's detail, the threshold that fired, in red. {note}</p>"
        f'<div class="filter"><label>Reason: <select id="reject-filter">{options}</select>'
        f'</label></div><div id="rejected-grid">{blocks}</div></section>'
    )
