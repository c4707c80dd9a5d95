"""Seconds per image of each offline IQA metric on 12 MP JPEGs, through the proxy: the fast
CPU path (``curation.iqa_fast``) against pyiqa, and how far apart their scores are.

Synthetic "photo-like" 12 MP JPEGs (4000x3000: scikit-image photographs upscaled, with sensor-like
noise) are decoded the way the pipeline does (``open_reduced``: JPEG DCT scaling, then resize to
``--max-side``), then scored one image at a time by each metric alone and by the three together
(one scorer, as a build runs them), once per backend: ``fast`` (the default on a CPU) and
``pyiqa`` (the reference). A 1 MP JPEG goes through the same path, to show that the proxy makes
the cost independent of the original's resolution. Wall and CPU seconds are both reported: on a
shared machine CPU seconds say more. ``max_abs_diff`` is the largest fast-vs-pyiqa difference
per metric over the proxies and, when ``../shared/reference/iqa/calibration`` is there, over
its ten images.

Usage: ``python -m bench.quality [--images 2] [--repeats 2] [--threads 1] [--proxy crops]``;
prints one JSON object.
"""

from __future__ import annotations

import argparse
import math
import tempfile
import time
from pathlib import Path

import numpy as np
import skimage.data
from PIL import Image

from bench.common import REPO, Report

PHOTOS = ("chelsea", "coffee", "astronaut", "rocket")
CALIBRATION = REPO.parent / "shared" / "reference" / "iqa" / "calibration"


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


def measure(paths: list[Path], backends: dict, max_side: int, repeats: int) -> dict:
    """Decode cost, then for each backend the seconds per image of each scorer and its scores."""
    from curation.quality import open_reduced

    decode_wall = decode_cpu = 0.0
    proxies = []
    for path in paths:
        wall, cpu, proxy = timed(lambda p=path: open_reduced(p, max_side), repeats)
        decode_wall, decode_cpu = decode_wall + wall, decode_cpu + cpu
        proxies.append(proxy)
    full_wall, _, _ = timed(lambda: Image.open(paths[0]).load(), 1)
    timings, scores = {}, {}
    for backend, scorers in backends.items():
        timings[backend] = {}
        for name, scorer in scorers.items():
            scorer.score(proxies[:1])  # warm-up
            wall, cpu, result = timed(lambda s=scorer: [s.score([p]) for p in proxies], repeats)
            timings[backend][name] = {"wall_s": wall / len(proxies), "cpu_s": cpu / len(proxies)}
            if name == "together":
                scores[backend] = [r[0] for r in result]
    decode = {"wall_s": decode_wall / len(paths), "cpu_s": decode_cpu / len(paths)}
    return {
        "original_size": list(Image.open(paths[0]).size),
        "proxy_size": list(proxies[0].size),
        "reduced_decode": decode,
        "full_decode_wall_s": full_wall,
        "metrics": {m: v for m, v in timings["fast"].items() if m != "together"},
        "backends": timings,
        "total_wall_s": decode["wall_s"] + timings["fast"]["together"]["wall_s"],
        "total_cpu_s": decode["cpu_s"] + timings["fast"]["together"]["cpu_s"],
        "scores": scores,
    }


def max_abs_diff(scores: list[tuple[dict, dict]]) -> dict[str, float]:
    """Largest |fast - pyiqa| per metric over (fast, pyiqa) score pairs (NaN pairs agree)."""
    worst: dict[str, float] = {}
    for fast, reference in scores:
        for metric, value in reference.items():
            both_nan = math.isnan(value) and math.isnan(fast[metric])
            diff = 0.0 if both_nan else abs(fast[metric] - value)
            worst[metric] = max(worst.get(metric, 0.0), diff)
    return worst


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
    packages = ("pyiqa", "scikit-image", "scipy", "opencv-python", "pydantic")
    report = Report("quality", args, packages=packages)

    import cv2
    import torch

    from curation.quality import QualityConfig, QualityScorer

    torch.set_num_threads(args.threads)
    cv2.setNumThreads(args.threads)
    config = QualityConfig(device=args.device, max_side=args.max_side, proxy=args.proxy)
    backends = {}
    for backend in ("fast", "pyiqa"):
        base = config.model_copy(update={"backend": backend, "thresholds": {}})
        backends[backend] = {  # one scorer per metric, to time each alone, and all three
            name: QualityScorer(base.model_copy(update={"metrics": [name]}))
            for name in config.metrics
        }
        backends[backend]["together"] = QualityScorer(base)
    with tempfile.TemporaryDirectory() as tmp:
        big, small = [], []
        for i in range(args.images):
            name = PHOTOS[i % len(PHOTOS)]
            big.append(Path(tmp) / f"{name}_12mp.jpg")
            synthetic_photo_jpeg(name, (4000, 3000), big[-1], seed=i)
        small.append(Path(tmp) / "chelsea_1mp.jpg")
        synthetic_photo_jpeg("chelsea", (1155, 866), small[-1], seed=99)
        twelve = measure(big, backends, args.max_side, args.repeats)
        one = measure(small, backends, args.max_side, args.repeats)
    pairs = [
        pair
        for run in (twelve, one)
        for pair in zip(run["scores"]["fast"], run["scores"]["pyiqa"], strict=True)
    ]
    calibration = sorted(CALIBRATION.glob("*.bmp")) if CALIBRATION.is_dir() else []
    if calibration:
        images = [Image.open(path).convert("RGB") for path in calibration]
        together = {b: scorers["together"] for b, scorers in backends.items()}
        calibration_pairs = [
            (together["fast"].score([image])[0], together["pyiqa"].score([image])[0])
            for image in images
        ]
    fast_cpu = twelve["backends"]["fast"]["together"]["cpu_s"]
    pyiqa_cpu = twelve["backends"]["pyiqa"]["together"]["cpu_s"]
    result = {
        "torch_threads": torch.get_num_threads(),
        "device": backends["pyiqa"]["together"].device,
        "proxy": config.proxy,
        "max_side": config.max_side,
        "images": args.images,
        "repeats": args.repeats,
        "seconds_per_image": {m: v["wall_s"] for m, v in twelve["metrics"].items()},
        "cpu_s_per_image": {
            backend: {m: v["cpu_s"] for m, v in timings.items()}
            for backend, timings in twelve["backends"].items()
        },
        "speedup_cpu_together": pyiqa_cpu / fast_cpu if fast_cpu > 0 else None,
        "max_abs_diff": {
            "proxies": max_abs_diff(pairs),
            "calibration": max_abs_diff(calibration_pairs) if calibration else None,
        },
        "twelve_mp": twelve,
        "one_mp": one,
        "cost_ratio_12mp_vs_1mp": twelve["total_wall_s"] / one["total_wall_s"],
    }
    report.emit(result)


if __name__ == "__main__":
    main()
