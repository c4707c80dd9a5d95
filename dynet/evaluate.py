"""All-in-one evaluation: restore every test image with each variant, score it, write results.

The protocol (layout, crop, noise, scoring) is :mod:`dynet.eval_data`'s; the result files and
tables are :mod:`dynet.eval_reports`'s. Images are restored whole unless a tile size is forced
or the image exceeds ``max_whole_pixels`` (or the GPU runs out of memory); then
``dynet.tiling.restore_tensor`` (the tiling of ``mird restore``) is used. The choice is recorded
per image and per task.
"""

from __future__ import annotations

import contextlib
import io
import re
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch import nn

from dynet.eval_data import (
    INPUT_LABEL,
    TASK_SPECS,
    TaskData,
    collect_tasks,
    find_test_root,
    load_pair,
    resolve_tasks,
)
from dynet.eval_reports import results_dict, write_results
from dynet.imaging import to_tensor
from dynet.metrics import PairScores, score_pair
from dynet.published import URBAN100_COLUMNS
from dynet.registry import architecture, architecture_of
from dynet.variants import InvalidVariantError, parse_variant, variant_label
from storage.devices import resolve_device

DEFAULT_TILE = 512
DEFAULT_OVERLAP = 32
GRID_IMAGES = 3  # images per task in the side-by-side grid


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
    x = to_tensor(degraded)[None].to(device)
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
    network = architecture(arch)
    if not network.variable_depth:  # one depth: one run, beside its published row (PromptIR)
        name = network.network.__name__
        return [RunSpec(name, None, name)]
    texts = ["L", "S"] if variant.strip().upper() == "ALL" else [variant]
    specs = []
    for text in texts:
        chosen = parse_variant(text)
        if chosen is None:
            raise InvalidVariantError("--variant is empty: use L, S, all or four repeat counts")
        if isinstance(chosen, str):
            specs.append(RunSpec(f"DyNet-{chosen}", chosen, f"DyNet-{chosen}"))
        else:
            specs.append(RunSpec(f"DyNet-({variant_label(chosen)})", chosen, None))
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
    """Evaluate each run of ``specs`` on the requested tasks; the protocol is
    :mod:`dynet.eval_data`'s.

    ``complexity``: per-run parameters and MACs, either precomputed (by run label) or a function
    of the run; None leaves those columns empty.
    """
    device = resolve_device(device)
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
# The whole command: weights in, result files out.


def load_network(weights: Path | str, arch: str | None = None) -> tuple[nn.Module, str]:
    """A network with its weights and its architecture name ("dynet" or "promptir").

    Project ``.safetensors`` files name their architecture; official checkpoints need ``arch``
    (default "dynet").
    """
    from dynet.checkpoint import load_model

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
