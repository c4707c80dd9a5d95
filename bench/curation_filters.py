"""Benchmark: probe + reduced decode + content filters against a bare reduced decode and a
naive full decode, on generated 12 MP JPEGs (~3 MB, photo-like, sensor-like grain).

Prints one JSON object. Single thread on purpose: the figures are per core (Pillow's decoders
and these numpy operations are single-threaded, so no OMP_NUM_THREADS setting is involved).
Targets (issue 3): the filter path costs at most 1.5x the floor, and is at least 3x faster
than the naive path.

    .venv/bin/python -m bench.curation_filters --n 12 --rounds 3
"""

from __future__ import annotations

import argparse
import io
import statistics
import time
from collections.abc import Callable

import numpy as np
from PIL import Image

from bench.common import Report
from curation.config import FilterConfig, ProbeConfig
from curation.filters import run_filters
from curation.probe import Prober, _power_of_two_scale
from tests.curation_images import dead_leaves, photo_like_array


def make_jpeg(seed: int, size: tuple[int, int] = (4000, 3000), quality: int = 93) -> bytes:
    """A 12 MP photo-like JPEG: smooth structure made at 1/4 scale and upsampled, sharp
    occluding shapes and grain drawn at full resolution (a full-size generation is too slow)."""
    width, height = size
    rng = np.random.default_rng(seed)
    base = Image.fromarray(photo_like_array(width // 4, height // 4, seed=seed, grain=8.0))
    texture = np.asarray(base.resize(size, Image.Resampling.BICUBIC), dtype=np.float32)
    leaves = dead_leaves(width, height, rng)
    grain = rng.integers(-5, 6, size=(height, width, 1), dtype=np.int16).astype(np.float32)
    pixels = 0.5 * texture + 0.5 * leaves + grain
    image = Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8))
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=quality)
    return buffer.getvalue()


def floor(data: bytes, max_side: int = 1024) -> None:
    """The bare reduced decode: open, DCT-scaled draft to <= max_side, load. Nothing else."""
    image = Image.open(io.BytesIO(data))
    scale = min(8, _power_of_two_scale(max(image.size), max_side))
    image.draft("RGB", (image.size[0] // scale, image.size[1] // scale))
    image.load()


def make_filter_path(prober: Prober, config: FilterConfig) -> Callable[[bytes], None]:
    def filter_path(data: bytes) -> None:
        header = prober.probe_header(data)
        run_filters(prober.reduced_decode(data, header), config)

    return filter_path


def make_naive(config: FilterConfig, resize: bool) -> Callable[[bytes], None]:
    def naive(data: bytes) -> None:
        image = Image.open(io.BytesIO(data)).convert("RGB")  # full 12 MP decode
        if resize:
            image.thumbnail((1024, 1024), Image.Resampling.BILINEAR)
        run_filters(image, config)

    return naive


def measure(
    paths: dict[str, Callable[[bytes], None]], files: list[bytes], rounds: int
) -> dict[str, dict[str, float]]:
    """images/s per path, wall and CPU (process time), median over rounds. The paths take
    turns within each round so that a change in machine load hits them all alike."""
    wall: dict[str, list[float]] = {name: [] for name in paths}
    cpu: dict[str, list[float]] = {name: [] for name in paths}
    for _ in range(rounds):
        for name, fn in paths.items():
            started, started_cpu = time.perf_counter(), time.process_time()
            for data in files:
                fn(data)
            wall[name].append(len(files) / (time.perf_counter() - started))
            cpu[name].append(len(files) / (time.process_time() - started_cpu))
    return {
        name: {"wall": statistics.median(wall[name]), "cpu": statistics.median(cpu[name])}
        for name in paths
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n", type=int, default=12, help="distinct generated JPEGs")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    if args.n < 1 or args.rounds < 1:
        parser.error("--n and --rounds must be at least 1")
    report = Report("curation_filters", args)

    t0 = time.perf_counter()
    files = [make_jpeg(seed) for seed in range(args.n)]
    generate_s = time.perf_counter() - t0
    prober = Prober(ProbeConfig())
    config = FilterConfig()
    verdicts = [
        run_filters(prober.reduced_decode(d, prober.probe_header(d)), config).reason for d in files
    ]
    rates = measure(
        {
            "floor": floor,
            "filter": make_filter_path(prober, config),
            "naive": make_naive(config, resize=False),
            "naive_resize": make_naive(config, resize=True),
        },
        files,
        args.rounds,
    )
    wall = {name: r["wall"] for name, r in rates.items()}
    cpu = {name: r["cpu"] for name, r in rates.items()}
    result = {
        "n_images": args.n,
        "rounds": args.rounds,
        "image_size": [4000, 3000],
        "mean_file_mb": round(sum(map(len, files)) / len(files) / 1e6, 2),
        "threads": 1,
        "floor_images_per_s": round(wall["floor"], 2),
        "filter_images_per_s": round(wall["filter"], 2),
        "naive_images_per_s": round(wall["naive"], 2),
        "naive_resize_images_per_s": round(wall["naive_resize"], 2),
        "filter_cost_vs_floor": round(wall["floor"] / wall["filter"], 3),
        "filter_speedup_vs_naive": round(wall["filter"] / wall["naive"], 2),
        "target_cost_le_1_5": wall["floor"] / wall["filter"] <= 1.5,
        "target_speedup_ge_3": wall["filter"] / wall["naive"] >= 3.0,
        # the same from CPU time, less sensitive to other load on a shared machine
        "cpu_images_per_s": {name: round(rate, 2) for name, rate in cpu.items()},
        "cpu_filter_cost_vs_floor": round(cpu["floor"] / cpu["filter"], 3),
        "cpu_filter_speedup_vs_naive": round(cpu["filter"] / cpu["naive"], 2),
        "accepted_share": sum(v is None for v in verdicts) / len(verdicts),
        "generate_s": round(generate_s, 1),
    }
    report.emit(result)


if __name__ == "__main__":
    main()
