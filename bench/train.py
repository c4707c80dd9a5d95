"""Pre-training throughput: the patch loader alone and one optimizer step for L, S and the mix.

    OMP_NUM_THREADS=1 .venv/bin/python -m bench.train                      # CPU: batch 4, 64x64
    .venv/bin/python -m bench.train --device cuda --precision bf16 --batch 8 --size 128 \\
        --seconds 80 --loader-workers 8                                     # see gpu_train.sh

Prints one JSON object. ``loader_patches_per_s`` is what ONE loader worker delivers (in this
process, no DataLoader), from generated 512x512 PNG patch shards with the full default recipe
(decode, crop, flip/rotate, degradations, block masking); with ``--loader-workers N`` the
DataLoader's total over N worker processes is reported too. ``step_patches_per_s`` has ``L``,
``S`` and ``mix`` (a variant drawn per step with p = 0.5, as dynamic pre-training does):
patches per second of a full step (forward, L1, backward, clipping, AdamW) of DyNet at its
real width. ``*_cpu`` figures divide by this process's CPU time instead of wall time, which is
steadier on a shared machine; on the CPU the ratios below use CPU time. ``mix_over_drawn_mean``
compares the mix with the mean of L and S weighted by how often each was drawn (a fair
comparator for a few random draws); ``mix_over_mean_of_L_S`` uses 1:1. Targets (issue 6):
loader >= 4x a DyNet-L step's consumption at the same batch size; mix <= mean(L, S) x 1.05.
"""

from __future__ import annotations

import argparse
import resource
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from bench.common import Report
from dynet.data import PatchStream
from dynet.degrade import DegradationRecipe
from dynet.registry import create_model, to_channels_last
from flows.demo.data import encode, photo_like
from storage.shards import Sample, ShardWriter


def make_shards(folder: Path, patches: int, size: int = 512) -> list[str]:
    with ShardWriter(str(folder), max_count=max(1, patches // 2)) as writer:
        for i in range(patches):
            data = encode(photo_like(size, size, seed=i), "PNG", compress_level=6)
            writer.write(Sample(f"patch-{i:05d}", data, "png", {}))
    return [shard.uri for shard in writer.written]


def bench_loader(shards: list[str], batch: int, crop: int, batches: int, workers: int) -> dict:
    def stream(streams: int) -> PatchStream:
        return PatchStream(
            shards,
            batch_size=batch,
            crop=crop,
            recipe=DegradationRecipe(),
            seed=0,
            shuffle_buffer=16,
            streams_per_rank=streams,
        )

    iterator = iter(stream(1))
    next(iterator)  # open the first shard
    wall, cpu = time.perf_counter(), time.process_time()
    for _ in range(batches):
        next(iterator)
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    result = {
        "loader_patches_per_s": batches * batch / wall,
        "loader_patches_per_s_cpu": batches * batch / cpu,
    }
    if workers:
        loader = torch.utils.data.DataLoader(
            stream(workers), batch_size=None, num_workers=workers, prefetch_factor=4
        )
        iterator = iter(loader)
        for _ in range(workers):
            next(iterator)
        wall = time.perf_counter()
        for _ in range(batches * workers):
            next(iterator)
        wall = time.perf_counter() - wall
        result["loader_workers"] = workers
        result["loader_total_patches_per_s"] = batches * workers * batch / wall
    return result


def bench_steps(args: argparse.Namespace, device: torch.device) -> dict:
    torch.manual_seed(0)
    model = create_model("dynet").to(device)
    cuda = device.type == "cuda"
    if cuda:
        model = to_channels_last(model)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
    bf16 = args.precision == "bf16"
    x = torch.rand(args.batch, 3, args.size, args.size, device=device)
    y = torch.rand_like(x)
    if cuda:
        x = x.contiguous(memory_format=torch.channels_last)
    draw = torch.Generator().manual_seed(0)

    def step(variant: str) -> None:
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
            out = model(x, variant=variant)
        F.l1_loss(out.float(), y).backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    def sync() -> None:
        if cuda:
            torch.cuda.synchronize()

    results: dict = {
        "step_patches_per_s": {},
        "step_patches_per_s_cpu": {},
        "step_seconds": {},
        "step_cpu_seconds": {},
    }
    peaks: dict = {}
    drawn = {"L": 0, "S": 0}
    for mode in ("L", "S", "mix"):
        step("L" if mode == "mix" else mode)  # warm-up (allocator, autotuning)
        sync()
        if cuda:
            torch.cuda.reset_peak_memory_stats()
        steps, wall, cpu = 0, time.perf_counter(), time.process_time()
        while (args.seconds and time.perf_counter() - wall < args.seconds) or (
            not args.seconds and steps < args.steps * (2 if mode == "mix" else 1)
        ):
            variant = mode
            if mode == "mix":
                variant = "L" if float(torch.rand((), generator=draw)) < 0.5 else "S"
                drawn[variant] += 1
            step(variant)
            steps += 1
        sync()
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
        results["step_patches_per_s"][mode] = steps * args.batch / wall
        results["step_patches_per_s_cpu"][mode] = steps * args.batch / cpu
        results["step_seconds"][mode] = wall / steps
        results["step_cpu_seconds"][mode] = cpu / steps
        if cuda:
            peaks[mode] = torch.cuda.max_memory_allocated() / 2**20
    # ratios from CPU time on the CPU (steadier on a shared machine), wall time on CUDA
    seconds = results["step_seconds" if cuda else "step_cpu_seconds"]
    mean_ls = (seconds["L"] + seconds["S"]) / 2
    n = drawn["L"] + drawn["S"]
    drawn_mean = (drawn["L"] * seconds["L"] + drawn["S"] * seconds["S"]) / n
    results["mix_draws"] = drawn
    results["mix_over_mean_of_L_S"] = seconds["mix"] / mean_ls
    results["mix_over_drawn_mean"] = seconds["mix"] / drawn_mean
    results["s_over_l_time"] = seconds["S"] / seconds["L"]
    if peaks:
        results["peak_gpu_memory_mb"] = peaks
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--precision", choices=["fp32", "bf16"], default="fp32")
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--steps", type=int, default=3, help="Timed steps per mode (mix: 2x).")
    parser.add_argument("--seconds", type=float, default=0, help="Time per mode instead.")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads.")
    parser.add_argument("--patches", type=int, default=24, help="Generated 512px patches.")
    parser.add_argument("--loader-batches", type=int, default=8)
    parser.add_argument("--loader-workers", type=int, default=0)
    parser.add_argument("--skip-steps", action="store_true")
    args = parser.parse_args()
    if min(args.batch, args.size, args.steps, args.patches, args.loader_batches) < 1:
        parser.error("--batch, --size, --steps, --patches and --loader-batches must be >= 1")
    report = Report("train", args, packages=("webdataset",))
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)

    with tempfile.TemporaryDirectory(prefix="bench-train-") as tmp:
        shards = make_shards(Path(tmp), args.patches)
        result: dict = {
            "device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
            "threads": args.threads,
            "batch": args.batch,
            "size": args.size,
            "precision": args.precision,
        }
        result.update(
            bench_loader(shards, args.batch, args.size, args.loader_batches, args.loader_workers)
        )
    if not args.skip_steps:
        result.update(bench_steps(args, device))
        key = "_cpu" if device.type == "cpu" else ""
        step_l = result[f"step_patches_per_s{key}"]["L"]
        result["loader_over_step_L"] = result[f"loader_patches_per_s{key}"] / step_l
        result["targets"] = {
            "loader_at_least_4x_step_L": result["loader_over_step_L"] >= 4,
            "mix_within_5pct_of_drawn_mean": result["mix_over_drawn_mean"] <= 1.05,
        }
    result["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    report.emit(result)


if __name__ == "__main__":
    main()
