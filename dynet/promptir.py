"""PromptIR, the baseline DyNet is compared with.

The same 4-level U-Net as DyNet, but every level stacks distinct blocks ([4, 6, 6, 8]) and
the prompt stages sit on the decoder side::

    e1 = enc1(embed(x)); e2 = enc2(down1(e1)); e3 = enc3(down2(e2))
    z  = prompt_latent(latent(down3(e3)))                       384 -> 192
    d3 = prompt_dec3(dec3(fuse3(cat(up3(z), e3))))              192 -> 192
    d2 = prompt_dec2(dec2(fuse2(cat(up2(d3), e2))))             96 -> 96
    d1 = dec1(cat(up1(d2), e1));  y = head(refinement(d1)) + x
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import torch
from torch import nn

from dynet.blocks import (
    Downsample,
    PromptStage,
    TransformerBlock,
    Upsample,
    conv1x1,
    conv3x3,
    pad_to_multiple,
)
from dynet.dynet import SIZE_MULTIPLE, NetworkConfig
from dynet.variants import InvalidVariantError


@dataclass(frozen=True)
class PromptIRConfig(NetworkConfig):
    dim: int = 48
    blocks: tuple[int, int, int, int] = (4, 6, 6, 8)
    heads: tuple[int, int, int, int] = (1, 2, 4, 8)
    prompt_channels: tuple[int, int, int] = (64, 128, 320)  # dec2, dec3, latent
    prompt_sizes: tuple[int, int, int] = (64, 32, 16)
    prompt_heads: int = 4
    refinement_blocks: int = 4
    in_channels: int = 3


def _stack(count: int, channels: int, heads: int) -> nn.Sequential:
    return nn.Sequential(*(TransformerBlock(channels, heads) for _ in range(count)))


class PromptIR(nn.Module):
    """PromptIR with its decoder-side prompts (the official ``decoder=True`` network)."""

    def __init__(self, config: PromptIRConfig | None = None, **overrides) -> None:
        super().__init__()
        config = replace(config or PromptIRConfig(), **overrides)  # re-runs the config's checks
        self.config = config
        c1, h, n = config.dim, config.heads, config.blocks
        c2, c3, c4 = c1 * 2, c1 * 4, c1 * 8
        p2, p3, p4 = config.prompt_channels
        s2, s3, s4 = config.prompt_sizes

        self.embed = conv3x3(config.in_channels, c1)
        self.enc1 = _stack(n[0], c1, h[0])
        self.down1 = Downsample(c1)
        self.enc2 = _stack(n[1], c2, h[1])
        self.down2 = Downsample(c2)
        self.enc3 = _stack(n[2], c3, h[2])
        self.down3 = Downsample(c3)
        self.latent = _stack(n[3], c4, h[3])
        self.prompt_latent = PromptStage(c4, p4, s4, c3, config.prompt_heads)

        self.up3 = Upsample(c3)
        self.fuse3 = conv1x1(c2 + c3, c3)
        self.dec3 = _stack(n[2], c3, h[2])
        self.prompt_dec3 = PromptStage(c3, p3, s3, c3, config.prompt_heads)
        self.up2 = Upsample(c3)
        self.fuse2 = conv1x1(c2 + c2, c2)
        self.dec2 = _stack(n[1], c2, h[1])
        self.prompt_dec2 = PromptStage(c2, p2, s2, c2, config.prompt_heads)
        self.up1 = Upsample(c2)
        self.dec1 = _stack(n[0], c2, h[0])
        self.refinement = _stack(config.refinement_blocks, c2, h[0])
        self.head = conv3x3(c2, config.in_channels)

    def forward(
        self, x: torch.Tensor, variant: str | tuple[int, ...] | None = None
    ) -> torch.Tensor:
        """Restore ``x``; sizes that are not multiples of 8 are padded and cropped back.

        ``variant`` exists so that callers can treat every model alike; PromptIR has one depth,
        so only ``None`` (or ``"L"``, its equivalent) is accepted.
        """
        if variant is not None and variant != "L":
            raise InvalidVariantError(
                f"PromptIR has a single depth; variant {variant!r} is invalid"
            )
        inp, (h, w) = pad_to_multiple(x, SIZE_MULTIPLE)
        e1 = self.enc1(self.embed(inp))
        e2 = self.enc2(self.down1(e1))
        e3 = self.enc3(self.down2(e2))
        z = self.prompt_latent(self.latent(self.down3(e3)))
        d3 = self.prompt_dec3(self.dec3(self.fuse3(torch.cat([self.up3(z), e3], 1))))
        d2 = self.prompt_dec2(self.dec2(self.fuse2(torch.cat([self.up2(d3), e2], 1))))
        d1 = self.dec1(torch.cat([self.up1(d2), e1], 1))
        out = self.head(self.refinement(d1)) + inp
        return out[..., :h, :w]
