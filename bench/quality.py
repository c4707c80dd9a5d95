"""Seconds per image of each offline IQA metric on 12 MP JPEGs, through the proxy.

Synthetic "photo-like" 12 MP JPEGs (4000x3000: scikit-image photographs upscaled, with sensor-like
noise) are decoded the way the pipeline does (``open_reduced``: JPEG DCT scaling, then resize to
``--max-side``), then scored one image at a time by each metric. A 1 MP JPEG goes through the
same path, to show that the proxy makes the cost independent of the original's resolution.
Wall and CPU seconds are both reported: on a shared machine CPU seconds say more.

Usage: ``python -m bench.quality [--images 2] [--repeats 2] [--threads 1] [--proxy crops]``;
prints one JSON object.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import skimage.data
from PIL import Image

from bench.common import Report

PHOTOS = ("chelsea", "coffee", "astronaut", "rocket")


def synthetic_photo_jpeg(name: str, size: tuple[int, int], path: Path, seed: int) -> None:
    """A scikit-image photograph upscaled to fill ``size``, plus mild noise, saved at q92."""
    photo = Image.fromarray(getattr(skimage.data, name)()).convert("RGB")
    width, height = size
    scale = max(width / photo.width, height / photo.height)
    photo = photo.resize((round(photo.width * scale), round(photo.height * scale)), Image.BICUBIC)
    left, top = (photo.width - width) // 2, (photo.height - height) // 2
    pixels = np.asarray(photo.crop((left, top, left + width, top + height)), dtype=np.float32)
    noise = np.random.default_rng(seed).normal(0, 3, pixels.shape).astype(np.float32)
    Image.fromarray(np.clip(pixels + noise, 0, 255).astype(np.uint8)).save(path, quality=92)


def timed(fn, repeats: int) -> tuple[float, float, object]:
    """Mean wall and CPU seconds of ``fn()`` over ``repeats`` calls, and its last result."""
    wall, cpu = time.perf_counter(), time.process_time()
    for _ in range(repeats):
        result = fn()
    return (time.perf_counter() - wall) / repeats, (time.process_time() - cpu) / repeats, result


def measure(paths: list[Path], scorers: dict, max_side: int, repeats: int) -> dict:
    from curation.quality import open_reduced

    decode_wall = decode_cpu = 0.0
    proxies = []
    for path in paths:
        wall, cpu, proxy = timed(lambda p=path: open_reduced(p, max_side), repeats)
        decode_wall, decode_cpu = decode_wall + wall, decode_cpu + cpu
        proxies.append(proxy)
    full_wall, _, _ = timed(lambda: Image.open(paths[0]).load(), 1)
    metrics = {}
    for name, scorer in scorers.items():
        scorer.score(proxies[:1])  # warm-up
        wall, cpu, _ = timed(lambda s=scorer: [s.score([p]) for p in proxies], repeats)
        metrics[name] = {"wall_s": wall / len(proxies), "cpu_s": cpu / len(proxies)}
    return {
        "original_size": list(Image.open(paths[0]).size),
        "proxy_size": list(proxies[0].size),
        "reduced_decode": {"wall_s": decode_wall / len(paths), "cpu_s": decode_cpu / len(paths)},
        "full_decode_wall_s": full_wall,
        "metrics": metrics,
        "total_wall_s": decode_wall / len(paths) + sum(m["wall_s"] for m in metrics.values()),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=2, help="12 MP JPEGs to generate")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads")
    parser.add_argument("--max-side", type=int, default=1024)
    parser.add_argument("--proxy", default="reduced", choices=["reduced", "crops"])
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda", "auto"])
    args = parser.parse_args()
    if args.images < 1 or args.repeats < 1:
        parser.error("--images and --repeats must be at least 1")
    report = Report("quality", args, packages=("pyiqa", "scikit-image", "scipy", "pydantic"))

    import torch

    from curation.quality import QualityConfig, QualityScorer

    torch.set_num_threads(args.threads)
    config = QualityConfig(device=args.device, max_side=args.max_side, proxy=args.proxy)
    scorers = {  # one scorer per metric, to time each alone
        name: QualityScorer(config.model_copy(update={"metrics": [name], "thresholds": {}}))
        for name in config.metrics
    }
    with tempfile.TemporaryDirectory() as tmp:
        big, small = [], []
        for i in range(args.images):
            name = PHOTOS[i % len(PHOTOS)]
            big.append(Path(tmp) / f"{name}_12mp.jpg")
            synthetic_photo_jpeg(name, (4000, 3000), big[-1], seed=i)
        small.append(Path(tmp) / "chelsea_1mp.jpg")
        synthetic_photo_jpeg("chelsea", (1155, 866), small[-1], seed=99)
        twelve = measure(big, scorers, args.max_side, args.repeats)
        one = measure(small, scorers, args.max_side, args.repeats)
    result = {
        "torch_threads": torch.get_num_threads(),
        "device": next(iter(scorers.values())).device,
        "proxy": config.proxy,
        "max_side": config.max_side,
        "images": args.images,
        "repeats": args.repeats,
        "seconds_per_image": {m: v["wall_s"] for m, v in twelve["metrics"].items()},
        "twelve_mp": twelve,
        "one_mp": one,
        "cost_ratio_12mp_vs_1mp": twelve["total_wall_s"] / one["total_wall_s"],
    }
    report.emit(result)


if __name__ == "__main__":
    main()
