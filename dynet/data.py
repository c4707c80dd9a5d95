"""Training data: the pre-training patch stream and the all-in-one fine-tuning datasets.

Both are built so that a resumed run sees exactly the samples an uninterrupted run would have:

* **Pre-training** (:class:`PatchStream`) reads WebDataset shards through the storage layer.
  Each DataLoader worker of each rank is one *stream* (global number
  ``g = rank * workers + worker``); stream ``g`` reads a deterministic
  sequence of shard draws (``resample``: shards drawn with replacement from ``(seed, g, k)``;
  otherwise seeded per-epoch permutations split over all streams of all nodes, the split
  ``split_by_node``/``split_by_worker`` would give). Samples are shuffled within a shard by a
  seeded buffer, and every crop/flip/degradation draws from a generator seeded by the sample's
  position. A stream's position is ``(draw k, samples consumed in it)``; resuming skips earlier
  draws without any I/O and re-reads at most one shard.
* **Fine-tuning** (:class:`AllInOneDataset`) reads the official training layout; a
  :class:`GlobalBatchSampler` cuts per-epoch permutations into global batches and gives each
  rank its slice, so the samples of a global batch do not depend on the number of processes.
"""

from __future__ import annotations

import hashlib
import itertools
import tarfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import IterableDataset, Sampler, get_worker_info

from dynet.degrade import DegradationRecipe, apply_recipe
from dynet.imaging import CROP_MULTIPLE, center_crop_multiple, decode_rgb, read_rgb, to_tensor

IMAGE_EXTS = ("png", "jpg", "jpeg", "webp", "bmp", "ppm", "tif", "tiff")
IMAGE_SUFFIXES = frozenset(f".{e}" for e in IMAGE_EXTS)


class TrainingDataError(ValueError):
    """Training data that cannot be used; the message names the file."""


class MissingTrainingFileError(TrainingDataError, FileNotFoundError):
    """A training file or folder that should exist does not."""


class UnreadableImageError(TrainingDataError):
    """An image that does not decode."""


# --------------------------------------------------------------------------- shared helpers


def seed_of(*parts: Any) -> int:
    """A 63-bit seed from any printable parts: stable across processes and Python runs."""
    digest = hashlib.sha256("\0".join(map(str, parts)).encode()).digest()
    return int.from_bytes(digest[:8], "little") >> 1


def read_training_image(path: Path) -> np.ndarray:
    """A training image as H x W x 3 uint8, failing with this module's errors."""
    return read_rgb(path, UnreadableImageError, MissingTrainingFileError, "training image")


def _crop_to_multiple(image: np.ndarray, name: str) -> np.ndarray:
    try:
        return center_crop_multiple(image, CROP_MULTIPLE, name=f"image {name}")
    except ValueError as exc:
        raise TrainingDataError(str(exc)) from exc


def crop_box(h: int, w: int, size: int, gen: torch.Generator, name: str) -> tuple[int, int]:
    if h < size or w < size:
        raise TrainingDataError(f"image {name} ({w}x{h}) is smaller than the {size}px crop")
    top = int(torch.randint(0, h - size + 1, (), generator=gen))
    left = int(torch.randint(0, w - size + 1, (), generator=gen))
    return top, left


def flip_rotate(image: torch.Tensor, mode: int) -> torch.Tensor:
    """The 8 dihedral modes: ``mode % 4`` quarter turns, then a vertical flip when mode >= 4."""
    out = torch.rot90(image, mode % 4, dims=(-2, -1))
    return out.flip(-2) if mode >= 4 else out


# --------------------------------------------------------------------------- pre-training stream


@dataclass
class StreamPosition:
    draw: int = 0  # which shard draw of the stream
    consumed: int = 0  # samples of that draw already delivered


class PatchStream(IterableDataset):
    """Infinite batches ``{"input", "target", "stream", "draw", "consumed"}`` from patch shards.

    ``input`` is the degraded/masked crop and ``target`` the clean crop (B x 3 x S x S).
    ``stream``/``draw``/``consumed`` say where the stream stands after this batch; the trainer
    keeps them (:class:`StreamTracker`) to resume exactly.
    """

    def __init__(
        self,
        shard_uris: Sequence[str],
        *,
        batch_size: int,
        crop: int,
        recipe: DegradationRecipe,
        seed: int,
        resample: bool = True,
        shuffle_buffer: int = 256,
        rank: int = 0,
        world_size: int = 1,
        streams_per_rank: int = 1,
        positions: dict[int, StreamPosition] | None = None,
        first_stream: int = 0,
    ) -> None:
        if not shard_uris:
            raise MissingTrainingFileError("no patch shards to train on")
        self.shard_uris = list(shard_uris)
        self.batch_size = batch_size
        self.crop = crop
        self.recipe = recipe
        self.seed = seed
        self.resample = resample
        self.shuffle_buffer = shuffle_buffer
        self.rank = rank
        self.world_size = world_size
        self.streams_per_rank = streams_per_rank
        self.positions = positions or {}
        self.first_stream = first_stream  # DataLoader worker 0 serves this stream (resume)

    # -- which shard a draw reads
    def shard_for(self, stream: int, draw: int) -> str:
        n = len(self.shard_uris)
        global_stream = self.rank * self.streams_per_rank + stream
        if self.resample:
            rng = np.random.default_rng([self.seed, global_stream, draw])
            return self.shard_uris[int(rng.integers(n))]
        streams = self.world_size * self.streams_per_rank
        index = global_stream + draw * streams
        epoch, slot = divmod(index, n)
        return self.shard_uris[int(np.random.default_rng([self.seed, epoch]).permutation(n)[slot])]

    def _shard_samples(self, uri: str, shuffle_seed: int) -> Iterator[dict[str, Any]]:
        """The shard's samples in a seeded buffered-shuffle order (bytes only, no decoding)."""
        from storage.errors import StorageError
        from storage.shards import webdataset_pipeline

        pipeline = webdataset_pipeline(
            [uri], shuffle_shards=False, split_by_node=False, split_by_worker=False
        )
        rng = np.random.default_rng(shuffle_seed)
        buffer: list[dict[str, Any]] = []
        try:
            for sample in pipeline:
                if len(buffer) < self.shuffle_buffer:
                    buffer.append(sample)
                    continue
                i = int(rng.integers(len(buffer)))
                buffer[i], sample = sample, buffer[i]
                yield sample
        except FileNotFoundError:
            raise MissingTrainingFileError(f"missing patch shard {uri}") from None
        except (OSError, ValueError, tarfile.TarError, StorageError) as exc:
            if isinstance(exc, TrainingDataError):
                raise
            reason = exc.args[0] if exc.args else type(exc).__name__
            raise TrainingDataError(f"unreadable patch shard {uri}: {reason}") from exc
        for i in rng.permutation(len(buffer)):
            yield buffer[int(i)]

    def make_pair(self, sample: dict[str, Any], uri: str, seed: int) -> tuple[torch.Tensor, ...]:
        """(degraded, clean) for one raw sample; every random choice comes from ``seed``."""
        ext = next((e for e in IMAGE_EXTS if e in sample), None)
        name = f"{uri}:{sample.get('__key__')}"
        if ext is None:
            raise TrainingDataError(f"sample {name} holds no image ({sorted(sample)})")
        image = decode_rgb(sample[ext], name, UnreadableImageError)
        gen = torch.Generator().manual_seed(seed)
        top, left = crop_box(image.shape[0], image.shape[1], self.crop, gen, name)
        patch = image[top : top + self.crop, left : left + self.crop]
        clean = flip_rotate(to_tensor(patch), int(torch.randint(0, 8, (), generator=gen)))
        clean = clean.contiguous()
        return apply_recipe(clean, self.recipe, gen), clean

    def stream_batches(self, stream: int) -> Iterator[dict[str, Any]]:
        # Seeds follow the global stream number, so streams (and hence global batches) are the
        # same whether they are spread over ranks or over one rank's workers.
        global_stream = self.rank * self.streams_per_rank + stream
        start = self.positions.get(stream, StreamPosition())
        inputs: list[torch.Tensor] = []
        targets: list[torch.Tensor] = []
        empty_draws = 0
        for draw in itertools.count(start.draw):
            uri = self.shard_for(stream, draw)
            skip = start.consumed if draw == start.draw else 0
            delivered = 0
            shuffle_seed = seed_of(self.seed, "shuffle", global_stream, draw)
            for index, sample in enumerate(self._shard_samples(uri, shuffle_seed)):
                delivered += 1
                if index < skip:
                    continue
                seed = seed_of(self.seed, "sample", global_stream, draw, index)
                degraded, clean = self.make_pair(sample, uri, seed)
                inputs.append(degraded)
                targets.append(clean)
                if len(inputs) == self.batch_size:
                    yield {
                        "input": torch.stack(inputs),
                        "target": torch.stack(targets),
                        "stream": stream,
                        "draw": draw,
                        "consumed": index + 1,
                    }
                    inputs, targets = [], []
            empty_draws = empty_draws + 1 if delivered == 0 else 0
            if empty_draws >= max(len(self.shard_uris), 1) * 4:
                raise TrainingDataError(f"patch shards yield no samples (last read: {uri})")

    def __iter__(self) -> Iterator[dict[str, Any]]:
        info = get_worker_info()
        worker = info.id if info is not None else 0
        workers = info.num_workers if info is not None else 1
        if workers != self.streams_per_rank:
            raise ValueError(
                f"PatchStream built for {self.streams_per_rank} streams, run by {workers} workers"
            )
        return self.stream_batches((worker + self.first_stream) % self.streams_per_rank)


class StreamTracker:
    """The data position of one rank: batches consumed and where each stream stands.

    A DataLoader over an IterableDataset takes batches from its workers in turn, so after
    ``batches`` batches the next comes from stream ``batches % streams``; on resume the
    dataset is rotated (``first_stream``) so that this stream is served first.
    """

    def __init__(self, streams: int, state: dict[str, Any] | None = None) -> None:
        self.streams = streams
        self.batches = 0
        self.positions: dict[int, StreamPosition] = {}
        if state is not None:
            if int(state.get("streams", -1)) != streams:
                raise ValueError(
                    f"data position was saved with {state.get('streams')} streams per rank, "
                    f"this run has {streams} (keep data.workers unchanged to resume exactly)"
                )
            self.batches = int(state["batches"])
            self.positions = {
                int(s): StreamPosition(int(d), int(c)) for s, (d, c) in state["positions"].items()
            }

    @property
    def first_stream(self) -> int:
        return self.batches % self.streams

    def update(self, batch: dict[str, Any]) -> None:
        self.batches += 1
        self.positions[int(batch["stream"])] = StreamPosition(
            int(batch["draw"]), int(batch["consumed"])
        )

    def state(self) -> dict[str, Any]:
        return {
            "streams": self.streams,
            "batches": self.batches,
            "positions": {str(s): [p.draw, p.consumed] for s, p in self.positions.items()},
        }


# --------------------------------------------------------------------------- fine-tuning

DENOISE_SIGMAS = {"denoise_15": 15, "denoise_25": 25, "denoise_50": 50}
TASKS = (*DENOISE_SIGMAS, "derain", "dehaze")
TASK_FOLDERS = {"denoise": "Denoise", "derain": "Derain", "dehaze": "Dehaze"}


@dataclass(frozen=True)
class TrainItem:
    task: str  # denoise_15/25/50, derain, dehaze
    target: Path
    degraded: Path | None  # None for denoising (noise is added on the fly)


def _scan_images(folder: Path) -> list[Path]:
    if not folder.is_dir():
        raise MissingTrainingFileError(f"missing training folder {folder}")
    files = sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise MissingTrainingFileError(f"no images in training folder {folder}")
    return files


def _listed(task_dir: Path, list_file: Path | None, default_sub: str | None) -> list[Path]:
    """Images named in ``list_file`` (one path per line, relative to ``task_dir``), or all
    images under ``task_dir/default_sub`` when there is no list."""
    if list_file is None:
        return _scan_images(task_dir / default_sub if default_sub else task_dir)
    if not list_file.is_file():
        raise MissingTrainingFileError(f"missing image list {list_file}")
    names = [line.strip() for line in list_file.read_text().splitlines() if line.strip()]
    if not names:
        raise TrainingDataError(f"image list {list_file} is empty")
    paths = [task_dir / name for name in names]
    for path in paths:
        if not path.is_file():
            raise MissingTrainingFileError(f"missing training image {path} (listed in {list_file})")
    return paths


def _first_existing(candidates: list[Path], what: str, source: Path) -> Path:
    for path in candidates:
        if path.is_file():
            return path
    raise MissingTrainingFileError(f"missing {what} {candidates[0]} for {source}")


def derain_target(rainy: Path, derain_dir: Path) -> Path:
    """``rainy/rain-12.png`` -> ``gt/norain-12.png`` (Rain100L naming), else the same name."""
    rel = rainy.relative_to(derain_dir / "rainy")
    gt_dir = derain_dir / "gt" / rel.parent
    name = rel.name
    names = [f"no{name}"] if name.lower().startswith("rain-") else []
    return _first_existing([gt_dir / n for n in [*names, name]], "clean image", rainy)


def dehaze_target(hazy: Path, dehaze_dir: Path) -> Path:
    """RESIDE naming: ``synthetic/part1/0001_0.8_0.2.jpg`` -> ``original/0001.jpg``."""
    image_id = hazy.stem.split("_", 1)[0]
    original = dehaze_dir / "original"
    suffixes = [hazy.suffix, *sorted(IMAGE_SUFFIXES - {hazy.suffix})]
    return _first_existing([original / f"{image_id}{s}" for s in suffixes], "clean image", hazy)


def discover_items(
    root: Path,
    tasks: Sequence[str],
    lists: dict[str, Path | None] | None = None,
    repeats: dict[str, int] | None = None,
) -> list[TrainItem]:
    """Every training item of ``tasks`` under ``root`` (the official ``data/Train`` folder).

    ``lists`` maps ``denoise``/``derain``/``dehaze`` to an optional list file; ``repeats``
    repeats a task's items (the official recipe repeats the small Rain100L set 120 times).
    """
    lists = lists or {}
    repeats = repeats or {}
    unknown = sorted(set(tasks) - set(TASKS))
    if unknown:
        raise ValueError(f"unknown fine-tuning task(s) {unknown}; choose from {list(TASKS)}")
    items: list[TrainItem] = []
    if any(t in DENOISE_SIGMAS for t in tasks):
        clean = _listed(root / TASK_FOLDERS["denoise"], lists.get("denoise"), None)
        for task in (t for t in tasks if t in DENOISE_SIGMAS):
            items += [TrainItem(task, p, None) for p in clean] * repeats.get(task, 1)
    if "derain" in tasks:
        derain_dir = root / TASK_FOLDERS["derain"]
        rainy = _listed(derain_dir, lists.get("derain"), "rainy")
        pairs = [TrainItem("derain", derain_target(p, derain_dir), p) for p in rainy]
        items += pairs * repeats.get("derain", 1)
    if "dehaze" in tasks:
        dehaze_dir = root / TASK_FOLDERS["dehaze"]
        hazy = _listed(dehaze_dir, lists.get("dehaze"), "synthetic")
        pairs = [TrainItem("dehaze", dehaze_target(p, dehaze_dir), p) for p in hazy]
        items += pairs * repeats.get("dehaze", 1)
    return items


class AllInOneDataset(torch.utils.data.Dataset):
    """Items of the official layout as ``(degraded, clean)`` crops; indexed by ``(i, seed)``."""

    def __init__(self, items: list[TrainItem], crop: int = 128) -> None:
        if not items:
            raise TrainingDataError("no fine-tuning items")
        self.items = items
        self.crop = crop

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, key: tuple[int, int]) -> dict[str, torch.Tensor]:
        index, seed = key
        item = self.items[index]
        gen = torch.Generator().manual_seed(seed)
        clean = _crop_to_multiple(read_training_image(item.target), str(item.target))
        if item.degraded is not None:
            degraded = _crop_to_multiple(read_training_image(item.degraded), str(item.degraded))
            if degraded.shape != clean.shape:
                raise TrainingDataError(
                    f"{item.degraded} ({degraded.shape[1]}x{degraded.shape[0]}) and its clean "
                    f"image {item.target} ({clean.shape[1]}x{clean.shape[0]}) differ in size"
                )
        top, left = crop_box(clean.shape[0], clean.shape[1], self.crop, gen, str(item.target))
        window = (slice(top, top + self.crop), slice(left, left + self.crop))
        mode = int(torch.randint(0, 8, (), generator=gen))
        target = flip_rotate(to_tensor(clean[window]), mode).contiguous()
        if item.degraded is None:
            # The official recipe: uint8 clean + sigma * N(0, 1), clipped, truncated to uint8.
            sigma = DENOISE_SIGMAS[item.task]
            noise = torch.randn(target.shape, generator=gen)
            noisy = (target * 255.0).round() + sigma * noise
            source = noisy.clamp(0, 255).floor() / 255.0
        else:
            source = flip_rotate(to_tensor(degraded[window]), mode).contiguous()
        return {"input": source, "target": target}


class GlobalBatchSampler(Sampler[list[tuple[int, int]]]):
    """Endless micro-batches of ``(index, seed)`` keys, resumable at any micro-batch.

    Global batch ``b`` is slice ``b`` of a seeded permutation of epoch ``b // per_epoch``
    (incomplete tail batches are dropped). Rank ``r`` takes its ``1 / world_size`` of it, cut
    into ``accumulation`` micro-batches. Each key's seed comes from its place in the global
    order, so the same global batch is augmented the same way with any number of processes.
    """

    def __init__(
        self,
        dataset_size: int,
        global_batch: int,
        *,
        seed: int,
        rank: int = 0,
        world_size: int = 1,
        accumulation: int = 1,
        start: int = 0,
    ) -> None:
        if global_batch % (world_size * accumulation):
            raise ValueError(
                f"batch size {global_batch} is not divisible by processes x accumulation "
                f"({world_size} x {accumulation})"
            )
        if dataset_size < global_batch:
            raise TrainingDataError(
                f"the dataset has {dataset_size} items, fewer than one batch of {global_batch}"
            )
        self.size = dataset_size
        self.global_batch = global_batch
        self.seed = seed
        self.rank = rank
        self.world = world_size
        self.accumulation = accumulation
        self.micro = global_batch // (world_size * accumulation)
        self.start = start  # micro-batches of this rank already consumed

    @property
    def batches_per_epoch(self) -> int:
        return self.size // self.global_batch

    def __iter__(self) -> Iterator[list[tuple[int, int]]]:
        perm_epoch, perm = -1, np.empty(0, dtype=np.int64)
        for micro_index in itertools.count(self.start):
            batch, part = divmod(micro_index, self.accumulation)
            epoch, slot = divmod(batch, self.batches_per_epoch)
            if epoch != perm_epoch:
                perm_epoch = epoch
                perm = np.random.default_rng([self.seed, epoch]).permutation(self.size)
            begin = slot * self.global_batch + (self.rank * self.accumulation + part) * self.micro
            yield [
                (int(perm[i]), seed_of(self.seed, "finetune", epoch, i))
                for i in range(begin, begin + self.micro)
            ]

    def __len__(self) -> int:  # an endless sampler; one epoch's worth for progress displays
        return self.batches_per_epoch * self.accumulation
