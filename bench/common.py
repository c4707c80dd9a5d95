"""What every benchmark's JSON object carries besides its figures: the benchmark's name and
arguments, the machine it ran on, the versions of the libraries it relied on, and its own wall
time. Only the standard library is imported at module level, so that a benchmark's child
processes (timed from their start by ``bench.fetch``) pay nothing for it.

    report = Report("dedupe", args, packages=("dask",))
    ...                                   # measure
    report.emit({"seconds": 1.5, ...})    # prints the one JSON object
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]

# Reported for every benchmark (when installed), in this order; a benchmark adds its own.
BASE_PACKAGES = ("numpy", "torch", "pillow", "pyarrow", "prefect")
# Distribution name -> import name, where they differ.
_MODULE_NAMES = {"pillow": "PIL", "scikit-image": "skimage", "million-ird": "curation"}


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _memory_total_gb() -> float | None:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return round(int(line.split()[1]) / 2**20, 1)
    except OSError:
        pass
    return None


def _gpu_name() -> str | None:
    """The CUDA device's name if torch is already loaded (no import just for this), else the
    first GPU that ``nvidia-smi`` lists, else None."""
    torch = sys.modules.get("torch")
    if torch is not None:
        return torch.cuda.get_device_name() if torch.cuda.is_available() else None
    if shutil.which("nvidia-smi"):
        try:
            out = subprocess.run(
                ["nvidia-smi", "--query-gpu=name", "--format=csv,noheader"],
                capture_output=True,
                text=True,
                timeout=20,
            ).stdout.strip()
        except (OSError, subprocess.TimeoutExpired):
            return None
        return out.splitlines()[0] if out else None
    return None


def _load() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def machine(load_at_start: list[float] | None = None) -> dict[str, Any]:
    """The machine, without its hostname: CPU, cores, memory, GPU, platform and load average."""
    from storage.devices import usable_cores

    return {
        "cpu_model": _cpu_model(),
        "logical_cores": os.cpu_count(),
        "usable_cores": usable_cores(),
        "memory_total_gb": _memory_total_gb(),
        "gpu": _gpu_name(),
        "platform": platform.platform(),
        "omp_num_threads": os.environ.get("OMP_NUM_THREADS"),
        "load_average_start": load_at_start,
        "load_average_end": _load(),
    }


def _version(distribution: str) -> str | None:
    module = sys.modules.get(_MODULE_NAMES.get(distribution, distribution))
    version = getattr(module, "__version__", None)  # torch's carries its CUDA build (+cu...)
    if isinstance(version, str):
        return version
    import importlib.metadata  # here: bench.fetch's timed children import this module

    try:
        return importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        return None


def _git_commit() -> str | None:
    if not (REPO / ".git").exists() or not shutil.which("git"):
        return None
    try:
        out = subprocess.run(
            ["git", "-C", str(REPO), "rev-parse", "--short=12", "HEAD"],
            capture_output=True,
            text=True,
            timeout=20,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.stdout.strip() or None


def versions(packages: Iterable[str] = ()) -> dict[str, str | None]:
    """Python, the project's commit and each package's version (None: not installed)."""
    out: dict[str, str | None] = {
        "python": platform.python_version(),
        "million_ird_commit": _git_commit(),
    }
    for name in dict.fromkeys([*BASE_PACKAGES, *packages]):
        out[name] = _version(name)
    return out


def _plain(args: argparse.Namespace | dict[str, Any] | None) -> dict[str, Any]:
    """The arguments as JSON values: a path (``type=Path`` options) as its string."""
    plain = dict(vars(args) if isinstance(args, argparse.Namespace) else (args or {}))
    return {k: str(v) if isinstance(v, os.PathLike) else v for k, v in plain.items()}


class Report:
    """Started when a benchmark starts (load average, clock); :meth:`emit` prints its figures
    with the name, arguments, machine and versions as one JSON object on stdout."""

    def __init__(
        self,
        name: str,
        args: argparse.Namespace | dict[str, Any] | None = None,
        packages: Iterable[str] = (),
    ) -> None:
        self.name = name
        self.args = _plain(args)
        self.packages = tuple(packages)
        self.load_at_start = _load()
        self.started = time.perf_counter()

    def result(self, figures: dict[str, Any]) -> dict[str, Any]:
        return {
            "benchmark": self.name,
            "args": self.args,
            **{key: value for key, value in figures.items() if key != "benchmark"},
            "benchmark_wall_s": round(time.perf_counter() - self.started, 2),
            "machine": machine(self.load_at_start),
            "versions": versions(self.packages),
        }

    def emit(self, figures: dict[str, Any], indent: int | None = None) -> None:
        print(json.dumps(self.result(figures), indent=indent), flush=True)
