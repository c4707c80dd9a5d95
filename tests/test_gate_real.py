"""The content gate on real photographs, hard cases made from them, and graphics
(``tests.real_images``): each fixture gets its decision and reason, lossless and as a JPEG
through the probe and the reduced decode. The confusion table is printed in every run.

Fixtures the gate is known to get wrong are strict expected failures (``known_wrong``): the
day the gate gets them right, the test says so.
"""

from __future__ import annotations

from collections import Counter
from functools import cache, lru_cache

import pytest
from PIL import Image

from curation.config import CurationConfig, FilterConfig, ProbeConfig
from curation.filters import run_filters
from curation.gate import Gate
from curation.quality import QualityConfig
from tests.real_images import ENCODINGS, FIXTURES, HARD_CASE_NEVER, Fixture, encoded

BY_NAME = {fixture.name: fixture for fixture in FIXTURES}
#: scikit-image's photographs are 300-640 px: below the default 1024 px rule, so the probe here
#: takes 256 (everything else default).
SMALL = CurationConfig(probe=ProbeConfig(min_side=256))
SHOWN = (
    "focus_sharpness", "focus_fraction", "noise_floor", "flat_fraction", "luma_p99",
    "dark_fraction", "clipped_fraction", "saturation", "exact_flat_fraction",
    "top_colors_fraction", "straight_edges",
)  # fmt: skip
#: Kept fixtures scored by IQA too (about a second each): one of each hard kind, and the
#: rocket, which an earlier NIQE threshold (8) rejected.
IQA_FIXTURES = (
    "rocket", "dof-astronaut", "haze-rocket", "lowkey-chelsea", "sky-motorcycle", "water-astronaut",
)  # fmt: skip


@cache
def _pixels(name: str) -> Image.Image:
    return BY_NAME[name].make()


@lru_cache(maxsize=1)
def _filters_only() -> Gate:
    return Gate(SMALL, None)


@cache
def _verdict(name: str, encoding: str) -> tuple[str | None, dict, frozenset[str]]:
    """(first reject reason or None, measurements, every reason any gate gives)."""
    if encoding == "lossless":
        result = run_filters(_pixels(name), FilterConfig(), evaluate_all=True)
        reason, measurements, decisions = result.reason, result.measurements, result.decisions
    else:
        report = _filters_only().judge(encoded(_pixels(name)))
        reason, measurements, decisions = report.reason, report.measurements, report.decisions
    return reason, measurements, frozenset(d.reason for d in decisions if d.reason)


def _right(fixture: Fixture, reason: str | None) -> bool:
    return reason is None if fixture.reasons is None else reason in fixture.reasons


def _cases() -> list:
    cases = []
    for fixture in FIXTURES:
        for encoding in ENCODINGS:
            marks = []
            if encoding in fixture.known_wrong:
                marks.append(pytest.mark.xfail(strict=True, reason=fixture.known_wrong[encoding]))
            cases.append(
                pytest.param(fixture, encoding, id=f"{fixture.name}-{encoding}", marks=marks)
            )
    return cases


@pytest.mark.parametrize(("fixture", "encoding"), _cases())
def test_fixture_gets_its_decision_and_reason(fixture: Fixture, encoding: str) -> None:
    reason, measurements, _ = _verdict(fixture.name, encoding)
    shown = {k: round(measurements[k], 2) for k in SHOWN if k in measurements}
    assert _right(fixture, reason), (fixture.expected, reason, shown)


@pytest.mark.parametrize("encoding", ENCODINGS)
def test_hard_cases_are_never_called_blurry_dark_or_flat(encoding: str) -> None:
    """Not even by a later gate (every gate decided): these are the global measures that used
    to throw depth of field, haze, night scenes, skies and water away. Known wrong ones too:
    whatever the gate gets wrong about them, it is not this."""
    wrong = {}
    for fixture in FIXTURES:
        if fixture.kind in ("hard", "photo"):
            fired = _verdict(fixture.name, encoding)[2] & HARD_CASE_NEVER
            if fired:
                wrong[fixture.name] = sorted(fired)
    assert not wrong


@pytest.mark.parametrize("encoding", ENCODINGS)
def test_featureless_gradient_is_flat_and_the_rendering_evidence_agrees(encoding: str) -> None:
    reason, measurements, fired = _verdict("gradient", encoding)
    assert reason == "flat"
    assert "graphic" in fired  # no sensor noise, and vivid: a render's two signs
    assert measurements["noise_floor"] < FilterConfig().render_max_noise


def test_confusion_table(capsys: pytest.CaptureFixture[str]) -> None:
    confusion: Counter[tuple[str, str]] = Counter()
    rows, unexpected = [], []
    for fixture in FIXTURES:
        for encoding in ENCODINGS:
            reason, measurements, _ = _verdict(fixture.name, encoding)
            got = reason or "kept"
            confusion[(fixture.expected, got)] += 1
            right = _right(fixture, reason)
            if not right and encoding not in fixture.known_wrong:
                unexpected.append((fixture.name, encoding, got))
            flag = "ok" if right else ("KNOWN" if encoding in fixture.known_wrong else "WRONG")
            values = " ".join(f"{k}={measurements[k]:.2f}" for k in SHOWN if k in measurements)
            rows.append(
                f"{fixture.name:22s} {encoding:8s} {fixture.expected:16s} {got:16s} {flag:5s} "
                + values
            )
    expected_labels = sorted({e for e, _ in confusion})
    labels = sorted(set(expected_labels) | {g for _, g in confusion})
    width = max(map(len, labels)) + 2
    table = ["expected \\ got".ljust(width) + "".join(label.rjust(width) for label in labels)]
    for expected in expected_labels:
        row = "".join(str(confusion[(expected, got)]).rjust(width) for got in labels)
        table.append(expected.ljust(width) + row)
    with capsys.disabled():  # shown in every run, not only with -s
        print("\n" + "\n".join(table + [""] + rows))
    assert not unexpected, unexpected


@pytest.fixture(scope="module")
def full_gate() -> Gate:
    return Gate(SMALL, QualityConfig())  # the default IQA metrics and thresholds


@pytest.mark.slow  # IQA: ~1 s an image on two CPU cores, plus loading the metrics
@pytest.mark.parametrize("name", IQA_FIXTURES)
def test_kept_hard_cases_pass_every_gate_and_iqa(full_gate: Gate, name: str) -> None:
    """The whole gate as a build runs it (probe, reduced decode, filters, NIQE, BRISQUE,
    PIQE at their defaults), on a JPEG of quality 92."""
    assert BY_NAME[name].reasons is None and not BY_NAME[name].known_wrong
    report = full_gate.judge(encoded(_pixels(name)))
    failed = [(d.gate, d.reason, d.detail) for d in report.decisions if not d.passed]
    assert report.kept and not failed, (failed, report.scores)
    assert {"niqe", "brisque", "piqe"} <= set(report.scores)
