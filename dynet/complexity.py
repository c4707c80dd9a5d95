"""What a network costs: parameters (total, used) and multiply-accumulates per forward pass.

MACs come from ``torch.utils.flop_counter`` (which counts 2 FLOPs per multiply-add) run on
the ``meta`` device, so even 224x224 costs no arithmetic. Convolutions and the attention
matrix products (``bmm``) are reported separately, as in the paper's figures.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields

import torch
from torch import nn
from torch.func import functional_call
from torch.utils.flop_counter import FlopCounterMode

from dynet.official import UNUSED_OFFICIAL
from dynet.registry import architecture_of
from dynet.variants import variant_label

_CONV_OPS = {"convolution", "_convolution", "conv2d"}
_ATTENTION_OPS = {"bmm", "matmul", "baddbmm"}


@dataclass(frozen=True)
class Complexity:
    arch: str
    variant: str | None
    size: int
    params_total: int  # parameters the module holds
    params_used: int  # of those, the ones forward touches
    params_official_layout: int | None  # as counted in the authors' code (None: non-default)
    conv_macs: int
    attention_macs: int
    other_macs: int  # linear layers of the prompt generators

    @property
    def total_macs(self) -> int:
        return self.conv_macs + self.attention_macs + self.other_macs

    def to_dict(self) -> dict:
        return {**asdict(self), "total_macs": self.total_macs}


def _has_paper_widths(model: nn.Module) -> bool:
    """True when only the default variant differs from the paper's configuration."""
    config = model.config
    default = type(config)()
    return all(
        getattr(config, f.name) == getattr(default, f.name)
        for f in fields(default)
        if f.name != "default_variant"
    )


def _meta_params(model: nn.Module, grad: bool) -> dict[str, torch.Tensor]:
    tensors = {n: torch.empty_like(p, device="meta") for n, p in model.named_parameters()}
    tensors.update({n: torch.empty_like(b, device="meta") for n, b in model.named_buffers()})
    if grad:
        for t in tensors.values():
            if t.is_floating_point():
                t.requires_grad_(True)
    return tensors


def _call(model: nn.Module, tensors: dict, x: torch.Tensor, variant) -> torch.Tensor:
    kwargs = {} if variant is None else {"variant": variant}
    return functional_call(model, tensors, (x,), kwargs)


def used_parameter_names(
    model: nn.Module, variant: str | tuple[int, ...] | None = None, size: int = 64
) -> set[str]:
    """Names of the parameters that receive a gradient from one forward pass."""
    tensors = _meta_params(model, grad=True)
    x = torch.empty(1, 3, size, size, device="meta")
    _call(model, tensors, x, variant).sum().backward()
    params = dict(model.named_parameters())
    return {n for n, t in tensors.items() if n in params and t.grad is not None}


def count_macs(
    model: nn.Module, size: int = 224, variant: str | tuple[int, ...] | None = None
) -> dict[str, int]:
    """MACs of one forward pass on a 1 x 3 x size x size input, by kind of operation."""
    tensors = _meta_params(model, grad=False)
    x = torch.empty(1, 3, size, size, device="meta")
    counter = FlopCounterMode(display=False)
    with torch.no_grad(), counter:
        _call(model, tensors, x, variant)
    macs = {"conv": 0, "attention": 0, "other": 0}
    for op, flops in counter.get_flop_counts()["Global"].items():
        name = str(op).removeprefix("aten.").split(".")[0]
        kind = "conv" if name in _CONV_OPS else "attention" if name in _ATTENTION_OPS else "other"
        macs[kind] += flops // 2
    return macs


def complexity(
    model: nn.Module, size: int = 224, variant: str | tuple[int, ...] | None = None
) -> Complexity:
    """Parameters and MACs of ``model`` at ``size`` x ``size`` for ``variant`` (DyNet only)."""
    arch = architecture_of(model)
    params_total = sum(p.numel() for p in model.parameters())
    params = dict(model.named_parameters())
    params_used = sum(params[n].numel() for n in used_parameter_names(model, variant))
    official = None
    if _has_paper_widths(model):  # the authors' layout of unused tensors applies
        extra = sum(torch.Size(s).numel() for s in UNUSED_OFFICIAL[arch].values())
        official = params_total + extra
    macs = count_macs(model, size, variant)
    return Complexity(
        arch=arch,
        variant=variant_label(variant or getattr(model.config, "default_variant", None)),
        size=size,
        params_total=params_total,
        params_used=params_used,
        params_official_layout=official,
        conv_macs=macs["conv"],
        attention_macs=macs["attention"],
        other_macs=macs["other"],
    )
