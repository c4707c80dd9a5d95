"""Dynamic pre-training and all-in-one fine-tuning of DyNet: the loop, top to bottom.

    python -m dynet.train --config pretrain.yaml [optim.lr=2e-4 ...]
    torchrun --nproc-per-node 8 -m dynet.train --config finetune.yaml

One loop serves both stages; they differ only in their data (a patch stream or the official
all-in-one layout) and defaults (see :mod:`dynet.train_config` and ``docs/recipes.md``). Each
optimizer step draws the variant(s) to train (``sample``: one by probability, the same on every
rank; ``all``: every variant, losses summed; ``official``: the first variant only, the others
served from the same weights) and backpropagates L1 to the clean image through the shared
blocks. Fine-tuning's schedule is in epochs and, by default, changes once per epoch.
DDP (NCCL on GPU, gloo on CPU), bf16 autocast and channels_last on CUDA, gradient
accumulation, EMA, checkpoints every N steps and on SIGTERM, exact resume (the learning-rate
schedule is a pure function of the step, so restoring the step restores the scheduler).
Checkpoints are read by every rank on resume: with several nodes, ``checkpoint.dir`` must be
shared storage or an object-store URI.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import json
import math
import os
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader

from dynet.checkpoint import load_weights, save_weights
from dynet.data import (
    AllInOneDataset,
    GlobalBatchSampler,
    PatchStream,
    StreamTracker,
    discover_items,
    seed_of,
)
from dynet.official import load_official_weights
from dynet.registry import create_model, to_channels_last
from dynet.train_config import (
    FinetuneConfig,
    OptimSettings,
    PretrainConfig,
    TrainConfig,
    VariantChoice,
    load_config,
)
from dynet.train_state import (
    CheckpointManager,
    load_checkpoint_file,
    rng_state,
    set_rng_state,
    stop_on_signals,
    stop_requested,
)
from storage.devices import resolve_device
from storage.uri import is_local, join, open_fs


class TrainingError(RuntimeError):
    """Training cannot go on (e.g. too many non-finite losses in a row)."""


# --------------------------------------------------------------------------- set-up helpers


@dataclass(frozen=True)
class Distributed:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def main(self) -> bool:
        return self.rank == 0


def setup_distributed(device_request: str) -> Distributed:
    """Join the process group torchrun describes in the environment (if any)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world == 1:
        return Distributed()
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    use_cuda = resolve_device(device_request, local_rank).type == "cuda"
    if use_cuda:
        torch.cuda.set_device(local_rank)
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if use_cuda else "gloo")
    return Distributed(dist.get_rank(), dist.get_world_size(), local_rank)


def initialise(model: nn.Module, source: str) -> None:
    """Load starting weights: project .safetensors, a training checkpoint, or official."""
    if source.endswith(".safetensors"):
        load_weights(source, model)
    elif source.endswith(".pt") and "step-" in source.rsplit("/", 1)[-1]:
        state = load_checkpoint_file(source)
        model.load_state_dict(state["ema"] or state["model"])
    else:
        load_official_weights(model, source)


def learning_rate(step: int, optim: OptimSettings, warmup: int, horizon: int) -> float:
    """Linear warm-up to ``optim.lr``, then constant or cosine down to ``optim.min_lr``.

    ``step`` is the schedule's clock: optimizer steps, or epochs for fine-tuning's per-epoch
    schedule (``warmup`` and ``horizon`` then count epochs too)."""
    if step < warmup:
        return optim.lr * (step + 1) / warmup
    if optim.schedule == "constant":
        return optim.lr
    progress = min(1.0, (step - warmup) / max(1, horizon - warmup))
    return optim.min_lr + (optim.lr - optim.min_lr) * 0.5 * (1 + math.cos(math.pi * progress))


class EMA:
    """Exponential moving average of the model's floating-point state."""

    def __init__(self, model: nn.Module, decay: float) -> None:
        self.decay = decay
        self.shadow = {k: v.detach().clone() for k, v in model.state_dict().items()}

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        for key, value in model.state_dict().items():
            if value.is_floating_point():
                self.shadow[key].lerp_(value, 1 - self.decay)
            else:
                self.shadow[key].copy_(value)


class MetricsLog:
    """Rows of metrics to ``metrics.jsonl`` and ``metrics.csv`` (and TensorBoard)."""

    def __init__(self, directory: str, columns: list[str], tensorboard: bool) -> None:
        self.dir = Path(directory)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.columns = columns
        csv_path = self.dir / "metrics.csv"
        new = not csv_path.exists()
        self._csv_handle = open(csv_path, "a", newline="")  # noqa: SIM115 - closed in close()
        self._csv = csv.DictWriter(self._csv_handle, fieldnames=columns, extrasaction="ignore")
        if new:
            self._csv.writeheader()
        self._jsonl = open(self.dir / "metrics.jsonl", "a")  # noqa: SIM115
        self._tb = None
        if tensorboard:
            from torch.utils.tensorboard import SummaryWriter

            self._tb = SummaryWriter(str(self.dir / "tensorboard"))

    def write(self, row: dict[str, Any]) -> None:
        self._jsonl.write(json.dumps(row) + "\n")
        self._jsonl.flush()
        self._csv.writerow(row)
        self._csv_handle.flush()
        if self._tb is not None:
            for key, value in row.items():
                if key != "step" and isinstance(value, int | float):
                    self._tb.add_scalar(key, value, row["step"])

    def close(self) -> None:
        self._jsonl.close()
        self._csv_handle.close()
        if self._tb is not None:
            self._tb.close()


def progress_bar(enabled: bool | None, total: int, start: int):  # noqa: ANN201
    """A rich progress bar on a terminal, else a no-op with the same methods."""
    if enabled is None:
        enabled = sys.stderr.isatty()
    if not enabled:
        return contextlib.nullcontext(None)
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

    bar = Progress(
        TextColumn("training"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[info]}"),
        console=Console(stderr=True),
    )
    bar.add_task("train", total=total, completed=start, info="")
    return bar


def _worker_init(_worker: int) -> None:
    torch.set_num_threads(1)  # degradations in many workers must not fight over cores


# --------------------------------------------------------------------------- data


def pretrain_batches(
    cfg: PretrainConfig, ddp: Distributed, micro: int, tracker: StreamTracker, pin: bool
) -> Iterator[dict[str, Any]]:
    stream = PatchStream(
        cfg.data.shard_uris(),
        batch_size=micro,
        crop=cfg.crop,
        recipe=cfg.data.degradations,
        seed=cfg.seed,
        resample=cfg.data.resample,
        shuffle_buffer=cfg.data.shuffle_buffer,
        rank=ddp.rank,
        world_size=ddp.world_size,
        streams_per_rank=tracker.streams,
        positions=tracker.positions,
        first_stream=tracker.first_stream,
    )
    workers = cfg.data.workers
    loader = DataLoader(
        stream,
        batch_size=None,
        num_workers=workers,
        pin_memory=pin,
        prefetch_factor=cfg.data.prefetch if workers else None,
        worker_init_fn=_worker_init if workers else None,
    )
    for batch in loader:
        tracker.update(batch)
        yield batch


def finetune_dataset(cfg: FinetuneConfig) -> AllInOneDataset:
    data = cfg.data
    lists = {"denoise": data.denoise_list, "derain": data.derain_list, "dehaze": data.dehaze_list}
    items = discover_items(
        Path(data.root), data.tasks, {k: Path(v) for k, v in lists.items() if v}, data.repeats
    )
    return AllInOneDataset(items, crop=cfg.crop)


def finetune_batches(
    cfg: FinetuneConfig,
    dataset: AllInOneDataset,
    sampler: GlobalBatchSampler,
    position: dict[str, int],
    pin: bool,
) -> Iterator[dict[str, Any]]:
    loader = DataLoader(
        dataset,
        batch_sampler=sampler,
        num_workers=cfg.data.workers,
        pin_memory=pin,
        worker_init_fn=_worker_init if cfg.data.workers else None,
    )
    for batch in loader:
        position["micro_batches"] += 1  # the data position: micro-batches of this rank consumed
        yield batch


# --------------------------------------------------------------------------- the loop


def train(cfg: TrainConfig) -> dict[str, Any]:
    """Run (or resume) training as ``cfg`` says; returns a summary of the run."""
    # -- processes, device, precision
    ddp = setup_distributed(cfg.runtime.device)
    device = resolve_device(cfg.runtime.device, ddp.local_rank if ddp.enabled else None)
    cuda = device.type == "cuda"
    bf16 = cfg.runtime.precision == "bf16" or (cfg.runtime.precision == "auto" and cuda)
    channels_last = cfg.runtime.channels_last if cfg.runtime.channels_last is not None else cuda
    if cfg.runtime.threads:
        torch.set_num_threads(cfg.runtime.threads)
    if cfg.runtime.deterministic:
        torch.use_deterministic_algorithms(True)
    if cfg.batch_size % (ddp.world_size * cfg.accumulation):
        raise ValueError(
            f"batch_size {cfg.batch_size} is not divisible by processes x accumulation "
            f"({ddp.world_size} x {cfg.accumulation})"
        )
    micro = cfg.batch_size // (ddp.world_size * cfg.accumulation)
    if not isinstance(cfg, FinetuneConfig):
        cfg.data.shard_uris()  # no data (or a zero-sample version) fails before any file is written

    # -- the schedule (fine-tuning counts in epochs of the global batch)
    if isinstance(cfg, FinetuneConfig):
        dataset = finetune_dataset(cfg)
        per_epoch = len(dataset) // cfg.batch_size
        if per_epoch == 0:
            raise ValueError(f"fewer fine-tuning items than one batch of {cfg.batch_size}")
        total_steps = cfg.steps or cfg.epochs * per_epoch
        if cfg.lr_every == "epoch":  # the schedule's clock is the epoch (as Lightning steps it)
            lr_unit, warmup, horizon = per_epoch, cfg.warmup_epochs, cfg.cosine_epochs
        else:
            lr_unit = 1
            warmup, horizon = cfg.warmup_epochs * per_epoch, cfg.cosine_epochs * per_epoch
    else:
        total_steps, lr_unit = cfg.steps, 1
        warmup, horizon = cfg.optim.warmup_steps, cfg.optim.decay_steps or cfg.steps

    # -- model, optimizer, EMA
    torch.manual_seed(cfg.seed)
    model = create_model(cfg.model.arch, **cfg.model.options)
    if cfg.model.init:
        initialise(model, cfg.model.init)
    model.to(device)
    if channels_last:
        to_channels_last(model)
    opt_class = torch.optim.AdamW if cfg.optim.name == "adamw" else torch.optim.Adam
    optimizer = opt_class(
        model.parameters(),
        lr=cfg.optim.lr,
        betas=cfg.optim.betas,
        weight_decay=cfg.optim.weight_decay,
    )
    ema = EMA(model, cfg.optim.ema_decay) if cfg.optim.ema_decay else None
    variant_gen = torch.Generator().manual_seed(seed_of(cfg.seed, "variants"))

    # -- resume: everything that decides the trajectory
    checkpoints = CheckpointManager(cfg.checkpoint.dir, cfg.checkpoint.keep_last)
    state = checkpoints.load_latest() if cfg.checkpoint.resume else None
    start_step, bad_in_row, skipped = 0, 0, 0
    data_state: dict[str, Any] | None = None
    if state is not None:
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        if ema is not None and state.get("ema") is not None:
            ema.shadow = {k: v.to(device) for k, v in state["ema"].items()}
        variant_gen.set_state(state["variant_rng"])
        start_step, bad_in_row, skipped = state["step"], state["bad_in_row"], state["skipped"]
        per_rank = state["ranks"]
        if len(per_rank) == ddp.world_size:
            set_rng_state(per_rank[ddp.rank]["rng"])
            data_state = per_rank[ddp.rank]["data"]
        elif ddp.main:
            print(
                f"warning: checkpoint of {len(per_rank)} processes resumed by {ddp.world_size}: "
                "data streams restart from new positions",
                file=sys.stderr,
            )
        del state

    raw_model = model
    if cfg.runtime.compile:
        model = torch.compile(model)
    if ddp.enabled:
        model = nn.parallel.DistributedDataParallel(
            model, device_ids=[device.index] if cuda else None
        )

    # -- data
    if isinstance(cfg, PretrainConfig):
        tracker = StreamTracker(max(1, cfg.data.workers), data_state)
        batches = pretrain_batches(cfg, ddp, micro, tracker, pin=cuda)

        def data_position() -> dict[str, Any]:
            return tracker.state()
    else:
        sampler = GlobalBatchSampler(
            len(dataset),
            cfg.batch_size,
            seed=cfg.seed,
            rank=ddp.rank,
            world_size=ddp.world_size,
            accumulation=cfg.accumulation,
            start=int(data_state["micro_batches"]) if data_state else 0,
        )
        position = {"micro_batches": sampler.start}
        batches = finetune_batches(cfg, dataset, sampler, position, pin=cuda)

        def data_position() -> dict[str, Any]:
            return dict(position)

    def save_checkpoint(step: int) -> str | None:
        ranks = [{"rng": rng_state(), "data": data_position()}]
        if ddp.enabled:
            gathered: list[Any] = [None] * ddp.world_size
            dist.all_gather_object(gathered, ranks[0])
            ranks = gathered
        if not ddp.main:
            return None
        return checkpoints.save(
            step,
            {
                "step": step,
                "model": raw_model.state_dict(),
                "ema": ema.shadow if ema else None,
                "optimizer": optimizer.state_dict(),
                "variant_rng": variant_gen.get_state(),
                "bad_in_row": bad_in_row,
                "skipped": skipped,
                "ranks": ranks,
                "config": cfg.model_dump_json(),
            },
        )

    # -- metrics
    variants: list[VariantChoice] = cfg.model.variants
    labels = [v.label for v in variants]
    probabilities = torch.tensor([v.probability for v in variants], dtype=torch.float64)
    columns = ["step", "loss", *(f"loss_{x}" for x in labels), "variants", "lr", "grad_norm"]
    columns += ["patches_per_s", "data_wait_share", "skipped", "elapsed_s"]
    log = MetricsLog(cfg.log.dir, columns, cfg.log.tensorboard) if ddp.main else None
    autocast = (
        torch.autocast(device.type, dtype=torch.bfloat16) if bf16 else contextlib.nullcontext()
    )

    step, loss_value, stopped_by, last_ckpt = start_step, float("nan"), None, None
    window_start, window_wait, window_patches = time.perf_counter(), 0.0, 0
    run_start = time.perf_counter()
    model.train()
    show_bar = cfg.log.progress if ddp.main else False
    with stop_on_signals(), progress_bar(show_bar, total_steps, start_step) as bar:
        while step < total_steps:
            # 1. which variant(s) this step trains (same draw on every rank)
            if cfg.model.variant_mode == "sample":
                chosen = [int(torch.multinomial(probabilities, 1, generator=variant_gen))]
            else:
                chosen = cfg.model.trained()
            lr = learning_rate(step // lr_unit, cfg.optim, warmup, horizon)
            for group in optimizer.param_groups:
                group["lr"] = lr

            # 2. forward/backward over micro-batches (gradients all-reduced on the last one)
            losses = {labels[i]: torch.zeros((), device=device) for i in chosen}
            for part in range(cfg.accumulation):
                waited = time.perf_counter()
                batch = next(batches)
                window_wait += time.perf_counter() - waited
                x = batch["input"].to(device, non_blocking=True)
                y = batch["target"].to(device, non_blocking=True)
                if channels_last:
                    x = x.contiguous(memory_format=torch.channels_last)
                window_patches += x.shape[0] * ddp.world_size
                for n, index in enumerate(chosen):
                    last = part == cfg.accumulation - 1 and n == len(chosen) - 1
                    sync = contextlib.nullcontext() if last or not ddp.enabled else model.no_sync()
                    with sync:
                        with autocast:
                            out = model(x, variant=variants[index].variant)
                        out = out.float()
                        if cfg.clamp_output:
                            out = out.clamp(0, 1)
                        loss = F.l1_loss(out, y) / cfg.accumulation
                        loss.backward()
                    losses[labels[index]] += loss.detach()

            # 3. skip non-finite steps (every rank agrees), else clip, step, EMA
            total = sum(losses.values())
            finite = torch.isfinite(total).float()
            if ddp.enabled:
                dist.all_reduce(finite, op=dist.ReduceOp.MIN)
            grad_norm = float("nan")
            if finite.item() < 1:
                optimizer.zero_grad(set_to_none=True)
                bad_in_row, skipped = bad_in_row + 1, skipped + 1
                if bad_in_row >= cfg.runtime.max_bad_steps:
                    raise TrainingError(
                        f"{bad_in_row} non-finite losses in a row at step {step + 1}; "
                        "lower optim.lr or check the data"
                    )
            else:
                bad_in_row = 0
                if cfg.optim.grad_clip:
                    grad_norm = float(
                        nn.utils.clip_grad_norm_(raw_model.parameters(), cfg.optim.grad_clip)
                    )
                optimizer.step()
                optimizer.zero_grad(set_to_none=True)
                if ema is not None:
                    ema.update(raw_model)
            step += 1

            # 4. metrics (losses averaged over ranks)
            if ddp.enabled:
                stacked = torch.stack(list(losses.values()))
                dist.all_reduce(stacked)
                losses = dict(zip(losses, stacked / ddp.world_size, strict=True))
            loss_value = float(sum(losses.values()))
            if step % cfg.log.every_steps == 0 or step == total_steps:
                elapsed = time.perf_counter() - window_start
                row = {
                    "step": step,
                    "loss": loss_value,
                    **{f"loss_{k}": float(v) for k, v in losses.items()},
                    "variants": "+".join(losses),
                    "lr": lr,
                    "grad_norm": grad_norm,
                    "patches_per_s": window_patches / elapsed if elapsed else 0.0,
                    "data_wait_share": window_wait / elapsed if elapsed else 0.0,
                    "skipped": skipped,
                    "elapsed_s": time.perf_counter() - run_start,
                }
                if log is not None:
                    log.write(row)
                if bar is None and ddp.main:  # no terminal (a flow, a batch job): a log line
                    print(
                        f"step {step}/{total_steps} loss {loss_value:.4f} ({row['variants']}) "
                        f"{row['patches_per_s']:.1f} patches/s",
                        flush=True,
                    )
                window_start, window_wait, window_patches = time.perf_counter(), 0.0, 0
            if bar is not None:
                bar.update(bar.task_ids[0], completed=step, info=f"loss {loss_value:.4f}")

            # 5. checkpoints: on schedule, at the end, and when asked to stop (SIGTERM)
            stop = torch.tensor(float(stop_requested() is not None))
            if ddp.enabled:
                dist.all_reduce(stop, op=dist.ReduceOp.MAX)
            if step % cfg.checkpoint.every_steps == 0 or step == total_steps or stop.item():
                last_ckpt = save_checkpoint(step) or last_ckpt
            if stop.item():
                stopped_by = stop_requested() or "peer"
                break

    weights = None
    if ddp.main and stopped_by is None:
        weights = export_weights(raw_model, ema, cfg)
    if log is not None:
        log.close()
    if ddp.enabled:
        dist.barrier()
    return {
        "stage": cfg.stage,
        "step": step,
        "loss": loss_value,
        "skipped_steps": skipped,
        "checkpoint": last_ckpt,
        "weights": weights,
        "resumed_from": start_step or None,
        "stopped_by_signal": stopped_by,
    }


def export_weights(model: nn.Module, ema: EMA | None, cfg: TrainConfig) -> str:
    """The final weights (the EMA's when there is one) as one .safetensors for every variant."""
    fs, _ = open_fs(cfg.checkpoint.dir)
    folder = cfg.checkpoint.dir if is_local(fs) else cfg.log.dir
    path = Path(join(folder, "weights.safetensors"))
    if ema is not None:
        model = create_model(cfg.model.arch, **cfg.model.options)
        model.load_state_dict({k: v.cpu() for k, v in ema.shadow.items()})
    save_weights(model, path, metadata={"stage": cfg.stage})
    return str(path)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m dynet.train", description=__doc__)
    parser.add_argument("--config", help="YAML or JSON config (see dynet.train_config)")
    parser.add_argument("--stage", choices=["pretrain", "finetune"], default=None)
    parser.add_argument("overrides", nargs="*", help="KEY=VALUE, e.g. optim.lr=2e-4")
    args = parser.parse_args(argv)
    try:
        cfg = load_config(args.config, args.overrides, args.stage)
        summary = train(cfg)
    except (ValueError, FileNotFoundError, TrainingError) as exc:
        print(f"dynet.train: error: {str(exc).splitlines()[0]}", file=sys.stderr)
        return 2
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()
    if int(os.environ.get("RANK", "0")) == 0:
        print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
