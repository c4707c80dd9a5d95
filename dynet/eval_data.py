"""The test data of the all-in-one evaluation: the official layout and the paper's protocol.

Protocol (the facts of the authors' public test code; every number here means what it means
there):

* Test layout under ``ROOT/test``: ``denoise/bsd68/*`` (clean images; Gaussian noise of sigma
  15, 25 and 50 is added here), ``derain/Rain100L/{input,target}`` and ``dehaze/{input,target}``
  (SOTS outdoor, RESIDE naming: hazy ``ID_*.ext`` -> clean ``ID.ext``); ``denoise/urban100/*``
  (clean, sigma 15/25/50 as BSD68) is scored too when present, in extra columns.
* Every image is center-cropped to a multiple of 16 (no padding) before anything else.
* Noise: ``clip(clean_uint8 + sigma * N(0, 1), 0, 255)`` cast to uint8 (a truncation, as in the
  official code). The generator is seeded per image from ``(seed=0, file name, sigma)``, so the
  noisy image does not depend on the order in which images or tasks are evaluated.
* The network's output is clamped to [0, 1] and scored as float against the clean image:
  PSNR/SSIM on RGB with scikit-image's defaults (see :mod:`dynet.metrics`), averaged over the
  images of a task; Y-channel scores (BT.601 YCbCr Y, Gaussian-window SSIM) in separate columns.
* Every table has a "degraded input" row: the same scores of the network's input itself, the
  bar any restorer has to clear.

The runs themselves are in :mod:`dynet.evaluate`, the result files in :mod:`dynet.eval_reports`.
"""

from __future__ import annotations

import hashlib
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from dynet.imaging import CROP_MULTIPLE, center_crop_multiple, read_rgb
from dynet.published import TASK_COLUMNS, TASK_TITLES, URBAN100_COLUMNS

NOISE_SEED = 0
DENOISE_SIGMAS: dict[str, int] = {"denoise_15": 15, "denoise_25": 25, "denoise_50": 50}
IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp"})


# --------------------------------------------------------------------------------------------
# Errors: each names the file or folder at fault.


class EvaluationDataError(ValueError):
    """The test data is not in the official layout (a missing folder, a bad pair, a bad file)."""


class MissingTaskDataError(EvaluationDataError, FileNotFoundError):
    """A task's folder is missing or holds no images."""


class MismatchedPairsError(EvaluationDataError):
    """Degraded inputs without a matching clean target (or targets of another size)."""


class UnreadableImageError(EvaluationDataError):
    """An image file that cannot be decoded."""


# --------------------------------------------------------------------------------------------
# Tasks and their data.


@dataclass(frozen=True)
class TaskSpec:
    """Where a task's test images live under ``ROOT/test`` and how they are degraded."""

    key: str
    dataset: str
    folder: str
    sigma: int | None = None  # denoising: noise added here; otherwise input/ and target/

    @property
    def title(self) -> str:
        return TASK_TITLES[self.key]


TASK_SPECS: dict[str, TaskSpec] = {
    "dehaze": TaskSpec("dehaze", "SOTS outdoor", "dehaze"),
    "derain": TaskSpec("derain", "Rain100L", "derain/Rain100L"),
    **{
        key: TaskSpec(key, "BSD68", "denoise/bsd68", sigma=sigma)
        for key, sigma in DENOISE_SIGMAS.items()
    },
    **{
        key: TaskSpec(key, "Urban100", "denoise/urban100", sigma=sigma)
        for key, sigma in zip(URBAN100_COLUMNS, DENOISE_SIGMAS.values(), strict=True)
    },
}
ALL_COLUMNS: tuple[str, ...] = (*TASK_COLUMNS, *URBAN100_COLUMNS)
INPUT_LABEL = "Degraded input"
TASK_ALIASES: dict[str, tuple[str, ...]] = {
    "denoise": tuple(DENOISE_SIGMAS),
    "urban100": URBAN100_COLUMNS,
    "all": ALL_COLUMNS,
    "sots": ("dehaze",),
    "rain100l": ("derain",),
    "bsd68": tuple(DENOISE_SIGMAS),
}


def resolve_tasks(names: Sequence[str] | None) -> tuple[str, ...]:
    """Task keys, in the table's column order, from names like ``denoise`` or ``denoise_25``.

    No names: the paper's five tasks and Urban100 (which is skipped quietly when absent)."""
    if not names:
        return ALL_COLUMNS
    chosen: set[str] = set()
    for raw in names:
        for name in (part.strip().lower() for part in raw.split(",")):
            if not name:
                continue
            if name in TASK_SPECS:
                chosen.add(name)
            elif name in TASK_ALIASES:
                chosen.update(TASK_ALIASES[name])
            else:
                known = ", ".join([*TASK_SPECS, *TASK_ALIASES])
                raise ValueError(f"unknown task {name!r}; choose from {known}")
    return tuple(key for key in ALL_COLUMNS if key in chosen)


@dataclass(frozen=True)
class EvalPair:
    """One test image: the degraded input (None: add noise to the target) and the clean target."""

    name: str
    target: Path
    degraded: Path | None = None


@dataclass
class TaskData:
    """The pairs of one task, and what was left out of it (only with ``skip_missing``)."""

    spec: TaskSpec
    folder: Path
    pairs: list[EvalPair]
    skipped: list[dict[str, str]] = field(default_factory=list)


def find_test_root(data_root: Path) -> Path:
    """``ROOT/test`` in the official layout; ``ROOT`` itself when it already is that folder."""
    data_root = Path(data_root)
    if (data_root / "test").is_dir():
        return data_root / "test"
    if any((data_root / name).is_dir() for name in ("denoise", "derain", "dehaze")):
        return data_root
    raise MissingTaskDataError(
        f"no test data under {data_root}: expected {data_root / 'test'}/"
        "{denoise/bsd68, derain/Rain100L/{input,target}, dehaze/{input,target}}"
    )


def _image_files(folder: Path) -> list[Path]:
    if not folder.is_dir():
        raise MissingTaskDataError(f"missing test folder {folder}")
    files = sorted(
        p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES
    )
    if not files:
        raise MissingTaskDataError(f"no images in test folder {folder}")
    return files


def _target_stem_candidates(task: str, input_stem: str) -> list[str]:
    if task == "dehaze":  # RESIDE: 0001_0.8_0.2 -> 0001
        return [input_stem.split("_", 1)[0]]
    candidates = [input_stem]
    if input_stem.lower().startswith("rain-"):  # Rain100L as distributed: rain-001 -> norain-001
        candidates.append("no" + input_stem)
    return candidates


def _paired(task: str, folder: Path) -> tuple[list[EvalPair], list[str]]:
    inputs = _image_files(folder / "input")
    targets = {p.stem: p for p in _image_files(folder / "target")}
    pairs: list[EvalPair] = []
    unmatched: list[str] = []
    for degraded in inputs:
        match = next(
            (targets[s] for s in _target_stem_candidates(task, degraded.stem) if s in targets),
            None,
        )
        if match is None:
            unmatched.append(degraded.name)
        else:
            pairs.append(EvalPair(degraded.name, match, degraded))
    return pairs, unmatched


def discover_task(data_root: Path, task: str, skip_missing: bool = False) -> TaskData:
    """The test pairs of ``task`` under ``data_root``; raises on a missing folder or bad names."""
    spec = TASK_SPECS[task]
    folder = find_test_root(data_root) / spec.folder
    if spec.sigma is not None:
        pairs = [EvalPair(p.name, p) for p in _image_files(folder)]
        return TaskData(spec, folder, pairs)
    pairs, unmatched = _paired(task, folder)
    data = TaskData(spec, folder, pairs)
    if unmatched:
        shown = ", ".join(unmatched[:5]) + (" ..." if len(unmatched) > 5 else "")
        message = (
            f"{len(unmatched)} input(s) in {folder / 'input'} have no target in "
            f"{folder / 'target'}: {shown}"
        )
        if not skip_missing or not pairs:
            raise MismatchedPairsError(message)
        warnings.warn(f"skipping {message}", stacklevel=2)
        data.skipped.extend({"name": n, "reason": "no matching target"} for n in unmatched)
    return data


# --------------------------------------------------------------------------------------------
# Images: the protocol's crop and its noise.


def noise_seed(name: str, sigma: float, base_seed: int = NOISE_SEED) -> np.random.SeedSequence:
    """The seed of one image's noise: a function of the file name and sigma, not of the order."""
    digest = hashlib.sha256(f"{name}\0{float(sigma)!r}".encode()).digest()
    words = np.frombuffer(digest[:16], dtype="<u4").tolist()
    return np.random.SeedSequence([base_seed, *words])


def add_gaussian_noise(
    clean: np.ndarray, sigma: float, name: str, base_seed: int = NOISE_SEED
) -> np.ndarray:
    """The protocol's noisy image: ``clip(clean + sigma * N(0, 1), 0, 255)`` as uint8."""
    if clean.dtype != np.uint8:
        raise TypeError(f"noise is added to uint8 images, got {clean.dtype}")
    rng = np.random.default_rng(noise_seed(name, sigma, base_seed))
    noisy = clean.astype(np.float64) + sigma * rng.standard_normal(clean.shape)
    return np.clip(noisy, 0.0, 255.0).astype(np.uint8)


def _read(path: Path) -> np.ndarray:
    return read_rgb(path, UnreadableImageError)


def load_pair(spec: TaskSpec, pair: EvalPair) -> tuple[np.ndarray, np.ndarray]:
    """(degraded, clean) uint8 HxWx3, both cropped to multiples of 16."""
    clean = center_crop_multiple(_read(pair.target), name=f"image {pair.target}")
    if spec.sigma is not None:
        return add_gaussian_noise(clean, spec.sigma, pair.name), clean
    assert pair.degraded is not None
    degraded = center_crop_multiple(_read(pair.degraded), name=f"image {pair.degraded}")
    if degraded.shape != clean.shape:
        raise MismatchedPairsError(
            f"{pair.degraded} is {degraded.shape[1]}x{degraded.shape[0]} after cropping but its "
            f"target {pair.target} is {clean.shape[1]}x{clean.shape[0]}"
        )
    return degraded, clean


def validate_task(data: TaskData, skip_missing: bool = False) -> None:
    """Decode every pair once before any model runs, so a bad file fails fast."""
    good: list[EvalPair] = []
    for pair in data.pairs:
        try:
            load_pair(data.spec, pair)
        except EvaluationDataError as exc:
            if not skip_missing:
                raise
            warnings.warn(f"skipping {pair.name}: {exc}", stacklevel=2)
            data.skipped.append({"name": pair.name, "reason": str(exc)})
        else:
            good.append(pair)
    if not good:
        raise MissingTaskDataError(f"no usable images in {data.folder}")
    data.pairs = good


def collect_tasks(
    data_root: Path, tasks: Sequence[str], skip_missing: bool = False
) -> tuple[list[TaskData], dict[str, str]]:
    """Discover and validate the requested tasks; with ``skip_missing`` gaps are returned."""
    found: list[TaskData] = []
    missing: dict[str, str] = {}
    for task in tasks:
        try:
            data = discover_task(data_root, task, skip_missing)
            validate_task(data, skip_missing)
        except (MissingTaskDataError, MismatchedPairsError) as exc:
            if not skip_missing:
                raise
            warnings.warn(f"skipping task {task}: {exc}", stacklevel=2)
            missing[task] = str(exc)
        else:
            found.append(data)
    if not found:
        raise MissingTaskDataError(
            f"none of the tasks {', '.join(tasks)} has test data under {data_root}"
        )
    return found, missing


PROTOCOL_NOTES: dict[str, str] = {
    "crop": f"center crop to a multiple of {CROP_MULTIPLE}, no padding",
    "noise": (
        f"clip(clean_uint8 + sigma * N(0,1), 0, 255) cast to uint8; generator seeded from "
        f"(seed {NOISE_SEED}, file name, sigma), independent of evaluation order"
    ),
    "output": "clamped to [0, 1], scored as float",
    "psnr_ssim": (
        "RGB in [0, 1], as skimage peak_signal_noise_ratio(data_range=1) and "
        "structural_similarity(data_range=1, channel_axis=2), mean over images"
    ),
    "psnr_y_ssim_y": (
        "Y channel of BT.601 YCbCr (16-235)/255; SSIM with an 11x11 Gaussian window "
        "(sigma 1.5), mean over images; not comparable with the RGB columns"
    ),
}
