"""DyNet: one set of weights, several depths.

Each encoder level, the latent level and each decoder level hold ONE transformer block that is
applied ``n`` times in a row; the repeat counts are chosen per call, so DyNet-L (4, 6, 6, 8)
and DyNet-S (2, 3, 3, 4) -- or any lighter tuple -- run from the same state dict.

Wiring (channels at the default width 48; ``B^n`` = block applied n times)::

    e1 = enc1^n1(embed(x))                                    48
    e2 = enc2^n2(down1(e1))                                   96
    e3 = enc3^n3(down2(e2))                                   192
    z  = prompt_latent(latent^n4(down3(e3)))                  384 -> 192
    d3 = dec3^n3(fuse3(cat(up3(z), prompt_skip3(e3))))        96 + 192 -> 192
    d2 = dec2^n2(fuse2(cat(up2(d3), prompt_skip2(e2))))       96 + 96 -> 96
    d1 = dec1^n1(cat(up1(d2), e1))                            48 + 48 = 96
    y  = head(refinement(d1)) + x                             4 distinct blocks, 96 -> 3
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields, replace

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
from dynet.variants import resolve_variant

SIZE_MULTIPLE = 8  # three 2x downsamplings


class NetworkConfig:
    """Base of the networks' frozen dataclass configs (stored in weight files as JSON)."""

    def __post_init__(self) -> None:
        # Sequences read back from JSON arrive as lists; keep the config hashable and exact.
        for f in fields(self):  # type: ignore[arg-type]
            value = getattr(self, f.name)
            if isinstance(value, list):
                object.__setattr__(self, f.name, tuple(value))

    def to_dict(self) -> dict:
        return asdict(self)  # type: ignore[call-overload]


@dataclass(frozen=True)
class DyNetConfig(NetworkConfig):
    """Widths of the network; the defaults are the paper's."""

    dim: int = 48
    heads: tuple[int, int, int, int] = (1, 2, 4, 8)
    prompt_channels: tuple[int, int, int] = (64, 128, 320)  # skip2, skip3, latent
    prompt_sizes: tuple[int, int, int] = (64, 32, 16)
    prompt_heads: int = 4
    refinement_blocks: int = 4
    in_channels: int = 3
    default_variant: str = "L"


class DyNet(nn.Module):
    """DyNet with weight-shared repeats; ``forward(x, variant)`` picks the depth per call."""

    def __init__(self, config: DyNetConfig | None = None, **overrides) -> None:
        super().__init__()
        config = replace(config or DyNetConfig(), **overrides)  # re-runs the config's checks
        resolve_variant(config.default_variant)
        self.config = config
        c1, h = config.dim, config.heads
        c2, c3, c4 = c1 * 2, c1 * 4, c1 * 8
        p2, p3, p4 = config.prompt_channels
        s2, s3, s4 = config.prompt_sizes

        self.embed = conv3x3(config.in_channels, c1)
        self.enc1 = TransformerBlock(c1, h[0])
        self.down1 = Downsample(c1)
        self.enc2 = TransformerBlock(c2, h[1])
        self.down2 = Downsample(c2)
        self.enc3 = TransformerBlock(c3, h[2])
        self.down3 = Downsample(c3)
        self.latent = TransformerBlock(c4, h[3])

        self.prompt_latent = PromptStage(c4, p4, s4, c3, config.prompt_heads)
        self.prompt_skip3 = PromptStage(c3, p3, s3, c3, config.prompt_heads)
        self.prompt_skip2 = PromptStage(c2, p2, s2, c2, config.prompt_heads)

        self.up3 = Upsample(c3)
        self.fuse3 = conv1x1(c2 + c3, c3)
        self.dec3 = TransformerBlock(c3, h[2])
        self.up2 = Upsample(c3)
        self.fuse2 = conv1x1(c2 + c2, c2)
        self.dec2 = TransformerBlock(c2, h[1])
        self.up1 = Upsample(c2)
        self.dec1 = TransformerBlock(c2, h[0])
        self.refinement = nn.Sequential(
            *(TransformerBlock(c2, h[0]) for _ in range(config.refinement_blocks))
        )
        self.head = conv3x3(c2, config.in_channels)

    @staticmethod
    def _repeat(block: nn.Module, x: torch.Tensor, times: int) -> torch.Tensor:
        for _ in range(times):
            x = block(x)
        return x

    def forward(
        self, x: torch.Tensor, variant: str | tuple[int, ...] | None = None
    ) -> torch.Tensor:
        """Restore ``x`` (N x 3 x H x W).

        H and W that are not multiples of 8 are reflect-padded at the bottom/right and the
        output is cropped back, so any size works; multiples of 8 avoid the padding.
        """
        n1, n2, n3, n4 = resolve_variant(
            self.config.default_variant if variant is None else variant
        )
        inp, (h, w) = pad_to_multiple(x, SIZE_MULTIPLE)
        rep = self._repeat

        e1 = rep(self.enc1, self.embed(inp), n1)
        e2 = rep(self.enc2, self.down1(e1), n2)
        e3 = rep(self.enc3, self.down2(e2), n3)
        z = self.prompt_latent(rep(self.latent, self.down3(e3), n4))

        d3 = rep(self.dec3, self.fuse3(torch.cat([self.up3(z), self.prompt_skip3(e3)], 1)), n3)
        d2 = rep(self.dec2, self.fuse2(torch.cat([self.up2(d3), self.prompt_skip2(e2)], 1)), n2)
        d1 = rep(self.dec1, torch.cat([self.up1(d2), e1], 1), n1)
        out = self.head(self.refinement(d1)) + inp
        return out[..., :h, :w]
