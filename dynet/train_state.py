"""Training checkpoints that never lose work.

A checkpoint is one torch file ``step-XXXXXXXXX.pt`` holding the model, EMA, optimizer, step,
RNG states, data position and the config, written atomically through the storage layer (temp +
rename locally, a single PUT on object stores), so a local path or any fsspec URI works.
Only the last ``keep_last`` are kept. Files are read back with ``weights_only=True``: they hold
tensors and plain containers only. ``stop_requested()`` turns SIGTERM/SIGINT into a flag the
loop checks after each step, so a preempted job saves before it exits.
"""

from __future__ import annotations

import contextlib
import io
import random
import re
import signal
import threading
import warnings
from collections.abc import Iterator
from typing import Any

import numpy as np
import torch

from storage.atomic import atomic_write_bytes
from storage.uri import join, open_fs

CHECKPOINT_RE = re.compile(r"^step-(\d{9})\.pt$")


class CheckpointReadError(ValueError):
    """A checkpoint file that cannot be read (message names it)."""


def checkpoint_name(step: int) -> str:
    return f"step-{step:09d}.pt"


class CheckpointManager:
    def __init__(self, directory: str, keep_last: int = 3) -> None:
        self.directory = directory.rstrip("/")
        self.keep_last = keep_last
        self.fs, self.path = open_fs(self.directory)

    def steps(self) -> list[int]:
        """Steps that have a finished checkpoint, oldest first."""
        if not self.fs.exists(self.path):
            return []
        names = [entry.rsplit("/", 1)[-1] for entry in self.fs.ls(self.path, detail=False)]
        return sorted(int(m.group(1)) for n in names if (m := CHECKPOINT_RE.match(n)))

    def uri(self, step: int) -> str:
        return join(self.directory, checkpoint_name(step))

    def save(self, step: int, state: dict[str, Any]) -> str:
        buffer = io.BytesIO()
        torch.save(state, buffer)
        uri = self.uri(step)
        atomic_write_bytes(uri, buffer.getvalue())
        for old in self.steps()[: -self.keep_last]:
            self.fs.rm(join(self.path, checkpoint_name(old)))
        return uri

    def load(self, step: int) -> dict[str, Any]:
        uri = self.uri(step)
        try:
            with self.fs.open(join(self.path, checkpoint_name(step)), "rb") as handle:
                data = handle.read()
            state = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
        except FileNotFoundError:
            raise CheckpointReadError(f"checkpoint {uri} does not exist") from None
        except Exception as exc:  # noqa: BLE001 - any unpickling failure is the file's fault
            first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            raise CheckpointReadError(f"cannot read checkpoint {uri}: {first}") from exc
        if not isinstance(state, dict) or "step" not in state:
            raise CheckpointReadError(f"checkpoint {uri} is not a training checkpoint")
        return state

    def load_latest(self) -> dict[str, Any] | None:
        """The newest readable checkpoint (an unreadable newer one is reported and skipped)."""
        for step in reversed(self.steps()):
            try:
                return self.load(step)
            except CheckpointReadError as exc:
                warnings.warn(f"{exc}; trying the previous checkpoint", stacklevel=2)
        return None


def load_checkpoint_file(uri: str) -> dict[str, Any]:
    """A checkpoint file by its full path/URI (e.g. to initialise fine-tuning)."""
    directory, _, name = uri.rstrip("/").rpartition("/")
    match = CHECKPOINT_RE.match(name)
    if match is None:  # any other name: read it directly
        fs, path = open_fs(uri)
        try:
            with fs.open(path, "rb") as handle:
                return torch.load(io.BytesIO(handle.read()), map_location="cpu", weights_only=True)
        except FileNotFoundError:
            raise CheckpointReadError(f"checkpoint {uri} does not exist") from None
        except Exception as exc:  # noqa: BLE001
            raise CheckpointReadError(f"cannot read checkpoint {uri}: {exc}") from exc
    return CheckpointManager(directory or ".").load(int(match.group(1)))


# --------------------------------------------------------------------------- RNG states


def rng_state() -> dict[str, Any]:
    """Every global RNG, as tensors and plain lists (safe for ``weights_only`` loads)."""
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    py_version, py_internal, py_gauss = random.getstate()
    state: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "numpy": [kind, torch.from_numpy(keys.astype(np.int64)), pos, has_gauss, cached],
        "python": [py_version, list(py_internal), py_gauss],
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    kind, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((kind, keys.numpy().astype(np.uint32), pos, has_gauss, cached))
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


# --------------------------------------------------------------------------- stop requests

_stop = {"signal": None}


def _on_signal(signum: int, _frame: Any) -> None:
    _stop["signal"] = signum


@contextlib.contextmanager
def stop_on_signals() -> Iterator[None]:
    """While inside, SIGTERM (preemption) and SIGINT ask the loop to checkpoint and stop.

    The previous handlers come back on exit. Off the main thread (e.g. inside a worker
    thread of an orchestrator) signals cannot be caught; nothing is installed then.
    """
    _stop["signal"] = None
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {s: signal.signal(s, _on_signal) for s in (signal.SIGTERM, signal.SIGINT)}
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


def stop_requested() -> int | None:
    """The signal number received, if any."""
    return _stop["signal"]
