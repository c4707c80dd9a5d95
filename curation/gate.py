"""One image through the whole curation gate, every stage decided: probe, reduced decode,
content gates and IQA thresholds.

A build stops at the first reject (``curation.partition``); :func:`judge` measures everything
and records every gate's verdict, for ``mird explain``, ``mird calibrate`` and the accuracy
benchmark (``bench.curation_accuracy``). Both paths call the same functions: ``Prober``,
``run_filters`` and ``QualityScorer`` with the same configuration models, so what ``judge``
says is what a build would have done.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from curation.config import CurationConfig
from curation.filters import GateDecision, run_filters
from curation.probe import HeaderProbe, Prober
from curation.quality import QualityConfig, QualityScorer, threshold_verdict
from curation.reasons import low_quality
from curation.records import Rejection


@dataclass
class GateReport:
    """Everything measured about one image, and every gate's verdict, in pipeline order."""

    header: HeaderProbe | None = None
    measurements: dict[str, float | int] = field(default_factory=dict)
    scores: dict[str, float] = field(default_factory=dict)
    decisions: list[GateDecision] = field(default_factory=list)
    reason: str | None = None  # the reject reason a build would record; None: kept
    stage: str | None = None  # probe, decode, filter or quality
    detail: str = ""

    @property
    def kept(self) -> bool:
        return self.reason is None

    def _first(self, stage: str, decision: GateDecision) -> None:
        self.decisions.append(decision)
        if decision.reason is not None and self.reason is None:
            self.reason, self.stage, self.detail = decision.reason, stage, decision.detail

    def to_dict(self) -> dict[str, Any]:
        header = None
        if self.header is not None:
            header = {
                "format": self.header.format,
                "width": self.header.width,
                "height": self.header.height,
                "mode": self.header.mode,
                "orientation": self.header.orientation,
            }
        return {
            "decision": "kept" if self.kept else "rejected",
            "reason": self.reason,
            "stage": self.stage,
            "detail": self.detail,
            "header": header,
            "measurements": {k: _plain(v) for k, v in self.measurements.items()},
            "scores": {k: _plain(v) for k, v in self.scores.items()},
            "gates": [
                {"gate": d.gate, "passed": d.passed, "reason": d.reason, "detail": d.detail}
                for d in self.decisions
            ],
        }


def _plain(value: float | int) -> float | int | None:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return round(value, 4) if isinstance(value, float) else value


class Gate:
    """The probe, the content gates and the IQA scorer under one configuration; reusable."""

    def __init__(self, curation: CurationConfig, quality: QualityConfig | None) -> None:
        self.curation = curation
        self.prober = Prober(curation.probe)
        self.scorer = QualityScorer(quality) if quality is not None else None

    def judge(self, data: bytes, *, score_rejected: bool = True) -> GateReport:
        """Decide every gate for ``data`` (the original bytes); never raises on bad input.

        ``score_rejected=False`` skips the IQA scores of an image a content gate already
        rejected (about a second of CPU each; ``mird calibrate`` scores only what passes)."""
        report = GateReport()
        try:
            report.header = self.prober.probe_header(data)
        except Rejection as rejection:
            report._first("probe", GateDecision("probe", rejection.reason, rejection.detail))
            return report
        report.measurements["exif_orientation"] = report.header.orientation
        report._first("probe", GateDecision("probe", None, _size(report.header)))
        try:
            image = self.prober.reduced_decode(data, report.header)
        except Rejection as rejection:
            report._first("decode", GateDecision("decode", rejection.reason, rejection.detail))
            return report
        report._first("decode", GateDecision("decode", None, f"reduced to {_wh(image.size)}"))
        if self.curation.filters.enabled:
            verdict = run_filters(image, self.curation.filters, evaluate_all=True)
            report.measurements.update(verdict.measurements)
            for decision in verdict.decisions:
                report._first("filter", decision)
        if self.scorer is not None and (score_rejected or report.kept):
            report.scores = self.scorer.score([image])[0]
            for metric, limit in self.scorer.config.thresholds.items():
                value = float(report.scores.get(metric, math.nan))
                lower = self.scorer.lower_better.get(metric, True)
                passed, detail = threshold_verdict(metric, value, limit, lower)
                reason = None if passed else low_quality(metric)
                report._first("quality", GateDecision(f"iqa:{metric}", reason, detail))
        return report


def _wh(size: tuple[int, int]) -> str:
    return f"{size[0]}x{size[1]}"


def _size(header: HeaderProbe) -> str:
    return f"{header.format} {header.width}x{header.height} {header.mode}"
