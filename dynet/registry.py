"""``create_model(arch, **kw)``: build a network by name (configuration as data, no if/else)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from torch import nn

from dynet.dynet import DyNet, DyNetConfig
from dynet.promptir import PromptIR, PromptIRConfig


class UnknownArchitectureError(ValueError):
    """An architecture name the registry does not know."""


_REGISTRY: dict[str, Callable[..., nn.Module]] = {}


def register_model(name: str, factory: Callable[..., nn.Module]) -> None:
    _REGISTRY[name.lower()] = factory


def available_models() -> list[str]:
    return sorted(_REGISTRY)


def create_model(arch: str, **kw: Any) -> nn.Module:
    """Build ``arch`` ("dynet", "dynet-l", "dynet-s", "promptir"); ``kw`` override its config."""
    try:
        factory = _REGISTRY[arch.lower()]
    except KeyError:
        raise UnknownArchitectureError(
            f"unknown architecture {arch!r}; choose one of {', '.join(available_models())}"
        ) from None
    return factory(**kw)


def architecture_of(model: nn.Module) -> str:
    """The registry name that rebuilds ``model`` (with ``model.config``)."""
    if isinstance(model, DyNet):
        return "dynet"
    if isinstance(model, PromptIR):
        return "promptir"
    raise UnknownArchitectureError(f"{type(model).__name__} is not a registered architecture")


register_model("dynet", lambda **kw: DyNet(DyNetConfig(**kw)))
register_model("dynet-l", lambda **kw: DyNet(DyNetConfig(**{"default_variant": "L", **kw})))
register_model("dynet-s", lambda **kw: DyNet(DyNetConfig(**{"default_variant": "S", **kw})))
register_model("promptir", lambda **kw: PromptIR(PromptIRConfig(**kw)))


def to_channels_last(model: nn.Module) -> nn.Module:
    """Give the 4-D weights the channels_last layout (fast convolutions on CUDA).

    ``Module.to(memory_format=...)`` also tries the 5-D prompt parameters, which have no such
    layout, and fails; only the 4-D tensors are converted here.
    """
    import torch

    for param in model.parameters():
        if param.dim() == 4:
            param.data = param.data.contiguous(memory_format=torch.channels_last)
    return model
