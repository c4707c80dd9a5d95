"""The dashboard's "Throughput per stage": where a build's CPU went, stage by stage.

From stats.json's ``stage_seconds`` (``curation.partition.StageTimes``: each stage's thread
CPU and thread wall seconds and how many items it handled, summed over partitions, plus the
``dedupe`` and ``publish`` phases). One row per stage in pipeline order: items, CPU seconds,
CPU seconds per candidate of the build, items per CPU second (what one core does), wall
seconds summed over threads (waits included: network, politeness, the scoring slots) and
the stage's share of the CPU. A version published before stages were timed shows nothing.

One section of the dashboard package: ``flows.dashboard.collect`` calls :func:`stage_rows` and
``flows.dashboard.render`` :func:`section_stages`; it imports nothing of the package.
"""

from __future__ import annotations

import html
from dataclasses import dataclass
from typing import Any

#: What each stage covers, shown under its name.
DESCRIPTIONS = {
    "fetch": "read or download the bytes",
    "probe_decode": "header probe and the one reduced decode",
    "filters": "content gates on the reduced decode",
    "hashes": "sha256 of the bytes, perceptual hashes",
    "iqa": "no-reference quality scores (survivors only)",
    "staging_write": "staging shard and partition manifest",
    "dedupe": "global exact and near-duplicate removal",
    "publish": "final shards, manifest, rejects",
}


@dataclass(frozen=True)
class StageRow:
    stage: str
    items: int
    cpu_s: float
    wall_s: float
    candidates: int  # the build's candidates, for the per-candidate column

    @property
    def cpu_per_candidate(self) -> float | None:
        return self.cpu_s / self.candidates if self.candidates else None

    @property
    def items_per_cpu_s(self) -> float | None:
        return self.items / self.cpu_s if self.cpu_s > 0 and self.items else None


def stage_rows(stats: dict[str, Any]) -> list[StageRow]:
    """One row per timed stage of a version's stats.json, pipeline order; [] when untimed."""
    stages = stats.get("stage_seconds") or {}
    candidates = int((stats.get("funnel") or {}).get("candidates") or 0)
    order = [s for s in DESCRIPTIONS if s in stages] + sorted(set(stages) - set(DESCRIPTIONS))
    return [
        StageRow(
            stage,
            int(stages[stage].get("count", 0)),
            float(stages[stage].get("cpu_s", 0.0)),
            float(stages[stage].get("wall_s", 0.0)),
            candidates,
        )
        for stage in order
    ]


def _num(value: float | None, digits: int = 3) -> str:
    return "–" if value is None else f"{value:.{digits}g}"


def section_stages(rows: list[StageRow]) -> str:
    """The section's HTML; empty for a version without stage timings."""
    if not rows:
        return ""
    total_cpu = sum(row.cpu_s for row in rows)
    body = []
    for row in rows:
        share = row.cpu_s / total_cpu if total_cpu > 0 else 0.0
        cells = [
            (row.items, f"{row.items:,}"),
            (row.cpu_s, _num(row.cpu_s)),
            (row.cpu_per_candidate or 0, _num(row.cpu_per_candidate)),
            (row.items_per_cpu_s or 0, _num(row.items_per_cpu_s)),
            (row.wall_s, _num(row.wall_s)),
            (share, f"{100 * share:.1f} %"),
        ]
        body.append(
            f'<tr data-stage="{_e(row.stage)}"><td>{_e(row.stage)}'
            f'<div class="note">{_e(DESCRIPTIONS.get(row.stage, ""))}</div></td>'
            + "".join(f'<td class="num" data-v="{v}">{_e(text)}</td>' for v, text in cells)
            + "</tr>"
        )
    candidates = rows[0].candidates
    per_candidate = total_cpu / candidates if candidates else None
    head = "".join(
        f'<th class="num">{h}</th>'
        for h in (
            "items",
            "CPU s",
            "CPU s / candidate",
            "items / CPU s",
            "wall s (threads)",
            "share of CPU",
        )
    )
    return (
        '<section id="stages"><h2>Throughput per stage</h2>'
        f'<p class="note">CPU of the timed stages: {_num(total_cpu)} s, '
        f"{_num(per_candidate)} s per candidate ({candidates:,} candidates). Each stage is "
        "timed in the thread that runs it (thread CPU time; dedupe and publish, which run "
        "alone, by process CPU). Items per CPU second is what one core does at that stage; "
        "wall seconds add up the threads' time, waits included.</p>"
        '<table class="sortable"><thead><tr><th>stage</th>'
        f"{head}</tr></thead><tbody>{''.join(body)}</tbody></table></section>"
    )


def _e(text: object) -> str:
    return html.escape(str(text), quote=True)
