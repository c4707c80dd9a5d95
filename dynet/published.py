"""The published all-in-one results that every evaluation is placed beside.

Source: Dudhane et al., "Dynamic Pre-training: Towards Efficient and Scalable All-in-One Image
Restoration" (arXiv 2404.02154), the three-task all-in-one table (one model trained on
denoising, deraining and dehazing). PSNR in dB and SSIM on RGB with the protocol of
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
}
SOURCE = "Dudhane et al. 2024 (arXiv 2404.02154), all-in-one table"


@dataclass(frozen=True)
class PublishedRow:
    """One method's published PSNR/SSIM per task (keys of TASK_COLUMNS) and its average."""

    method: str
    scores: dict[str, tuple[float, float]]
    average: tuple[float, float]
    source: str = SOURCE


def _row(method: str, *pairs: tuple[float, float]) -> PublishedRow:
    *tasks, average = pairs
    return PublishedRow(method, dict(zip(TASK_COLUMNS, tasks, strict=True)), average)


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
    ),
)


def published_row(method: str) -> PublishedRow | None:
    """The published row of a method name (case-insensitive), or None when there is none."""
    for row in PUBLISHED_ROWS:
        if row.method.lower() == method.lower():
            return row
    return None
