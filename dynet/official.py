"""Load the paper authors' checkpoints (DyNet, PromptIR) into this project's networks.

The official code names modules after its history (``noise_level3``, ``reduce_chan_level2``,
``down1_2.body.0``...); this project's names say what a module is. The tables below map one
onto the other, both ways. A released checkpoint is a PyTorch Lightning file whose
``state_dict`` holds the network's keys behind ``net.``; a plain state dict works as well.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

import torch
from torch import nn

from dynet.registry import architecture_of

# Remainder maps: how the tail of a key changes inside one kind of module.
_BLOCK = {  # matched against the end of the module path, e.g. "3.norm1.body"
    "norm1.body": "norm1",
    "norm2.body": "norm2",
    "attn.qkv_dwconv": "attn.qkv_dw",
    "attn.project_out": "attn.proj",
    "ffn.project_in": "ffn.proj_in",
    "ffn.dwconv": "ffn.dw",
    "ffn.project_out": "ffn.proj_out",
}
_PROMPT = {  # matched against the whole remainder
    "prompt_param": "prompts",
    "linear_layer.weight": "select.weight",
    "linear_layer.bias": "select.bias",
    "conv3x3.weight": "conv.weight",
}
_PLAIN: dict[str, str] = {}

_COMMON = [
    ("patch_embed.proj", "embed", _PLAIN),
    ("encoder_level1", "enc1", _BLOCK),
    ("encoder_level2", "enc2", _BLOCK),
    ("encoder_level3", "enc3", _BLOCK),
    ("latent", "latent", _BLOCK),
    ("decoder_level3", "dec3", _BLOCK),
    ("decoder_level2", "dec2", _BLOCK),
    ("decoder_level1", "dec1", _BLOCK),
    ("refinement", "refinement", _BLOCK),
    ("down1_2.body.0", "down1.conv", _PLAIN),
    ("down2_3.body.0", "down2.conv", _PLAIN),
    ("down3_4.body.0", "down3.conv", _PLAIN),
    ("up4_3.body.0", "up3.conv", _PLAIN),
    ("up3_2.body.0", "up2.conv", _PLAIN),
    ("up2_1.body.0", "up1.conv", _PLAIN),
    ("reduce_chan_level3", "fuse3", _PLAIN),
    ("reduce_chan_level2", "fuse2", _PLAIN),
    ("output", "head", _PLAIN),
]


def _prompt_site(number: int, stage: str) -> list[tuple[str, str, dict[str, str]]]:
    """The official prompt ``number`` (generator, interaction block, 1x1 reduce) -> ``stage``."""
    return [
        (f"prompt{number}", f"{stage}.gen", _PROMPT),
        (f"noise_level{number}", f"{stage}.block", _BLOCK),
        (f"reduce_noise_level{number}", f"{stage}.reduce", _PLAIN),
    ]


NAME_TABLES: dict[str, list[tuple[str, str, dict[str, str]]]] = {
    "dynet": _COMMON
    + _prompt_site(3, "prompt_latent")
    + _prompt_site(2, "prompt_skip3")
    + _prompt_site(1, "prompt_skip2"),
    "promptir": _COMMON
    + _prompt_site(3, "prompt_latent")
    + _prompt_site(2, "prompt_dec3")
    + _prompt_site(1, "prompt_dec2"),
}

# Tensors the official networks carry but never use in forward (default widths).
UNUSED_OFFICIAL: dict[str, dict[str, tuple[int, ...]]] = {
    "dynet": {
        "reduce_noise_channel_1.weight": (48, 112, 1, 1),
        "reduce_noise_channel_2.weight": (96, 224, 1, 1),
        "reduce_noise_channel_3.weight": (192, 448, 1, 1),
    },
    "promptir": {
        "chnl_reduce1.weight": (64, 64, 1, 1),
        "chnl_reduce2.weight": (128, 128, 1, 1),
        "chnl_reduce3.weight": (256, 320, 1, 1),
        "reduce_noise_channel_1.weight": (48, 112, 1, 1),
        "reduce_noise_channel_2.weight": (96, 224, 1, 1),
        "reduce_noise_channel_3.weight": (192, 448, 1, 1),
    },
}
_UNUSED_PREFIXES = ("reduce_noise_channel_", "chnl_reduce")


class OfficialWeightsError(ValueError):
    """An official checkpoint that does not fit the network (message names the first bad key)."""


class WeightsNotFoundError(FileNotFoundError):
    """A weights file that does not exist."""


def is_unused_official(arch: str, key: str) -> bool:
    """True for the official tensors that forward never touches (ignored when loading)."""
    prefixes = _UNUSED_PREFIXES if arch == "promptir" else _UNUSED_PREFIXES[:1]
    return key.startswith(prefixes)


def _map_remainder(rem: str, table: dict[str, str]) -> str:
    if rem in table:
        return table[rem]
    path, _, param = rem.rpartition(".")
    for old, new in table.items():
        if path == old or path.endswith("." + old):
            path = path[: len(path) - len(old)] + new
            break
    return f"{path}.{param}" if path else param


def _translate(key: str, table: list[tuple[str, str, dict[str, str]]], reverse: bool) -> str | None:
    for official, project, rem_map in table:
        src, dst = (project, official) if reverse else (official, project)
        if key.startswith(src + "."):
            rem_map = {v: k for k, v in rem_map.items()} if reverse else rem_map
            return f"{dst}.{_map_remainder(key[len(src) + 1 :], rem_map)}"
    return None


def official_to_project_key(arch: str, key: str) -> str | None:
    """This project's name for an official key, or None when the key is not recognised."""
    return _translate(key, NAME_TABLES[arch], reverse=False)


def project_to_official_key(arch: str, key: str) -> str | None:
    return _translate(key, NAME_TABLES[arch], reverse=True)


def to_official_state_dict(model: nn.Module) -> dict[str, torch.Tensor]:
    """The model's weights under the official names (without the unused official tensors)."""
    arch = architecture_of(model)
    out = {}
    for key, value in model.state_dict().items():
        official = project_to_official_key(arch, key)
        if official is None:
            raise OfficialWeightsError(f"no official name for parameter {key!r}")
        out[official] = value
    return out


def read_official_state_dict(source: str | os.PathLike | Mapping) -> dict[str, torch.Tensor]:
    """Read a Lightning checkpoint, a plain state-dict file or a dict; strip ``net.``."""
    where = "the given state dict"
    if isinstance(source, str | os.PathLike):
        path = Path(source)
        where = str(path)
        if not path.is_file():
            raise WeightsNotFoundError(
                f"weights file {path} does not exist (no weights are downloaded automatically; "
                "pass the path of an official DyNet/PromptIR checkpoint)"
            )
        try:
            obj = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as exc:  # noqa: BLE001 - any unpickling failure is the file's fault
            first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            raise OfficialWeightsError(f"cannot read checkpoint {path}: {first}") from exc
    else:
        obj = source
    if isinstance(obj, Mapping) and isinstance(obj.get("state_dict"), Mapping):
        obj = obj["state_dict"]
    if not isinstance(obj, Mapping) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise OfficialWeightsError(f"{where} is not a state dict of tensors")
    state = dict(obj)
    for prefix in ("net.", "module."):
        if any(k.startswith(prefix) for k in state):
            state = {k[len(prefix) :]: v for k, v in state.items() if k.startswith(prefix)}
    return state


def load_official_weights(model: nn.Module, source: str | os.PathLike | Mapping) -> nn.Module:
    """Load official weights into ``model`` (DyNet or PromptIR), strictly, by name.

    Unused official tensors (``reduce_noise_channel_*``, and PromptIR's ``chnl_reduce*``) are
    ignored; any other unknown, missing or mis-shaped key raises OfficialWeightsError naming
    the first such key. Returns the model.
    """
    arch = architecture_of(model)
    where = str(source) if isinstance(source, str | os.PathLike) else "state dict"
    official = read_official_state_dict(source)
    expected = model.state_dict()
    mapped: dict[str, torch.Tensor] = {}
    for key, value in official.items():
        if is_unused_official(arch, key):
            continue
        name = official_to_project_key(arch, key)
        if name is None or name not in expected:
            raise OfficialWeightsError(f"{where}: unexpected key {key!r} for a {arch} network")
        if tuple(value.shape) != tuple(expected[name].shape):
            raise OfficialWeightsError(
                f"{where}: key {key!r} has shape {tuple(value.shape)}, "
                f"the network expects {tuple(expected[name].shape)}"
            )
        mapped[name] = value
    for name in expected:
        if name not in mapped:
            official_name = project_to_official_key(arch, name) or name
            raise OfficialWeightsError(f"{where}: missing key {official_name!r}")
    model.load_state_dict(mapped, strict=True)
    return model
