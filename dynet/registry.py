"""The architectures by name: ``@register`` adds a factory, ``create_model(arch, **kw)`` builds.

Configuration is data: a weight file or a training config names its architecture, and nothing
else in the project chooses a network class with ``if``/``isinstance`` chains. The first name
registered for a network class is its canonical name, the one :func:`architecture_of` returns
and weight files record; later names (``dynet-l``) are presets of the same network.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from torch import nn

from dynet.dynet import DyNet, DyNetConfig
from dynet.promptir import PromptIR, PromptIRConfig

Factory = TypeVar("Factory", bound=Callable[..., nn.Module])


class UnknownArchitectureError(ValueError):
    """An architecture name the registry does not know."""


@dataclass(frozen=True)
class Architecture:
    """One registered name: the factory, the network class it builds and its canonical name."""

    name: str
    network: type[nn.Module]
    factory: Callable[..., nn.Module]
    canonical: str
    variable_depth: bool  # forward takes ``variant=`` (DyNet); the others have one depth


_REGISTRY: dict[str, Architecture] = {}
_CANONICAL: dict[type[nn.Module], str] = {}


def register(
    name: str, network: type[nn.Module], *, variable_depth: bool = False
) -> Callable[[Factory], Factory]:
    """Decorator: register ``factory(**config_overrides)`` under ``name`` (case-insensitive)."""
    key = name.lower()

    def decorate(factory: Factory) -> Factory:
        canonical = _CANONICAL.setdefault(network, key)
        _REGISTRY[key] = Architecture(key, network, factory, canonical, variable_depth)
        return factory

    return decorate


def available_models() -> list[str]:
    return sorted(_REGISTRY)


def architecture(arch: str) -> Architecture:
    """The registration of ``arch``; unknown names raise UnknownArchitectureError."""
    try:
        return _REGISTRY[arch.lower()]
    except KeyError:
        raise UnknownArchitectureError(
            f"unknown architecture {arch!r}; choose one of {', '.join(available_models())}"
        ) from None


def create_model(arch: str, **kw: Any) -> nn.Module:
    """Build ``arch`` ("dynet", "dynet-l", "dynet-s", "promptir"); ``kw`` override its config."""
    return architecture(arch).factory(**kw)


def architecture_of(model: nn.Module) -> str:
    """The canonical registry name that rebuilds ``model`` (with ``model.config``)."""
    for cls in type(model).__mro__:
        if cls in _CANONICAL:
            return _CANONICAL[cls]
    raise UnknownArchitectureError(f"{type(model).__name__} is not a registered architecture")


@register("dynet", DyNet, variable_depth=True)
def _dynet(**kw: Any) -> DyNet:
    return DyNet(DyNetConfig(**kw))


@register("dynet-l", DyNet, variable_depth=True)
def _dynet_l(**kw: Any) -> DyNet:
    return DyNet(DyNetConfig(**{"default_variant": "L", **kw}))


@register("dynet-s", DyNet, variable_depth=True)
def _dynet_s(**kw: Any) -> DyNet:
    return DyNet(DyNetConfig(**{"default_variant": "S", **kw}))


@register("promptir", PromptIR)
def _promptir(**kw: Any) -> PromptIR:
    return PromptIR(PromptIRConfig(**kw))


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
