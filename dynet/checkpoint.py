"""Project checkpoints.

Weights go in one ``.safetensors`` file that serves every DyNet variant (the variants share
weights); its metadata records the architecture and configuration, so the file alone rebuilds
the network. Training state (optimizer, scheduler, step...) lives in a separate torch file,
read back with ``weights_only=True``. Both are written atomically (temp file, then rename;
see :mod:`storage.atomic`).
"""

from __future__ import annotations

import io
import json
import os
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load as safetensors_load
from safetensors.torch import save as safetensors_save
from torch import nn

from dynet.official import WeightsNotFoundError, load_official_weights
from dynet.registry import architecture, architecture_of, create_model
from storage.atomic import atomic_write_bytes

WEIGHTS_FORMAT = "mird-weights"
WEIGHTS_FORMAT_VERSION = "1"


class CheckpointError(ValueError):
    """A weights or training-state file that cannot be used (message names the file)."""


def _require_file(path: Path, what: str) -> None:
    if not path.is_file():
        raise WeightsNotFoundError(
            f"{what} file {path} does not exist (nothing is downloaded automatically; "
            "train a model or pass an official DyNet/PromptIR checkpoint)"
        )


def save_weights(
    model: nn.Module, path: str | os.PathLike, metadata: dict[str, str] | None = None
) -> Path:
    """Write the model's weights and configuration to ``path`` (a .safetensors file)."""
    path = Path(path)
    meta = {
        "format": WEIGHTS_FORMAT,
        "format_version": WEIGHTS_FORMAT_VERSION,
        "arch": architecture_of(model),
        "config": json.dumps(model.config.to_dict()),
        **(metadata or {}),
    }
    tensors = {k: v.detach().to("cpu").contiguous() for k, v in model.state_dict().items()}
    atomic_write_bytes(str(path), safetensors_save(tensors, metadata=meta))
    return path


def read_weights(path: str | os.PathLike) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """The tensors and metadata of a project weights file."""
    path = Path(path)
    _require_file(path, "weights")
    data = path.read_bytes()
    try:
        tensors = safetensors_load(data)
        header_len = int.from_bytes(data[:8], "little")
        header = json.loads(data[8 : 8 + header_len])
    except (SafetensorError, ValueError, OSError) as exc:
        raise CheckpointError(f"{path} is not a readable safetensors weights file") from exc
    meta = header.get("__metadata__") or {}
    if meta.get("format") != WEIGHTS_FORMAT:
        raise CheckpointError(f"{path} is a safetensors file but not project weights (no arch)")
    return tensors, meta


def load_weights(
    path: str | os.PathLike, model: nn.Module | None = None, **overrides: Any
) -> nn.Module:
    """Load project weights into ``model``, or build the recorded architecture when None.

    ``overrides`` change non-structural settings of the rebuilt model (e.g. default_variant).
    """
    tensors, meta = read_weights(path)
    if model is None:
        config = json.loads(meta["config"])
        model = create_model(meta["arch"], **{**config, **overrides})
    elif architecture_of(model) != meta["arch"]:
        raise CheckpointError(f"{path} holds {meta['arch']} weights, not {architecture_of(model)}")
    try:
        model.load_state_dict(tensors, strict=True)
    except RuntimeError as exc:
        first = str(exc).splitlines()[0]
        raise CheckpointError(f"{path} does not fit the network: {first}") from exc
    return model


def load_model(path: str | os.PathLike, arch: str | None = None, **overrides: Any) -> nn.Module:
    """A network from any weights file.

    ``.safetensors`` files are project weights (they name their architecture); anything else
    is read as an official checkpoint for ``arch`` (default "dynet").
    """
    path = Path(path)
    _require_file(path, "weights")
    if path.suffix == ".safetensors":
        model = load_weights(path, **overrides)
        if arch is not None and architecture_of(model) != architecture(arch).canonical:
            raise CheckpointError(f"{path} holds {architecture_of(model)} weights, not {arch}")
        return model
    return load_official_weights(create_model(arch or "dynet", **overrides), path)


def save_training_state(path: str | os.PathLike, state: dict[str, Any]) -> Path:
    """Write the training state (optimizer/scheduler state dicts, step, RNG...) atomically.

    Only tensors and plain Python containers/numbers/strings: it is read back with
    ``weights_only=True``.
    """
    path = Path(path)
    buffer = io.BytesIO()
    torch.save(state, buffer)
    atomic_write_bytes(str(path), buffer.getvalue())
    return path


def load_training_state(path: str | os.PathLike) -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"training state file {path} does not exist")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any unpickling failure is the file's fault
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise CheckpointError(f"cannot read training state {path}: {first}") from exc
    if not isinstance(state, dict):
        raise CheckpointError(f"training state {path} is not a dict")
    return state
