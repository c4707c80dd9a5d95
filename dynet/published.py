"""The published all-in-one results that every evaluation is placed beside.

Source of the rows: the three-task all-in-one table (one model trained on denoising, deraining
and dehazing) as the authors' public repository (akshaydudhane16/DyNet, README) gives it, for
Dudhane et al., "Dynamic Pre-training: Towards Efficient and Scalable All-in-One Image
Restoration" (arXiv 2404.02154). The paper's later revision reports other figures for DyNet;
where they differ, and are recorded here, they are kept beside the row (``other_revisions``)
rather than mixed into it. PSNR in dB and SSIM on RGB with the protocol of
:mod:`dynet.evaluate`; the average is over the five task columns.
"""

from __future__ import annotations

from dataclasses import dataclass

# Task keys in the paper's column order; `dynet.evaluate` uses the same keys.
TASK_COLUMNS: tuple[str, ...] = ("dehaze", "derain", "denoise_15", "denoise_25", "denoise_50")
TASK_TITLES: dict[str, str] = {
    "dehaze": "SOTS (dehaze)",
    "derain": "Rain100L (derain)",
    "denoise_15": "BSD68 σ=15",
    "denoise_25": "BSD68 σ=25",
    "denoise_50": "BSD68 σ=50",
    "urban100_15": "Urban100 σ=15",
    "urban100_25": "Urban100 σ=25",
    "urban100_50": "Urban100 σ=50",
}
#: Denoising on Urban100, scored when the test layout holds it; nothing published to compare.
URBAN100_COLUMNS: tuple[str, ...] = ("urban100_15", "urban100_25", "urban100_50")
SOURCE = "DyNet repository README (akshaydudhane16/DyNet), all-in-one table"
SOURCE_SHORT = "repo README"
REVISION_2 = "arXiv 2404.02154v2"


@dataclass(frozen=True)
class Revision:
    """Another source's figures for a row, where they differ from it: PSNR per task and the
    average (None: not recorded here)."""

    source: str
    psnr: dict[str, float]
    average_psnr: float | None = None


@dataclass(frozen=True)
class PublishedRow:
    """One method's published PSNR/SSIM per task (keys of TASK_COLUMNS) and its average."""

    method: str
    scores: dict[str, tuple[float, float]]
    average: tuple[float, float]
    source: str = SOURCE
    source_short: str = SOURCE_SHORT
    other_revisions: tuple[Revision, ...] = ()


def _row(
    method: str, *pairs: tuple[float, float], revisions: tuple[Revision, ...] = ()
) -> PublishedRow:
    *tasks, average = pairs
    scores = dict(zip(TASK_COLUMNS, tasks, strict=True))
    return PublishedRow(method, scores, average, other_revisions=revisions)


PUBLISHED_ROWS: tuple[PublishedRow, ...] = (
    _row(
        "AirNet",
        (27.94, 0.962),
        (34.90, 0.967),
        (33.92, 0.933),
        (31.26, 0.888),
        (28.00, 0.797),
        (31.20, 0.910),
    ),
    _row(
        "PromptIR",
        (30.58, 0.974),
        (36.37, 0.972),
        (33.98, 0.933),
        (31.31, 0.888),
        (28.06, 0.799),
        (32.06, 0.913),
    ),
    _row(
        "DyNet-S",
        (31.51, 0.980),
        (38.11, 0.981),
        (34.06, 0.935),
        (31.41, 0.891),
        (28.15, 0.802),
        (32.65, 0.918),
    ),
    _row(
        "DyNet-L",
        (31.98, 0.981),
        (38.71, 0.983),
        (34.11, 0.936),
        (31.44, 0.892),
        (28.18, 0.803),
        (32.88, 0.920),
        # The revised paper's table gives DyNet-L a 32.74 dB average; its per-task cells are
        # not transcribed here yet (see docs/recipes.md).
        revisions=(Revision(REVISION_2, {}, 32.74),),
    ),
)


def published_row(method: str) -> PublishedRow | None:
    """The published row of a method name (case-insensitive), or None when there is none."""
    for row in PUBLISHED_ROWS:
        if row.method.lower() == method.lower():
            return row
    return None
