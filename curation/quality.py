"""No-reference image quality scores (pyiqa) on a bounded-size proxy, offline by default.

The proxy: every image is scored on its reduced decode, its long side brought down to
``max_side`` (1024 px by default), or on a fixed set of square crops of that reduced decode.
So a 24 MP photograph costs what a 1 MP one does, and thresholds are calibrated on the proxy,
not on the full resolution (downscaling hides noise and blur, so proxy scores are "better").

Offline: ``piqe`` needs no parameters, ``niqe`` and ``brisque`` read the parameter files shipped
in ``curation/iqa_data`` (made by ``curation.iqa_convert``). Any other pyiqa NR metric (``nima``,
``musiq``, ``topiq_nr``, ``clipiqa``...) works when its weights are already in the torch hub /
Hugging Face caches; otherwise building it fails at once with :class:`MissingWeightsError`,
which names the file and ``mird weights fetch NAME``. Nothing here ever downloads: the first
use sets ``HF_HUB_OFFLINE=1`` for the process unless it is set already, and building a metric
forces it on whatever the environment says.

On a CPU, NIQE, BRISQUE and PIQE run by default on the fast path (``curation.iqa_fast``:
vectorised numpy, the same statistics, within 0.1 of pyiqa's scores, about 7x less CPU time);
``quality.backend: pyiqa`` forces pyiqa, which stays the reference, the path for every other
metric and the path on a GPU.
"""

from __future__ import annotations

import contextlib
import io
import math
import os
import sys
from collections.abc import Iterator, Mapping, Sequence
from importlib import resources
from pathlib import Path
from typing import Literal

import numpy as np
from PIL import Image
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from curation.reasons import low_quality
from storage.devices import resolve_device

#: Metrics that score without any download: their parameters ship with the package (or none).
OFFLINE_METRICS: tuple[str, ...] = ("niqe", "brisque", "piqe")
#: Metrics with a fast CPU path (``curation.iqa_fast``): the same three.
FAST_METRICS: tuple[str, ...] = OFFLINE_METRICS
#: Package data passed to pyiqa as ``pretrained_model_path``.
PACKAGED_PARAMETERS: dict[str, str] = {
    "niqe": "niqe_pris_params.mat",
    "brisque": "brisque_svm_weights.pt",
}
#: Calibrated on real photographs (``bench.curation_accuracy``, figures in bench/README.md):
#: on the reduced-decode proxy, sharp professional photographs scored NIQE 2-8.7, BRISQUE
#: 3-78 (a dune-grass photograph) and PIQE 18-60, so these reject none of them; strongly
#: blurred, noisy or blocky images and most renders score above. `mird calibrate` proposes
#: thresholds for your own sources; a metric without a threshold is scored but never rejects.
DEFAULT_THRESHOLDS: dict[str, float] = {"niqe": 10.0, "brisque": 85.0, "piqe": 80.0}

REJECT_STAGE = "quality"


class MissingWeightsError(FileNotFoundError):
    """A metric whose weights are not on this machine; the message says how to get them."""

    def __init__(self, metric: str, missing: str) -> None:
        self.metric = metric
        self.missing = missing
        super().__init__(
            f"IQA metric {metric!r} needs {missing}, which is not on this machine: run "
            f"`mird weights fetch {metric}` on a machine with internet (nothing is downloaded "
            "at run time)"
        )


class UnknownMetricError(ValueError):
    """A metric name pyiqa does not know, or one that needs a reference image."""


class QualityConfig(BaseModel):
    """What to score, on which proxy, and when to reject."""

    model_config = ConfigDict(extra="forbid")

    metrics: list[str] = Field(
        default_factory=lambda: list(OFFLINE_METRICS),
        description="pyiqa no-reference metric names, scored in this order",
    )
    thresholds: dict[str, float] = Field(
        default_factory=lambda: dict(DEFAULT_THRESHOLDS),
        description="worst acceptable score per metric, in the metric's own direction "
        "(NIQE/BRISQUE/PIQE: lower is better, so a score above it rejects)",
    )
    proxy: Literal["reduced", "crops"] = Field(
        "reduced", description="score the reduced decode, or the mean over fixed crops of it"
    )
    max_side: int = Field(1024, ge=128, le=4096, description="long side of the reduced decode")
    crop_size: int = Field(512, ge=128, le=2048, description="side of each crop (proxy=crops)")
    crops: Literal[1, 5] = Field(5, description="1: centre crop; 5: centre and four quadrants")
    device: Literal["auto", "cpu", "cuda"] = Field(
        "auto",
        description="where the metrics run; auto: cuda when available, else cpu (cuda without "
        "a GPU is an error)",
    )
    batch_size: int = Field(8, ge=1, le=256, description="images (or crops) per forward pass")
    backend: Literal["fast", "pyiqa"] = Field(
        "fast",
        description="niqe, brisque and piqe on a CPU: fast (vectorised numpy, "
        "curation.iqa_fast, equal to pyiqa within 0.1) or pyiqa (the reference, ~7x the CPU "
        "time); every other metric, and any metric on a GPU, always runs through pyiqa",
    )

    @field_validator("metrics")
    @classmethod
    def _metrics_unique(cls, metrics: list[str]) -> list[str]:
        if not metrics:
            raise ValueError("metrics must name at least one metric")
        if len(set(metrics)) != len(metrics):
            raise ValueError(f"metrics are repeated: {metrics}")
        return metrics

    @model_validator(mode="after")
    def _thresholds_known(self) -> QualityConfig:
        # Thresholds for metrics not scored are dropped only when they are the defaults, so a
        # typo in a user's threshold is an error rather than a silently ignored setting.
        extra = set(self.thresholds) - set(self.metrics)
        user_extra = {m for m in extra if DEFAULT_THRESHOLDS.get(m) != self.thresholds[m]}
        if user_extra:
            raise ValueError(f"thresholds for metrics not in metrics: {sorted(user_extra)}")
        self.thresholds = {m: t for m, t in self.thresholds.items() if m in self.metrics}
        return self


# ---------------------------------------------------------------------------------- the proxy


def proxy_image(image: Image.Image, max_side: int = 1024) -> Image.Image:
    """The image in RGB with its long side at most ``max_side`` (antialiased bicubic)."""
    image = image.convert("RGB")
    width, height = image.size
    scale = max_side / max(width, height)
    if scale < 1:
        size = (max(1, round(width * scale)), max(1, round(height * scale)))
        image = image.resize(size, Image.Resampling.BICUBIC)
    return image


def open_reduced(source: str | Path | bytes, max_side: int = 1024) -> Image.Image:
    """Decode only as much as the proxy needs: JPEG DCT scaling (``draft``), then resize.

    A 24 MP JPEG is decoded at 1/4 or 1/8 scale, so its cost is close to a 1 MP image's.
    """
    handle = io.BytesIO(source) if isinstance(source, bytes) else open(source, "rb")
    with handle, Image.open(handle) as image:
        width, height = image.size
        scale = min(1.0, max_side / max(width, height))
        image.draft("RGB", (math.ceil(width * scale), math.ceil(height * scale)))
        return proxy_image(image, max_side)


def proxy_crops(image: Image.Image, crop_size: int, count: int) -> list[Image.Image]:
    """Fixed square crops: the centre, plus the centres of the four quadrants when ``count=5``.

    On an image smaller than ``crop_size`` the crop shrinks to its short side.
    """
    width, height = image.size
    side = min(crop_size, width, height)
    centres = [(0.5, 0.5)]
    if count == 5:
        centres += [(0.25, 0.25), (0.75, 0.25), (0.25, 0.75), (0.75, 0.75)]
    boxes = []
    for fx, fy in centres:
        left = min(max(0, round(fx * width - side / 2)), width - side)
        top = min(max(0, round(fy * height - side / 2)), height - side)
        boxes.append((left, top, left + side, top + side))
    return [image.crop(box) for box in boxes]


# ---------------------------------------------------------------------------- building metrics


def packaged_parameter_path(metric: str) -> Path:
    """The parameter file shipped for an offline metric (``curation/iqa_data``)."""
    path = Path(str(resources.files("curation") / "iqa_data" / PACKAGED_PARAMETERS[metric]))
    if not path.is_file():
        raise FileNotFoundError(
            f"{path}: package data for IQA metric {metric!r} is missing; reinstall million-ird "
            "or run `python -m curation.iqa_convert shared/reference/iqa curation/iqa_data`"
        )
    return path


@contextlib.contextmanager
def _offline_hub(metric: str, allow_download: bool) -> Iterator[None]:
    """Turn every download path pyiqa and its backbones use into an immediate error for ``metric``.

    pyiqa fetches through ``torch.hub.download_url_to_file`` (its own files, torchvision and
    some timm weights), ``huggingface_hub`` (timm backbones) and its CLIP loader (urllib).
    The originals are restored afterwards. Not thread-safe: build metrics from one thread.
    """
    import huggingface_hub.constants as hf_constants
    import pyiqa.archs.clip_model as clip_module
    import pyiqa.utils.download_util as pyiqa_download
    import timm.models._hub as timm_hub
    import torch.hub
    from huggingface_hub.errors import LocalEntryNotFoundError

    if allow_download:
        saved_env, saved_flag = os.environ.get("HF_HUB_OFFLINE"), hf_constants.HF_HUB_OFFLINE
        os.environ["HF_HUB_OFFLINE"] = "0"
        hf_constants.HF_HUB_OFFLINE = False
        try:
            yield
        finally:
            hf_constants.HF_HUB_OFFLINE = saved_flag
            _restore_env("HF_HUB_OFFLINE", saved_env)
        return

    def refuse_url(url: str, dst: str, *args: object, **kwargs: object) -> None:
        raise MissingWeightsError(metric, f"{dst} (from {url})")

    original_clip_download = clip_module._download
    original_hf_download = getattr(timm_hub, "hf_hub_download", None)

    def clip_download_cached_only(url: str, root: str) -> str:
        target = os.path.join(root, os.path.basename(url))
        if not os.path.isfile(target):
            raise MissingWeightsError(metric, f"{target} (from {url})")
        return original_clip_download(url, root)

    def hf_download_cached_only(*args: object, **kwargs: object) -> str:
        try:
            return original_hf_download(*args, **kwargs)
        except LocalEntryNotFoundError as exc:
            repo = kwargs.get("repo_id", args[0] if args else "?")
            filename = kwargs.get("filename", args[1] if len(args) > 1 else "?")
            where = f"{repo}/{filename} in the Hugging Face cache {hf_constants.HF_HUB_CACHE}"
            raise MissingWeightsError(metric, where) from exc

    patches: list[tuple[object, str, object]] = [
        (torch.hub, "download_url_to_file", refuse_url),
        (pyiqa_download, "download_url_to_file", refuse_url),
        (timm_hub, "download_url_to_file", refuse_url),
        (timm_hub, "hf_hub_download", hf_download_cached_only),
        (clip_module, "_download", clip_download_cached_only),
    ]
    # Other timm/pyiqa versions may lack a hook; patch the ones this installation has.
    patches = [(owner, name, new) for owner, name, new in patches if hasattr(owner, name)]
    saved = [(owner, name, getattr(owner, name)) for owner, name, _ in patches]
    saved_env, saved_flag = os.environ.get("HF_HUB_OFFLINE"), hf_constants.HF_HUB_OFFLINE
    os.environ["HF_HUB_OFFLINE"] = "1"
    hf_constants.HF_HUB_OFFLINE = True
    for owner, name, replacement in patches:
        setattr(owner, name, replacement)
    try:
        yield
    finally:
        for owner, name, original in saved:
            setattr(owner, name, original)
        hf_constants.HF_HUB_OFFLINE = saved_flag
        _restore_env("HF_HUB_OFFLINE", saved_env)


def _restore_env(name: str, value: str | None) -> None:
    if value is None:
        os.environ.pop(name, None)
    else:
        os.environ[name] = value


def metric_info(metric: str) -> Mapping[str, object]:
    """pyiqa's default configuration of a no-reference metric (``lower_better``...)."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")  # before huggingface_hub reads it at import
    from pyiqa.default_model_configs import DEFAULT_CONFIGS

    if metric not in DEFAULT_CONFIGS:
        raise UnknownMetricError(
            f"unknown IQA metric {metric!r}: not a pyiqa metric (see pyiqa.list_models())"
        )
    info = DEFAULT_CONFIGS[metric]
    if info.get("metric_mode") != "NR":
        raise UnknownMetricError(
            f"IQA metric {metric!r} is full-reference; quality scoring needs a no-reference one"
        )
    return info


def build_metric(metric: str, device: str = "cpu", allow_download: bool = False):
    """A pyiqa metric ready to score (N, 3, H, W) tensors in [0, 1].

    Without ``allow_download`` (the default, and the only mode the pipeline uses) a metric
    whose weights are not cached raises :class:`MissingWeightsError` before any network access.
    """
    metric_info(metric)
    import pyiqa
    from huggingface_hub.errors import LocalEntryNotFoundError, OfflineModeIsEnabled

    options: dict[str, object] = {}
    if metric in PACKAGED_PARAMETERS:
        options["pretrained_model_path"] = str(packaged_parameter_path(metric))
    # pyiqa prints "Downloading..."/"Loading pretrained model..." on stdout: keep stdout clean
    # for callers that print JSON, and say nothing about downloads that will not happen.
    chatter = sys.stderr if allow_download else io.StringIO()
    try:
        with _offline_hub(metric, allow_download), contextlib.redirect_stdout(chatter):
            if not allow_download and metric not in OFFLINE_METRICS:
                _dry_build(metric, options)
            model = pyiqa.create_metric(metric, device=device, **options)
    except (LocalEntryNotFoundError, OfflineModeIsEnabled) as exc:
        if allow_download:
            raise
        raise MissingWeightsError(metric, f"a Hugging Face hub file ({_first_line(exc)})") from exc
    model.eval()
    return model


def _dry_build(metric: str, options: Mapping[str, object]) -> None:
    """Build the metric on the meta device: no allocation or random init, only the file look-ups.

    A big backbone (VGG16: 138 M parameters) takes seconds to initialise on a CPU before pyiqa
    ever asks for its weights; on the meta device a missing file is found in milliseconds.
    Anything else that fails here is left to the real build, which is the authority.
    """
    import pyiqa
    import torch

    try:
        with torch.device("meta"):
            pyiqa.create_metric(metric, device="meta", **options)
    except MissingWeightsError:
        raise
    except Exception:  # noqa: BLE001 - see docstring: the real build reports real errors
        pass


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


# ------------------------------------------------------------------------------------ scoring


class QualityScorer:
    """Builds the configured metrics once and scores batches of (reduced-decode) images."""

    def __init__(self, config: QualityConfig | None = None) -> None:
        self.config = config or QualityConfig()
        try:  # a string: pyiqa and the fast path compare it with "cpu"
            self.device = str(resolve_device(self.config.device))
        except ValueError as exc:  # "quality device 'cuda' requested but no CUDA device..."
            raise ValueError(f"quality {exc}") from None
        self.lower_better = {
            m: bool(metric_info(m).get("lower_better", False)) for m in self.config.metrics
        }
        #: Metrics computed by :class:`curation.iqa_fast.FastIQA` (CPU, backend "fast").
        self.fast_metrics = [
            m for m in self.config.metrics if m in FAST_METRICS and self._use_fast_path()
        ]
        self.fast = None
        if self.fast_metrics:
            from curation.iqa_fast import FastIQA

            self.fast = FastIQA(self.fast_metrics)
        #: pyiqa models of the other metrics.
        self.metrics = {
            m: build_metric(m, self.device)
            for m in self.config.metrics
            if m not in self.fast_metrics
        }

    def _use_fast_path(self) -> bool:
        return self.config.backend == "fast" and self.device == "cpu"

    def _proxy_views(self, image: Image.Image) -> list[Image.Image]:
        reduced = proxy_image(image, self.config.max_side)
        if self.config.proxy == "crops":
            return proxy_crops(reduced, self.config.crop_size, self.config.crops)
        return [reduced]

    def score(self, images: Sequence[Image.Image]) -> list[dict[str, float]]:
        """One ``{metric: score}`` per image; with crops, the mean over an image's crops.

        An image a metric cannot measure (flat, or under 96 px a side for NIQE) gets NaN for
        that metric instead of failing the batch; NaN fails any threshold set for the metric.
        """
        views = [
            (index, view) for index, image in enumerate(images) for view in self._proxy_views(image)
        ]
        sums = [dict.fromkeys(self.config.metrics, 0.0) for _ in images]
        counts = [0] * len(images)
        for image_index, view in views:
            counts[image_index] += 1
            if self.fast is not None:  # one luma per view, shared by the fast metrics
                for name, value in self.fast.score(view).items():
                    sums[image_index][name] += value
        if self.metrics:
            self._score_pyiqa(views, sums)
        return [
            {name: total / counts[i] for name, total in sums[i].items()} for i in range(len(images))
        ]

    def _score_pyiqa(
        self, views: Sequence[tuple[int, Image.Image]], sums: list[dict[str, float]]
    ) -> None:
        import torch

        # Equal shapes batch together (all crops do; reduced decodes of one aspect ratio do).
        by_size: dict[tuple[int, int], list[int]] = {}
        for position, (_, view) in enumerate(views):
            by_size.setdefault(view.size, []).append(position)
        batch = self.config.batch_size
        with torch.inference_mode():
            for positions in by_size.values():
                for start in range(0, len(positions), batch):
                    chunk = positions[start : start + batch]
                    stacked = torch.stack([_to_tensor(views[p][1]) for p in chunk])
                    stacked = stacked.to(self.device)
                    for name, model in self.metrics.items():
                        for p, value in zip(chunk, _run_metric(model, stacked), strict=True):
                            sums[views[p][0]][name] += value

    def rejects(self, scores: Mapping[str, Mapping[str, float]]) -> list[dict[str, str]]:
        """Reject rows for ``{candidate_id: scores}`` under this scorer's thresholds."""
        return quality_rejects(scores, self.config.thresholds, self.lower_better)


def _to_tensor(image: Image.Image):
    import torch

    array = np.asarray(image, dtype=np.float32) / 255.0
    return torch.from_numpy(array).permute(2, 0, 1)


def _forward(model, batch):
    """The metric's network on a batch in full fp32.

    pyiqa's own ``forward`` runs under ``cudnn.flags()`` whose default allows TF32: on Ampere and
    Hopper GPUs that moved BRISQUE and PIQE by up to 10 points (their Gaussian-filtered local
    variances cancel catastrophically at 10-bit precision). Our inputs are already in [0, 1],
    so calling the network directly skips nothing else.
    """
    import torch

    flags = torch.backends.cudnn.flags(
        enabled=True, benchmark=False, deterministic=True, allow_tf32=False
    )
    with flags:
        return model.net(batch)


def _run_metric(model, batch) -> list[float]:
    """Scores of a batch; if the batch fails, image by image, NaN where one cannot be scored."""
    import torch

    try:
        return _forward(model, batch).reshape(-1).double().cpu().tolist()
    except torch.OutOfMemoryError:
        if len(batch) == 1:
            raise
    except (RuntimeError, ValueError, AssertionError, IndexError):
        if len(batch) == 1:
            return [math.nan]
    return [value for item in batch for value in _run_metric(model, item[None])]


def threshold_verdict(
    metric: str, value: float, limit: float, lower_better: bool
) -> tuple[bool, str]:
    """(passed, detail) of one score against one threshold: the one rule a build
    (:func:`quality_rejects`) and ``mird explain`` (``curation.gate``) both apply. A score
    that is not finite (the metric could not measure the image) fails."""
    if not math.isfinite(value):
        return False, f"{metric} not measurable ({value})"
    worse = value > limit if lower_better else value < limit
    if worse:
        sign = ">" if lower_better else "<"
    else:
        sign = "<=" if lower_better else ">="
    return not worse, f"{metric}={value:.4g} {sign} {limit:g}"


def quality_rejects(
    scores: Mapping[str, Mapping[str, float]],
    thresholds: Mapping[str, float],
    lower_better: Mapping[str, bool],
) -> list[dict[str, str]]:
    """Rows for the rejects table, one per candidate that fails any threshold.

    The reason names the first failing metric in ``thresholds`` order
    (``low_quality:<metric>``); ``detail`` lists every failing score. A score that is not
    finite (the metric could not measure the image) fails too.
    """
    for metric in thresholds:
        if metric not in lower_better:
            raise ValueError(f"no score direction known for IQA metric {metric!r}")
    rows = []
    for candidate_id, candidate_scores in scores.items():
        failures = []
        for metric, limit in thresholds.items():
            if metric not in candidate_scores:
                raise ValueError(f"candidate {candidate_id!r} has no {metric!r} score")
            value = float(candidate_scores[metric])
            passed, detail = threshold_verdict(metric, value, limit, lower_better[metric])
            if not passed:
                failures.append((metric, detail))
        if failures:
            rows.append(
                {
                    "candidate_id": candidate_id,
                    "stage": REJECT_STAGE,
                    "reason": low_quality(failures[0][0]),
                    "detail": "; ".join(text for _, text in failures),
                }
            )
    return rows
