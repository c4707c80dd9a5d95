"""All-in-one evaluation with the paper's protocol, and the comparison table.

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

Images are restored whole unless a tile size is forced or the image exceeds
``max_whole_pixels`` (or the GPU runs out of memory); then ``dynet.tiling.restore_tensor`` (the
tiling of ``mird restore``) is used. The choice is recorded per image and per task.
"""

from __future__ import annotations

import contextlib
import csv
import hashlib
import io
import json
import math
import re
import time
import warnings
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError
from torch import nn

from dynet.imaging import CROP_MULTIPLE, center_crop_multiple
from dynet.metrics import PairScores, score_pair
from dynet.published import (
    PUBLISHED_ROWS,
    TASK_COLUMNS,
    TASK_TITLES,
    URBAN100_COLUMNS,
    published_row,
)

NOISE_SEED = 0
DENOISE_SIGMAS: dict[str, int] = {"denoise_15": 15, "denoise_25": 25, "denoise_50": 50}
IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp"})
METRIC_KEYS: tuple[str, ...] = ("psnr", "ssim", "psnr_y", "ssim_y")
DEFAULT_TILE = 512
DEFAULT_OVERLAP = 32
GRID_IMAGES = 3  # images per task in the side-by-side grid


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
# Images: reading, the protocol's crop, and its noise.


def read_rgb(path: Path) -> np.ndarray:
    """An image file as HxWx3 uint8 RGB; unreadable files raise UnreadableImageError."""
    try:
        with Image.open(path) as image:
            return np.asarray(image.convert("RGB"))
    except (OSError, UnidentifiedImageError, ValueError) as exc:
        raise UnreadableImageError(f"cannot read image {path}: {exc}") from exc


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


def load_pair(spec: TaskSpec, pair: EvalPair) -> tuple[np.ndarray, np.ndarray]:
    """(degraded, clean) uint8 HxWx3, both cropped to multiples of 16."""
    clean = center_crop_multiple(read_rgb(pair.target), name=f"image {pair.target}")
    if spec.sigma is not None:
        return add_gaussian_noise(clean, spec.sigma, pair.name), clean
    assert pair.degraded is not None
    degraded = center_crop_multiple(read_rgb(pair.degraded), name=f"image {pair.degraded}")
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


# --------------------------------------------------------------------------------------------
# Restoration of one image.


@dataclass(frozen=True)
class InferenceConfig:
    """Whole or tiled: ``tile`` forces tiling; otherwise tiles only above ``max_whole_pixels``."""

    tile: int | None = None
    overlap: int = DEFAULT_OVERLAP
    max_whole_pixels: int = 2048 * 2048  # about 4 MP; the test sets are all below 0.3 MP
    fallback_tile: int = DEFAULT_TILE


def _restore_tiled(
    model: nn.Module, x: torch.Tensor, variant: Any, tile: int, overlap: int
) -> torch.Tensor:
    from dynet import tiling

    # float32 like the whole-image path: the protocol's numbers must not depend on autocast.
    return tiling.restore_tensor(model, x, variant, tile=tile, overlap=overlap, autocast=False)


def _synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def restore_image(
    model: nn.Module,
    degraded: np.ndarray,
    variant: Any,
    device: torch.device,
    inference: InferenceConfig,
) -> tuple[np.ndarray, str, float]:
    """Restore one uint8 image: (float HxWx3 output clamped to [0, 1], mode, forward seconds)."""
    x = torch.tensor(degraded).permute(2, 0, 1)[None]  # a copy: decoded arrays are read-only
    x = x.to(device=device, dtype=torch.float32) / 255.0
    pixels = degraded.shape[0] * degraded.shape[1]
    tile = inference.tile
    if tile is None and pixels > inference.max_whole_pixels:
        tile = inference.fallback_tile
    _synchronize(device)
    start = time.perf_counter()
    note = ""
    with torch.inference_mode():
        if tile is None:
            try:
                y = model(x, variant=variant)
            except torch.OutOfMemoryError:
                torch.cuda.empty_cache()
                tile, note = inference.fallback_tile, " after OOM"
        if tile is None:
            mode = "whole"
        else:
            y = _restore_tiled(model, x, variant, tile, inference.overlap)
            mode = f"tiled {tile}/{inference.overlap}{note}"
        _synchronize(device)
    seconds = time.perf_counter() - start
    out = y.clamp(0.0, 1.0)[0].permute(1, 2, 0).float().cpu().numpy()
    return out, mode, seconds


# --------------------------------------------------------------------------------------------
# Evaluating runs (one per variant) and collecting the results.


@dataclass(frozen=True)
class RunSpec:
    """One evaluated network: a label, the variant passed to forward, its published row."""

    label: str
    variant: Any
    compare_to: str | None


def run_specs(arch: str, variant: str) -> list[RunSpec]:
    """``--variant`` (L, S, all, or four repeat counts like 1,1,1,1) as the runs to evaluate."""
    if arch.lower() == "promptir":
        return [RunSpec("PromptIR", None, "PromptIR")]
    from dynet.dynet import resolve_variant

    key = variant.strip().upper()
    names = ["L", "S"] if key == "ALL" else [key]
    specs = []
    for name in names:
        if name in ("L", "S", "DYNET-L", "DYNET-S"):
            short = name[-1]
            specs.append(RunSpec(f"DyNet-{short}", short, f"DyNet-{short}"))
            continue
        try:
            repeats = tuple(int(n) for n in re.split(r"[,\s]+", name.strip("()[] ")))
        except ValueError:
            repeats = ()
        repeats = resolve_variant(repeats or name)
        specs.append(RunSpec(f"DyNet-({','.join(map(str, repeats))})", repeats, None))
    return specs


@dataclass
class TaskResult:
    """One task of one run: means over images, per-image scores, how each was restored."""

    task: str
    per_image: list[dict[str, Any]]
    skipped: list[dict[str, str]]

    @property
    def n_images(self) -> int:
        return len(self.per_image)

    def mean(self, key: str) -> float:
        return float(np.mean([image[key] for image in self.per_image]))

    def modes(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for image in self.per_image:
            counts[image["mode"]] = counts.get(image["mode"], 0) + 1
        return counts


@dataclass
class RunResult:
    spec: RunSpec
    tasks: dict[str, TaskResult]
    forward_seconds: float
    megapixels: float
    complexity: dict[str, Any] | None = None

    @property
    def ms_per_megapixel(self) -> float | None:
        if self.megapixels == 0:
            return None
        return 1000.0 * self.forward_seconds / self.megapixels


ProgressFn = Callable[[str, str, int, int], None]  # (run label, task, done, total)


def _slug(text: str) -> str:
    """A label as a file name: DyNet-(1,1,1,1) -> DyNet-1_1_1_1."""
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", re.sub(r"[()\[\]]", "", text)).strip("_")


def _to_uint8(image: np.ndarray) -> np.ndarray:
    if image.dtype == np.uint8:
        return image
    return np.round(np.clip(image, 0.0, 1.0) * 255.0).astype(np.uint8)


def _save_png(image: np.ndarray, path: str) -> None:
    from storage.atomic import atomic_write_bytes

    buffer = io.BytesIO()
    Image.fromarray(_to_uint8(image)).save(buffer, format="PNG")
    atomic_write_bytes(path, buffer.getvalue())


def _grid(rows: list[tuple[np.ndarray, np.ndarray, np.ndarray]]) -> np.ndarray:
    """input | output | target per row, rows stacked; narrower rows padded with black."""
    strips = [np.concatenate([_to_uint8(im) for im in row], axis=1) for row in rows]
    width = max(strip.shape[1] for strip in strips)
    padded = [np.pad(s, ((0, 0), (0, width - s.shape[1]), (0, 0))) for s in strips]
    return np.concatenate(padded, axis=0)


def evaluate_run(
    model: nn.Module,
    spec: RunSpec,
    tasks: Sequence[TaskData],
    device: torch.device,
    inference: InferenceConfig = InferenceConfig(),
    image_dir: str | None = None,
    progress: ProgressFn | None = None,
) -> RunResult:
    """Restore and score every pair of every task with one variant of ``model``."""
    results: dict[str, TaskResult] = {}
    seconds = 0.0
    megapixels = 0.0
    for data in tasks:
        per_image: list[dict[str, Any]] = []
        grid_rows: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []
        for index, pair in enumerate(data.pairs):
            degraded, clean = load_pair(data.spec, pair)
            restored, mode, took = restore_image(model, degraded, spec.variant, device, inference)
            seconds += took
            megapixels += degraded.shape[0] * degraded.shape[1] / 1e6
            scores: PairScores = score_pair(clean, restored)
            per_image.append({"name": pair.name, "mode": mode, **scores.to_dict()})
            if image_dir is not None:
                task_dir = f"{image_dir}/images/{_slug(spec.label)}/{data.spec.key}"
                _save_png(restored, f"{task_dir}/{Path(pair.name).stem}.png")
                if len(grid_rows) < GRID_IMAGES:
                    grid_rows.append((degraded, restored, clean))
            if progress is not None:
                progress(spec.label, data.spec.key, index + 1, len(data.pairs))
        if image_dir is not None and grid_rows:
            grid_path = f"{image_dir}/grids/{_slug(spec.label)}_{data.spec.key}.png"
            _save_png(_grid(grid_rows), grid_path)
        results[data.spec.key] = TaskResult(data.spec.key, per_image, list(data.skipped))
    return RunResult(spec, results, seconds, megapixels)


def score_inputs(tasks: Sequence[TaskData]) -> RunResult:
    """The "degraded input" row: each task's inputs scored against their targets as they are."""
    results: dict[str, TaskResult] = {}
    for data in tasks:
        per_image = []
        for pair in data.pairs:
            degraded, clean = load_pair(data.spec, pair)
            scores = score_pair(clean, degraded.astype(np.float64) / 255.0)
            per_image.append({"name": pair.name, "mode": "input", **scores.to_dict()})
        results[data.spec.key] = TaskResult(data.spec.key, per_image, list(data.skipped))
    return RunResult(RunSpec(INPUT_LABEL, None, None), results, 0.0, 0.0)


def _warm_up(model: nn.Module, variant: Any, device: torch.device) -> None:
    """One small forward so one-off start-up costs stay out of the ms/megapixel figure."""
    with torch.inference_mode():
        model(torch.zeros(1, 3, 32, 32, device=device), variant=variant)
    _synchronize(device)


@dataclass
class Evaluation:
    """Everything a results file holds: what ran, on what, and the runs' results."""

    arch: str
    weights: str
    data_root: str
    device: str
    requested_tasks: tuple[str, ...]
    datasets: dict[str, dict[str, Any]]
    missing_tasks: dict[str, str]
    runs: list[RunResult]
    inference: InferenceConfig
    inputs: RunResult | None = None
    created: str = field(default_factory=lambda: datetime.now(UTC).isoformat(timespec="seconds"))


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


@contextlib.contextmanager
def _deterministic_cudnn() -> Iterator[None]:
    """cuDNN picks the same algorithms every run (same weights and data, same numbers)."""
    previous = (torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark)
    torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = True, False
    try:
        yield
    finally:
        torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = previous


def evaluate_model(
    model: nn.Module,
    specs: Sequence[RunSpec],
    data_root: Path,
    *,
    arch: str = "dynet",
    weights: str = "",
    tasks: Sequence[str] | None = None,
    skip_missing: bool = False,
    device: torch.device | str = "cpu",
    inference: InferenceConfig = InferenceConfig(),
    image_dir: str | None = None,
    complexity: Callable[[RunSpec], dict[str, Any]] | dict[str, dict[str, Any]] | None = None,
    progress: ProgressFn | None = None,
) -> Evaluation:
    """Evaluate each run of ``specs`` on the requested tasks; see the module doc for the protocol.

    ``complexity``: per-run parameters and MACs, either precomputed (by run label) or a function
    of the run; None leaves those columns empty.
    """
    device = torch.device(device)
    requested = resolve_tasks(tasks)
    if not tasks:  # Urban100 is scored when the layout holds it, not required
        urban = find_test_root(Path(data_root)) / TASK_SPECS[URBAN100_COLUMNS[0]].folder
        requested = tuple(k for k in requested if k not in URBAN100_COLUMNS or urban.is_dir())
    task_data, missing = collect_tasks(Path(data_root), requested, skip_missing)
    model = model.to(device).eval()
    runs: list[RunResult] = []
    with _deterministic_cudnn():
        for spec in specs:
            _warm_up(model, spec.variant, device)
            run = evaluate_run(model, spec, task_data, device, inference, image_dir, progress)
            if callable(complexity):
                run.complexity = complexity(spec)
            elif complexity is not None:
                run.complexity = complexity.get(spec.label)
            runs.append(run)
    datasets = {
        data.spec.key: {
            "dataset": data.spec.dataset,
            "folder": str(data.folder),
            "n_images": len(data.pairs),
            "sigma": data.spec.sigma,
            "skipped": data.skipped,
        }
        for data in task_data
    }
    return Evaluation(
        arch=arch,
        weights=weights,
        data_root=str(data_root),
        device=str(device),
        requested_tasks=requested,
        datasets=datasets,
        missing_tasks=missing,
        runs=runs,
        inference=inference,
        inputs=score_inputs(task_data),
    )


# --------------------------------------------------------------------------------------------
# Results: JSON, CSV and the Markdown table.

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


def _average(values: list[float | None]) -> float | None:
    if not values or any(v is None for v in values):
        return None
    return float(np.mean(values))  # type: ignore[arg-type]


def run_summary(run: RunResult, columns: Sequence[str] = TASK_COLUMNS) -> dict[str, Any]:
    """Per-task means, the five-column average (None if a column is missing) and deltas."""
    row = published_row(run.spec.compare_to) if run.spec.compare_to else None
    tasks: dict[str, Any] = {}
    for key, result in run.tasks.items():
        means = {metric: result.mean(metric) for metric in METRIC_KEYS}
        entry: dict[str, Any] = {"n_images": result.n_images, **means, "modes": result.modes()}
        if row is not None and key in row.scores:
            ref_psnr, ref_ssim = row.scores[key]
            entry["delta_psnr"] = means["psnr"] - ref_psnr
            entry["delta_ssim"] = means["ssim"] - ref_ssim
        entry["skipped"] = result.skipped
        tasks[key] = entry
    average = {
        metric: _average([tasks[k][metric] if k in tasks else None for k in columns])
        for metric in METRIC_KEYS
    }
    if row is not None and average["psnr"] is not None:
        average["delta_psnr"] = average["psnr"] - row.average[0]
        average["delta_ssim"] = average["ssim"] - row.average[1]
    return {
        "label": run.spec.label,
        "variant": list(run.spec.variant)
        if isinstance(run.spec.variant, tuple)
        else run.spec.variant,
        "compare_to": run.spec.compare_to,
        "tasks": tasks,
        "average": average,
        "ms_per_megapixel": run.ms_per_megapixel,
        "forward_seconds": run.forward_seconds,
        "megapixels": run.megapixels,
        "complexity": run.complexity,
    }


def results_dict(evaluation: Evaluation) -> dict[str, Any]:
    runs = [run_summary(run) for run in evaluation.runs]
    for summary, run in zip(runs, evaluation.runs, strict=True):
        for key, result in run.tasks.items():
            summary["tasks"][key]["images"] = result.per_image
    return {
        "arch": evaluation.arch,
        "weights": evaluation.weights,
        "data_root": evaluation.data_root,
        "device": evaluation.device,
        "created": evaluation.created,
        "torch": torch.__version__,
        "protocol": PROTOCOL_NOTES,
        "inference": {
            "tile": evaluation.inference.tile,
            "overlap": evaluation.inference.overlap,
            "max_whole_pixels": evaluation.inference.max_whole_pixels,
        },
        "requested_tasks": list(evaluation.requested_tasks),
        "missing_tasks": evaluation.missing_tasks,
        "datasets": evaluation.datasets,
        "input": run_summary(evaluation.inputs) if evaluation.inputs else None,
        "runs": runs,
        "published": [
            {
                "method": row.method,
                "source": row.source,
                "source_short": row.source_short,
                "tasks": {k: {"psnr": p, "ssim": s} for k, (p, s) in row.scores.items()},
                "average": {"psnr": row.average[0], "ssim": row.average[1]},
                "other_revisions": [
                    {"source": r.source, "psnr": r.psnr, "average_psnr": r.average_psnr}
                    for r in row.other_revisions
                ],
            }
            for row in PUBLISHED_ROWS
        ],
    }


CSV_FIELDS = (
    "method",
    "source",
    "variant",
    "task",
    "dataset",
    "n_images",
    "psnr",
    "ssim",
    "psnr_y",
    "ssim_y",
    "delta_psnr",
    "delta_ssim",
    "inference",
)


def _csv_rows(results: dict[str, Any]) -> Iterator[dict[str, Any]]:
    for row in results["published"]:
        for task in (*TASK_COLUMNS, "average"):
            scores = row["average"] if task == "average" else row["tasks"][task]
            yield {"method": row["method"], "source": "published", "task": task, **scores}
    measured = [("input", results["input"])] if results.get("input") else []
    for source, run in [*measured, *(("this run", run) for run in results["runs"])]:
        variant = run["variant"]
        base = {
            "method": run["label"],
            "source": source,
            "variant": ",".join(map(str, variant)) if isinstance(variant, list) else variant,
        }
        for task in ALL_COLUMNS:
            entry = run["tasks"].get(task)
            if entry is None:
                continue
            yield {
                **base,
                "task": task,
                "dataset": TASK_SPECS[task].dataset,
                **{k: entry.get(k) for k in CSV_FIELDS if k in entry},
                "inference": ";".join(f"{m}={n}" for m, n in entry["modes"].items()),
            }
        if run["average"]["psnr"] is not None:
            yield {**base, "task": "average", **run["average"]}


def results_csv(results: dict[str, Any]) -> str:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=CSV_FIELDS, extrasaction="ignore")
    writer.writeheader()
    for row in _csv_rows(results):
        writer.writerow({k: _csv_value(v) for k, v in row.items()})
    return buffer.getvalue()


def _csv_value(value: Any) -> Any:
    if isinstance(value, float):
        return f"{value:.6f}" if math.isfinite(value) else str(value)
    return value


def _cell(psnr: float | None, ssim: float | None, mark: str = "") -> str:
    if psnr is None or ssim is None:
        return "—"
    return f"{psnr:.2f} / {ssim:.3f}{mark}"


def _delta_cell(dp: float | None, ds: float | None) -> str:
    if dp is None or ds is None:
        return "—"
    return f"{dp:+.2f} / {ds:+.3f}"


def _g(value: float | None) -> str:
    return "—" if value is None else f"{value / 1e9:.2f}"


def _extra_columns(results: dict[str, Any]) -> list[str]:
    """Urban100's columns, after the average, when it was scored."""
    return [k for k in URBAN100_COLUMNS if k in results.get("datasets", {})]


def _table_head(extra: Sequence[str]) -> list[str]:
    titles = [TASK_TITLES[k] for k in (*TASK_COLUMNS, "average", *extra) if k != "average"]
    titles.insert(len(TASK_COLUMNS), "Average")
    return ["| Method | " + " | ".join(titles) + " |", "|---" * (len(titles) + 1) + "|"]


def _measured_row(run: dict[str, Any], label: str, missing: dict, extra: Sequence[str]) -> str:
    cells = []
    for key in (*TASK_COLUMNS, "average", *extra):
        entry = run["average"] if key == "average" else run["tasks"].get(key)
        if entry is None:
            cells.append("missing" if key in missing else "not run")
        else:
            cells.append(_cell(entry["psnr"], entry["ssim"], "*" if entry.get("skipped") else ""))
    if label.startswith("**"):
        cells = [f"**{c}**" if c[0].isdigit() else c for c in cells]
    return f"| {label} | " + " | ".join(cells) + " |"


def rgb_table(results: dict[str, Any]) -> list[str]:
    """The comparison table's Markdown lines: the published rows (with their source, and other
    revisions' figures where they differ), the degraded input, each run and its deltas."""
    missing = results["missing_tasks"]
    extra = _extra_columns(results)
    lines = _table_head(extra)
    for row in results["published"]:
        cells = [_cell(row["tasks"][k]["psnr"], row["tasks"][k]["ssim"]) for k in TASK_COLUMNS]
        cells += [_cell(row["average"]["psnr"], row["average"]["ssim"])] + ["—"] * len(extra)
        source = row.get("source_short")
        label = f"{row['method']} (published{f', {source}' if source else ''})"
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
        for other in row.get("other_revisions", []):
            known = [other["psnr"].get(k) for k in TASK_COLUMNS] + [other["average_psnr"]]
            cells = ["—" if v is None else f"{v:.2f} / —" for v in known] + ["—"] * len(extra)
            lines.append(
                f"| {row['method']} (published, {other['source']}) | " + " | ".join(cells) + " |"
            )
    if results.get("input"):
        lines.append(_measured_row(results["input"], f"{INPUT_LABEL} (no restoration)", {}, extra))
    for run in results["runs"]:
        deltas = [
            _delta_cell(run["tasks"][k].get("delta_psnr"), run["tasks"][k].get("delta_ssim"))
            if k in run["tasks"]
            else "—"
            for k in TASK_COLUMNS
        ]
        avg = run["average"]
        lines.append(_measured_row(run, f"**{run['label']} (this run)**", missing, extra))
        if run["compare_to"]:
            lines.append(
                f"| Δ vs {run['compare_to']} (published) | "
                + " | ".join(deltas)
                + f" | {_delta_cell(avg.get('delta_psnr'), avg.get('delta_ssim'))} |"
                + " — |" * len(extra)
            )
    return lines


def results_markdown(results: dict[str, Any]) -> str:
    """The comparison table (RGB, the paper's protocol), the Y-channel table and the costs."""
    missing = results["missing_tasks"]
    not_run = [k for k in TASK_COLUMNS if k not in results["requested_tasks"]]
    lines = [
        "# All-in-one evaluation",
        "",
        f"Weights `{results['weights']}` ({results['arch']}), data `{results['data_root']}`, "
        f"device {results['device']}, {results['created']}.",
        "",
        *([f"> {results['note']}", ""] if results.get("note") else []),
        "## PSNR (dB) / SSIM on RGB — the paper's protocol",
        "",
        *rgb_table(results),
    ]
    lines += [
        "",
        "## Y channel (BT.601 YCbCr Y; SSIM with an 11x11 Gaussian window) — this run only",
        "",
        "Another convention; not comparable with the RGB table above (nothing published here).",
        "",
        *_table_head(_extra_columns(results)),
    ]
    measured = [results["input"]] if results.get("input") else []
    for run in [*measured, *results["runs"]]:
        y_run = {
            "average": {"psnr": run["average"]["psnr_y"], "ssim": run["average"]["ssim_y"]},
            "tasks": {
                k: {"psnr": t["psnr_y"], "ssim": t["ssim_y"]} for k, t in run["tasks"].items()
            },
        }
        lines.append(_measured_row(y_run, run["label"], {}, _extra_columns(results)))
    lines += ["", "## Cost", ""]
    lines.append(
        "| Network | Params (total / used) | Conv GMACs | Attention GMACs | Total GMACs "
        f"| ms per megapixel ({results['device']}) |"
    )
    lines.append("|---|---|---|---|---|---|")
    size = None
    for run in results["runs"]:
        c = run["complexity"] or {}
        size = c.get("size", size)
        params = (
            f"{c['params_total']:,} / {c.get('params_used', c['params_total']):,}"
            if c.get("params_total") is not None
            else "—"
        )
        ms = run["ms_per_megapixel"]
        lines.append(
            f"| {run['label']} | {params} | {_g(c.get('conv_macs'))} | "
            f"{_g(c.get('attention_macs'))} | {_g(c.get('total_macs'))} | "
            f"{'—' if ms is None else f'{ms:,.1f}'} |"
        )
    if size is not None:
        lines.append("")
        lines.append(f"MACs for one {size}x{size} RGB input (torch.utils.flop_counter).")
    lines += ["", "## Protocol and inference", ""]
    lines += [f"- {name}: {note}" for name, note in PROTOCOL_NOTES.items()]
    for key, info in results["datasets"].items():
        modes = {
            run["label"]: run["tasks"][key]["modes"]
            for run in results["runs"]
            if key in run["tasks"]
        }
        mode_text = "; ".join(
            f"{label}: " + ", ".join(f"{n} {m}" for m, n in counts.items())
            for label, counts in modes.items()
        )
        lines.append(
            f"- {TASK_TITLES[key]}: {info['n_images']} images from `{info['folder']}`"
            f" (restored {mode_text})"
        )
        for skipped in info["skipped"]:
            lines.append(f"  - * skipped {skipped['name']}: {skipped['reason']}")
    for key, reason in missing.items():
        lines.append(f"- {TASK_TITLES[key]}: **missing**, skipped ({reason})")
    for key in not_run:
        lines.append(f"- {TASK_TITLES[key]}: not requested")
    if missing or not_run:
        lines.append("- The average needs all five columns; it is shown as — otherwise.")
    return "\n".join(lines) + "\n"


def write_results(results: dict[str, Any], out_dir: Path | str) -> dict[str, str]:
    """Write results.json, results.csv and results.md (each atomically); returns their paths."""
    from storage.atomic import atomic_write_bytes

    out = str(out_dir).rstrip("/")
    paths = {name: f"{out}/results.{name}" for name in ("json", "csv", "md")}
    atomic_write_bytes(
        paths["json"], (json.dumps(results, indent=2, allow_nan=True) + "\n").encode()
    )
    atomic_write_bytes(paths["csv"], results_csv(results).encode())
    atomic_write_bytes(paths["md"], results_markdown(results).encode())
    return paths


# --------------------------------------------------------------------------------------------
# The whole command: weights in, result files out.


def resolve_device(device: str | torch.device) -> torch.device:
    """``auto`` picks CUDA when present; anything else is passed to torch.device."""
    if str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def load_network(weights: Path | str, arch: str | None = None) -> tuple[nn.Module, str]:
    """A network with its weights and its architecture name ("dynet" or "promptir").

    Project ``.safetensors`` files name their architecture; official checkpoints need ``arch``
    (default "dynet").
    """
    from dynet.checkpoint import load_model
    from dynet.registry import architecture_of

    model = load_model(Path(weights), arch)
    return model, architecture_of(model)


def complexity_of(model: nn.Module, spec: RunSpec, size: int) -> dict[str, Any]:
    """Parameters and MACs of one run at ``size`` x ``size`` (computed on the meta device)."""
    from dynet.complexity import complexity

    return complexity(model, size=size, variant=spec.variant).to_dict()


def run_evaluation(
    weights: Path | str,
    data_root: Path | str,
    *,
    arch: str | None = None,
    variant: str = "all",
    tasks: Sequence[str] | None = None,
    out_dir: Path | str = "eval-output",
    skip_missing: bool = False,
    save_images: bool = False,
    inference: InferenceConfig = InferenceConfig(),
    device: str | torch.device = "auto",
    complexity_size: int = 224,
    progress: ProgressFn | None = None,
    note: str | None = None,
) -> tuple[dict[str, Any], dict[str, str]]:
    """Load ``weights``, evaluate each requested variant, write the result files.

    ``note`` is printed above the tables (e.g. that the test data is not the real one).
    Returns the results (as written to results.json) and the paths written.
    """
    model, arch = load_network(weights, arch)
    specs = run_specs(arch, variant)
    evaluation = evaluate_model(
        model,
        specs,
        Path(data_root),
        arch=arch,
        weights=str(weights),
        tasks=tasks,
        skip_missing=skip_missing,
        device=resolve_device(device),
        inference=inference,
        image_dir=str(out_dir).rstrip("/") if save_images else None,
        complexity=(lambda spec: complexity_of(model, spec, complexity_size))
        if complexity_size > 0
        else None,
        progress=progress,
    )
    results = results_dict(evaluation)
    if note:
        results["note"] = note
    return results, write_results(results, out_dir)
