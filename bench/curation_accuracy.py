"""Benchmark: does the curation gate judge real photographs and real graphics right?

Inputs, all real images, each with a label (``photo``: a camera photograph a restoration
dataset wants; ``graphic``: wallpaper art, renders, illustrations, screenshots):

- ``--labels`` (default ``../shared/reference/realphotos/dev_labels.tsv``) and
  ``bench/accuracy_extra.tsv``: rows ``package, path, label`` naming files inside Debian
  packages. Each package is fetched once with ``apt-get download`` into ``--cache`` and
  unpacked with ``dpkg-deb -x`` (``apt-get update`` is run once if a download fails). The
  packages ``mate-backgrounds`` and ``plasma-workspace-wallpapers`` are refused: they are kept
  aside to check the gate independently.
- scikit-image's colour photographs at their native size, and its two colour graphics.

The real gate runs on them from a folder source (``curation.sources`` lists the folder, the
bytes are read as a build reads them; ``curation.gate.Gate`` decides probe, reduced decode,
every content gate and every IQA threshold with the build's default configuration). Only
``curation.probe.min_side`` is lowered (``--min-side``, default 256) so that scikit-image's
512 px photographs are judged on their content; the JSON also counts how many inputs the
default 1024 px rule would have refused.

Prints one JSON object: ``photo_keep_rate``, ``graphic_reject_rate``, the reasons that
rejected photographs, the graphics that were kept, hard-kind violations (photographs rejected
as ``blurry``, ``too_dark`` or ``flat``), and one row per image (label, decision, reason,
detail, measurements, IQA scores). ``--offline`` uses scikit-image's images only (no apt).

    .venv/bin/python -m bench.curation_accuracy            # ~2 min on 2 cores, IQA included
    .venv/bin/python -m bench.curation_accuracy --no-iqa   # content gates only, seconds
"""

from __future__ import annotations

import argparse
import csv
import io
import os
import shutil
import subprocess
import sys
import tempfile
from collections import Counter
from pathlib import Path
from typing import Any

from bench.common import REPO, Report

DEFAULT_LABELS = REPO.parent / "shared" / "reference" / "realphotos" / "dev_labels.tsv"
EXTRA_LABELS = REPO / "bench" / "accuracy_extra.tsv"
RESERVED_PACKAGES = frozenset({"mate-backgrounds", "plasma-workspace-wallpapers"})
HARD_KIND_REASONS = frozenset({"blurry", "too_dark", "flat"})
SKIMAGE_PHOTOS = ("astronaut", "coffee", "chelsea", "rocket", "motorcycle")
SKIMAGE_GRAPHICS = ("colorwheel", "logo")


class InputError(Exception):
    """A problem with the benchmark's inputs: one line, exit status 2."""


def read_labels(path: Path) -> list[dict[str, str]]:
    if not path.is_file():
        raise InputError(f"{path}: label file not found (pass --labels, or --offline)")
    with path.open(encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle, delimiter="\t"))
    for row in rows:
        if set(row) != {"package", "path", "label"} or row["label"] not in ("photo", "graphic"):
            raise InputError(f"{path}: expected columns package, path, label (photo|graphic)")
        if row["package"] in RESERVED_PACKAGES:
            raise InputError(f"{path}: package {row['package']} is reserved for independent checks")
    return rows


def _apt(args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(args, cwd=cwd, capture_output=True, text=True, timeout=600)


def unpack_packages(packages: set[str], cache: Path) -> dict[str, Path]:
    """Each package unpacked under ``cache/NAME`` (fetched once); missing tools: InputError."""
    if not shutil.which("apt-get") or not shutil.which("dpkg-deb"):
        raise InputError(
            "apt-get and dpkg-deb are needed to fetch the labelled packages (or use --offline)"
        )
    cache.mkdir(parents=True, exist_ok=True)
    roots: dict[str, Path] = {}
    updated = False
    for package in sorted(packages):
        root = cache / package
        if not (root / ".unpacked").exists():
            debs = list(cache.glob(f"{package}_*.deb"))
            if not debs:
                proc = _apt(["apt-get", "download", package], cache)
                if proc.returncode != 0 and not updated:
                    _apt(["apt-get", "update"], cache)
                    updated = True
                    proc = _apt(["apt-get", "download", package], cache)
                if proc.returncode != 0:
                    raise InputError(
                        f"apt-get download {package} failed: {proc.stderr.strip()[:200]}"
                    )
                debs = list(cache.glob(f"{package}_*.deb"))
            staging = Path(tempfile.mkdtemp(dir=cache, prefix=f".{package}-"))
            proc = _apt(["dpkg-deb", "-x", str(debs[0]), str(staging)], cache)
            if proc.returncode != 0:
                raise InputError(f"dpkg-deb -x {debs[0].name} failed: {proc.stderr.strip()[:200]}")
            (staging / ".unpacked").touch()
            shutil.rmtree(root, ignore_errors=True)
            staging.rename(root)  # whole or not at all: an interrupted unpack is redone
        roots[package] = root
    return roots


def skimage_images() -> list[tuple[str, str, bytes]]:
    """(name, label, PNG bytes) of scikit-image's colour photographs and graphics."""
    import skimage.data
    from PIL import Image

    arrays = {name: getattr(skimage.data, name)() for name in ("astronaut", "coffee", "chelsea")}
    arrays["rocket"] = skimage.data.rocket()
    arrays["motorcycle"] = skimage.data.stereo_motorcycle()[0]
    arrays["colorwheel"] = skimage.data.colorwheel()
    arrays["logo"] = skimage.data.logo()
    out = []
    for name, array in arrays.items():
        buffer = io.BytesIO()
        Image.fromarray(array).save(buffer, format="PNG")
        label = "photo" if name in SKIMAGE_PHOTOS else "graphic"
        out.append((name, label, buffer.getvalue()))
    return out


def collect_inputs(args: argparse.Namespace, folder: Path) -> dict[str, dict[str, str]]:
    """Place every input in ``folder`` (symlinks or small files); file name -> its label row."""
    labelled: dict[str, dict[str, str]] = {}
    if not args.offline:
        rows = [dict(row, collection="dev") for row in read_labels(Path(args.labels))]
        # the extra rows are grouped by package: each is a collection of its own kind
        rows += [dict(row, collection=row["package"]) for row in read_labels(EXTRA_LABELS)]
        roots = unpack_packages({row["package"] for row in rows}, Path(args.cache))
        for index, row in enumerate(rows):
            source = roots[row["package"]] / row["path"]
            if not source.is_file():
                raise InputError(f"{row['package']}: {row['path']} is not in the package")
            name = f"{index:03d}-{source.name}"
            (folder / name).symlink_to(source)
            labelled[name] = {**row, "name": source.name}
    for name, label, data in skimage_images():
        file_name = f"skimage-{name}.png"
        (folder / file_name).write_bytes(data)
        labelled[file_name] = {"package": "scikit-image", "path": name, "label": label,
                               "collection": "skimage", "name": name}  # fmt: skip
    return labelled


def judge_folder(folder: Path, labelled: dict[str, dict[str, str]], args) -> list[dict[str, Any]]:
    from curation.config import BuildConfig, ProbeConfig, SourceConfig
    from curation.fetch import Fetcher
    from curation.gate import Gate
    from curation.sources import iter_all_partitions

    config = BuildConfig.model_validate(
        {"root": str(folder), "curation": {"probe": {"min_side": args.min_side}}}
    )
    gate = Gate(config.curation, None if args.no_iqa else config.quality)
    sources = [SourceConfig(uri=str(folder), name="accuracy")]
    rows = []
    candidates = [c for p in iter_all_partitions(sources, 10_000) for c in p.candidates]
    default_min_side = ProbeConfig().min_side
    # the folder's candidates are read by the build's Fetcher, as a build reads them
    with Fetcher(config.curation.fetch) as fetcher:
        for done, candidate in enumerate(candidates, start=1):
            report = gate.judge(fetcher.fetch(candidate).data)
            info = labelled[Path(candidate.url).name]
            header = report.header
            plain = report.to_dict()
            rows.append(
                {
                    "name": info["name"],
                    "collection": info["collection"],
                    "package": info["package"],
                    "label": info["label"],
                    "decision": "kept" if report.kept else "rejected",
                    "reason": report.reason,
                    "stage": report.stage,
                    "detail": report.detail,
                    "size": f"{header.width}x{header.height}" if header else None,
                    "under_default_min_side": bool(
                        header and min(header.width, header.height) < default_min_side
                    ),
                    "measurements": plain["measurements"],
                    "scores": plain["scores"],
                }
            )
            if done % 10 == 0 or done == len(candidates):
                print(f"judged {done}/{len(candidates)}", file=sys.stderr, flush=True)
    return sorted(rows, key=lambda row: (row["label"], row["collection"], row["name"]))


def summarise(rows: list[dict[str, Any]]) -> dict[str, Any]:
    photos = [row for row in rows if row["label"] == "photo"]
    graphics = [row for row in rows if row["label"] == "graphic"]
    kept_photos = [row for row in photos if row["decision"] == "kept"]
    rejected_graphics = [row for row in graphics if row["decision"] == "rejected"]
    by_collection = {}
    for collection in sorted({row["collection"] for row in rows}):
        subset = [row for row in rows if row["collection"] == collection]
        p = [row for row in subset if row["label"] == "photo"]
        g = [row for row in subset if row["label"] == "graphic"]
        by_collection[collection] = {
            "photos": len(p),
            "photos_kept": sum(row["decision"] == "kept" for row in p),
            "graphics": len(g),
            "graphics_rejected": sum(row["decision"] == "rejected" for row in g),
        }

    def reasons(rows: list[dict[str, Any]]) -> dict[str, int]:
        return dict(Counter(row["reason"] for row in rows if row["reason"]).most_common())

    def rate(part: list, whole: list) -> float | None:
        return round(len(part) / len(whole), 4) if whole else None

    return {
        "photos": len(photos),
        "graphics": len(graphics),
        "photo_keep_rate": rate(kept_photos, photos),
        "graphic_reject_rate": rate(rejected_graphics, graphics),
        "photo_reject_reasons": reasons(photos),
        "graphic_reject_reasons": reasons(graphics),
        "photos_rejected": [f"{r['name']}: {r['reason']}" for r in photos if r["reason"]],
        "graphics_kept": [r["name"] for r in graphics if r["decision"] == "kept"],
        "hard_kind_violations": [r["name"] for r in photos if r["reason"] in HARD_KIND_REASONS],
        "inputs_under_default_min_side": sum(r["under_default_min_side"] for r in rows),
        "by_collection": by_collection,
    }  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.curation_accuracy", description=__doc__.split("\n")[0]
    )
    parser.add_argument(
        "--labels", default=str(DEFAULT_LABELS), help="labelled TSV (package, path, label)"
    )
    parser.add_argument(
        "--cache",
        default=str(Path.home() / ".cache" / "million-ird" / "realphotos"),
        help="where packages are downloaded and unpacked (kept between runs)",
    )
    parser.add_argument("--min-side", type=int, default=256, help="probe.min_side for the run")
    parser.add_argument("--no-iqa", action="store_true", help="content gates only (no IQA scoring)")
    parser.add_argument("--offline", action="store_true", help="scikit-image's images only")
    parser.add_argument(
        "--rows",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="include one row per image in the JSON",
    )
    args = parser.parse_args(argv)  # fmt: skip
    if args.min_side < 1:
        parser.error("--min-side must be >= 1")
    report = Report("curation_accuracy", args, packages=("scikit-image", "pyiqa"))
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    try:
        with tempfile.TemporaryDirectory(prefix="mird-accuracy-") as tmp:
            labelled = collect_inputs(args, Path(tmp))
            rows = judge_folder(Path(tmp), labelled, args)
    except InputError as exc:
        print(f"bench.curation_accuracy: error: {exc}", file=sys.stderr)
        return 2
    figures = summarise(rows)
    if args.rows:
        figures["rows"] = rows
    report.emit(figures)
    return 0


if __name__ == "__main__":
    sys.exit(main())
