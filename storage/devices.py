"""The one place a device request ("auto", "cpu", "cuda", "cuda:N") becomes a torch device.

Build scoring (``curation.quality``), training, evaluation and ``mird restore`` all take the
same request strings; resolving them here keeps one meaning of "auto" and one error for a GPU
asked for where none is. Torch is imported on call, so importing this module stays free.
:func:`usable_cores` is the CPU side: how many cores this process may run on.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch


def resolve_device(request: object = "auto", local_rank: int | None = None) -> torch.device:
    """``auto``: CUDA when present, else CPU. ``cuda`` under DDP (``local_rank`` given) is that
    rank's GPU. A CUDA request on a machine without CUDA, or a string torch does not know, is a
    one-line ``ValueError``."""
    import torch

    if isinstance(request, torch.device):
        return request
    text = str(request).strip().lower()
    if text == "auto":
        text = "cuda" if torch.cuda.is_available() else "cpu"
    if text == "cuda" and local_rank is not None:
        text = f"cuda:{local_rank}"
    try:
        device = torch.device(text)
    except (RuntimeError, ValueError):
        raise ValueError(
            f"unknown device {request!r}: expected auto, cpu, cuda or cuda:N"
        ) from None
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(f"device {request!r} requested but no CUDA device is available")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise ValueError(
                f"device {request!r} requested but only {torch.cuda.device_count()} CUDA "
                "device(s) are available"
            )
    return device


def usable_cores() -> int:
    """The cores this process may run on: its CPU affinity where the OS reports one (a
    container or ``taskset`` may allow fewer than the machine has), else the machine's."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - macOS, Windows
        return max(1, os.cpu_count() or 1)
