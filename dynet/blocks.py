"""Building blocks shared by DyNet and the PromptIR baseline (Restormer-style).

All convolutions are bias-free, as in the papers. Feature maps are NCHW throughout.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

FFN_EXPANSION = 2.66


def ffn_hidden_channels(channels: int) -> int:
    """Hidden width of the gated feed-forward network (``int(C * 2.66)`` as in Restormer)."""
    return int(channels * FFN_EXPANSION)


class LayerNorm2d(nn.Module):
    """LayerNorm over the channels of each pixel, with weight and bias (eps 1e-5)."""

    def __init__(self, channels: int, eps: float = 1e-5) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(channels))
        self.bias = nn.Parameter(torch.zeros(channels))
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # F.layer_norm normalises the trailing dimension, so move channels last and back.
        y = F.layer_norm(x.permute(0, 2, 3, 1), (x.shape[1],), self.weight, self.bias, self.eps)
        return y.permute(0, 3, 1, 2)


class ChannelAttention(nn.Module):
    """MDTA: multi-head attention across channels (a CxC map per head), linear in H*W."""

    def __init__(self, channels: int, heads: int) -> None:
        super().__init__()
        if channels % heads:
            raise ValueError(f"channels ({channels}) must be divisible by heads ({heads})")
        self.heads = heads
        self.temperature = nn.Parameter(torch.ones(heads, 1, 1))
        self.qkv = nn.Conv2d(channels, channels * 3, 1, bias=False)
        self.qkv_dw = nn.Conv2d(
            channels * 3, channels * 3, 3, padding=1, groups=channels * 3, bias=False
        )
        self.proj = nn.Conv2d(channels, channels, 1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        q, k, v = self.qkv_dw(self.qkv(x)).chunk(3, dim=1)
        shape = (b, self.heads, c // self.heads, h * w)
        q = F.normalize(q.reshape(shape), dim=-1)
        k = F.normalize(k.reshape(shape), dim=-1)
        attn = (q @ k.transpose(-2, -1)) * self.temperature
        out = attn.softmax(dim=-1) @ v.reshape(shape)
        return self.proj(out.reshape(b, c, h, w))


class GatedFeedForward(nn.Module):
    """GDFN: 1x1 expand to two branches, 3x3 depthwise, GELU(a) * b, 1x1 back."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        hidden = ffn_hidden_channels(channels)
        self.proj_in = nn.Conv2d(channels, hidden * 2, 1, bias=False)
        self.dw = nn.Conv2d(hidden * 2, hidden * 2, 3, padding=1, groups=hidden * 2, bias=False)
        self.proj_out = nn.Conv2d(hidden, channels, 1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        gate, value = self.dw(self.proj_in(x)).chunk(2, dim=1)
        return self.proj_out(F.gelu(gate) * value)


class TransformerBlock(nn.Module):
    """Pre-norm block: ``x + attn(norm1(x))`` then ``x + ffn(norm2(x))``."""

    def __init__(self, channels: int, heads: int) -> None:
        super().__init__()
        self.norm1 = LayerNorm2d(channels)
        self.attn = ChannelAttention(channels, heads)
        self.norm2 = LayerNorm2d(channels)
        self.ffn = GatedFeedForward(channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.norm1(x))
        return x + self.ffn(self.norm2(x))


class Downsample(nn.Module):
    """Halve H and W, double C: 3x3 conv to C/2 then pixel-unshuffle by 2."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(channels, channels // 2, 3, padding=1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.pixel_unshuffle(self.conv(x), 2)


class Upsample(nn.Module):
    """Double H and W, halve C: 3x3 conv to 2C then pixel-shuffle by 2."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(channels, channels * 2, 3, padding=1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.pixel_shuffle(self.conv(x), 2)


class PromptGenerator(nn.Module):
    """Input-conditioned prompt: a softmax mixture of learnable prompt tensors.

    Global average pool -> linear to one logit per component -> softmax -> weighted sum of the
    components -> bilinear resize to the feature's H x W -> 3x3 conv.
    """

    def __init__(
        self, feature_channels: int, prompt_channels: int, prompt_size: int, components: int = 5
    ) -> None:
        super().__init__()
        self.prompts = nn.Parameter(
            torch.rand(1, components, prompt_channels, prompt_size, prompt_size)
        )
        self.select = nn.Linear(feature_channels, components)
        self.conv = nn.Conv2d(prompt_channels, prompt_channels, 3, padding=1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        weights = self.select(x.mean(dim=(-2, -1))).softmax(dim=1)
        # Elementwise mix, as in the official code (a matmul here would count as MACs).
        prompt = (weights[:, :, None, None, None] * self.prompts).sum(dim=1)
        if prompt.shape[-2:] != x.shape[-2:]:
            prompt = F.interpolate(prompt, size=x.shape[-2:], mode="bilinear")
        return self.conv(prompt)


class PromptStage(nn.Module):
    """Prompt generation + interaction: ``reduce(block(cat(x, prompt(x))))``."""

    def __init__(
        self,
        feature_channels: int,
        prompt_channels: int,
        prompt_size: int,
        out_channels: int,
        heads: int = 4,
    ) -> None:
        super().__init__()
        joint = feature_channels + prompt_channels
        self.gen = PromptGenerator(feature_channels, prompt_channels, prompt_size)
        self.block = TransformerBlock(joint, heads)
        self.reduce = nn.Conv2d(joint, out_channels, 1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.reduce(self.block(torch.cat([x, self.gen(x)], dim=1)))


def conv1x1(in_channels: int, out_channels: int) -> nn.Conv2d:
    return nn.Conv2d(in_channels, out_channels, 1, bias=False)


def conv3x3(in_channels: int, out_channels: int) -> nn.Conv2d:
    return nn.Conv2d(in_channels, out_channels, 3, padding=1, bias=False)


def pad_to_multiple(x: torch.Tensor, multiple: int) -> tuple[torch.Tensor, tuple[int, int]]:
    """Pad H and W at the bottom/right up to a multiple (reflect when possible)."""
    h, w = x.shape[-2:]
    pad_h, pad_w = (-h) % multiple, (-w) % multiple
    if not pad_h and not pad_w:
        return x, (h, w)
    mode = "reflect" if pad_h < h and pad_w < w else "replicate"
    return F.pad(x, (0, pad_w, 0, pad_h), mode=mode), (h, w)
