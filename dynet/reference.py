"""A deliberately plain reference network, for checking and benchmarking only.

It is written independently of ``dynet.blocks`` in the most literal way: official module
names (so an official state dict loads with ``load_state_dict`` as is), a LayerNorm computed
from mean and variance, the prompt mixture as a broadcast product summed over components,
and -- for DyNet -- one separate module per repeat, each holding a copy of the shared weights.
Tests compare the production networks against it; ``bench/model.py`` times it as the
"straightforward module-per-repeat" baseline.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
import torch.nn.functional as F
from torch import nn

SHARED_LEVELS = (
    "encoder_level1",
    "encoder_level2",
    "encoder_level3",
    "latent",
    "decoder_level3",
    "decoder_level2",
    "decoder_level1",
)


class RefLayerNorm(nn.Module):
    def __init__(self, dim: int) -> None:
        super().__init__()
        self.body = nn.Module()
        self.body.weight = nn.Parameter(torch.ones(dim))
        self.body.bias = nn.Parameter(torch.zeros(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        t = x.flatten(2).transpose(1, 2)  # b, hw, c
        mu = t.mean(-1, keepdim=True)
        var = t.var(-1, keepdim=True, unbiased=False)
        t = (t - mu) / torch.sqrt(var + 1e-5) * self.body.weight + self.body.bias
        return t.transpose(1, 2).reshape(b, c, h, w)


class RefAttention(nn.Module):
    def __init__(self, dim: int, heads: int) -> None:
        super().__init__()
        self.heads = heads
        self.temperature = nn.Parameter(torch.ones(heads, 1, 1))
        self.qkv = nn.Conv2d(dim, dim * 3, 1, bias=False)
        self.qkv_dwconv = nn.Conv2d(dim * 3, dim * 3, 3, 1, 1, groups=dim * 3, bias=False)
        self.project_out = nn.Conv2d(dim, dim, 1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        qkv = self.qkv_dwconv(self.qkv(x))
        q, k, v = (
            qkv[:, i * c : (i + 1) * c].reshape(b, self.heads, c // self.heads, h * w)
            for i in range(3)
        )
        q = q / q.norm(dim=-1, keepdim=True).clamp_min(1e-12)
        k = k / k.norm(dim=-1, keepdim=True).clamp_min(1e-12)
        attn = torch.softmax(torch.matmul(q, k.transpose(2, 3)) * self.temperature, dim=-1)
        return self.project_out(torch.matmul(attn, v).reshape(b, c, h, w))


class RefFeedForward(nn.Module):
    def __init__(self, dim: int) -> None:
        super().__init__()
        hidden = int(dim * 2.66)
        self.hidden = hidden
        self.project_in = nn.Conv2d(dim, hidden * 2, 1, bias=False)
        self.dwconv = nn.Conv2d(hidden * 2, hidden * 2, 3, 1, 1, groups=hidden * 2, bias=False)
        self.project_out = nn.Conv2d(hidden, dim, 1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.dwconv(self.project_in(x))
        return self.project_out(F.gelu(y[:, : self.hidden]) * y[:, self.hidden :])


class RefBlock(nn.Module):
    def __init__(self, dim: int, heads: int) -> None:
        super().__init__()
        self.norm1 = RefLayerNorm(dim)
        self.attn = RefAttention(dim, heads)
        self.norm2 = RefLayerNorm(dim)
        self.ffn = RefFeedForward(dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.norm1(x))
        x = x + self.ffn(self.norm2(x))
        return x


class RefPrompt(nn.Module):
    def __init__(self, prompt_dim: int, size: int, feature_dim: int) -> None:
        super().__init__()
        self.prompt_param = nn.Parameter(torch.rand(1, 5, prompt_dim, size, size))
        self.linear_layer = nn.Linear(feature_dim, 5)
        self.conv3x3 = nn.Conv2d(prompt_dim, prompt_dim, 3, 1, 1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, _, h, w = x.shape
        weights = F.softmax(self.linear_layer(x.mean(dim=(-2, -1))), dim=1)
        params = self.prompt_param.repeat(b, 1, 1, 1, 1, 1).squeeze(1)  # b, 5, c, s, s
        prompt = (weights[:, :, None, None, None] * params).sum(dim=1)
        prompt = F.interpolate(prompt, (h, w), mode="bilinear")
        return self.conv3x3(prompt)


def _conv(cin: int, cout: int, k: int) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, k, 1, k // 2, bias=False)


class _Resample(nn.Module):
    def __init__(self, cin: int, cout: int, shuffle: nn.Module) -> None:
        super().__init__()
        self.body = nn.Sequential(_conv(cin, cout, 3), shuffle)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)


class _Embed(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.proj = _conv(3, 48, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(x)


class ReferenceNet(nn.Module):
    """DyNet (``prompts_on="encoder"``) or PromptIR (``"decoder"``), every repeat its own module."""

    def __init__(self, repeats: tuple[int, int, int, int], prompts_on: str) -> None:
        super().__init__()
        n1, n2, n3, n4 = repeats
        self.prompts_on = prompts_on

        def stack(n: int, dim: int, heads: int) -> nn.Sequential:
            return nn.Sequential(*[RefBlock(dim, heads) for _ in range(n)])

        self.patch_embed = _Embed()
        self.prompt1 = RefPrompt(64, 64, 96)
        self.prompt2 = RefPrompt(128, 32, 192)
        self.prompt3 = RefPrompt(320, 16, 384)
        self.encoder_level1 = stack(n1, 48, 1)
        self.down1_2 = _Resample(48, 24, nn.PixelUnshuffle(2))
        self.encoder_level2 = stack(n2, 96, 2)
        self.down2_3 = _Resample(96, 48, nn.PixelUnshuffle(2))
        self.encoder_level3 = stack(n3, 192, 4)
        self.down3_4 = _Resample(192, 96, nn.PixelUnshuffle(2))
        self.latent = stack(n4, 384, 8)
        self.up4_3 = _Resample(192, 384, nn.PixelShuffle(2))
        self.reduce_chan_level3 = _conv(288, 192, 1)
        self.noise_level3 = RefBlock(704, 4)
        self.reduce_noise_level3 = _conv(704, 192, 1)
        self.decoder_level3 = stack(n3, 192, 4)
        self.up3_2 = _Resample(192, 384, nn.PixelShuffle(2))
        self.reduce_chan_level2 = _conv(192, 96, 1)
        self.noise_level2 = RefBlock(320, 4)
        self.reduce_noise_level2 = _conv(320, 192, 1)
        self.decoder_level2 = stack(n2, 96, 2)
        self.up2_1 = _Resample(96, 192, nn.PixelShuffle(2))
        self.noise_level1 = RefBlock(160, 4)
        self.reduce_noise_level1 = _conv(160, 96, 1)
        self.decoder_level1 = stack(n1, 96, 1)
        self.refinement = stack(4, 96, 1)
        self.output = _conv(96, 3, 3)

    def load_official(self, state: Mapping[str, torch.Tensor]) -> None:
        """Load an official state dict; DyNet's one block per level is copied into each repeat."""
        target: dict[str, torch.Tensor] = {}
        for key, value in state.items():
            if key.startswith(("reduce_noise_channel_", "chnl_reduce")):
                continue  # never used in forward
            level, _, rest = key.partition(".")
            if self.prompts_on == "encoder" and level in SHARED_LEVELS:
                for i in range(len(getattr(self, level))):
                    target[f"{level}.{i}.{rest}"] = value
            else:
                target[key] = value
        self.load_state_dict(target, strict=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        e1 = self.encoder_level1(self.patch_embed(x))
        e2 = self.encoder_level2(self.down1_2(e1))
        e3 = self.encoder_level3(self.down2_3(e2))
        z = self.latent(self.down3_4(e3))
        z = self.reduce_noise_level3(self.noise_level3(torch.cat([z, self.prompt3(z)], 1)))
        if self.prompts_on == "encoder":
            e3 = self.reduce_noise_level2(self.noise_level2(torch.cat([e3, self.prompt2(e3)], 1)))
            e2 = self.reduce_noise_level1(self.noise_level1(torch.cat([e2, self.prompt1(e2)], 1)))
        d3 = self.decoder_level3(self.reduce_chan_level3(torch.cat([self.up4_3(z), e3], 1)))
        if self.prompts_on == "decoder":
            d3 = self.reduce_noise_level2(self.noise_level2(torch.cat([d3, self.prompt2(d3)], 1)))
        d2 = self.decoder_level2(self.reduce_chan_level2(torch.cat([self.up3_2(d3), e2], 1)))
        if self.prompts_on == "decoder":
            d2 = self.reduce_noise_level1(self.noise_level1(torch.cat([d2, self.prompt1(d2)], 1)))
        d1 = self.decoder_level1(torch.cat([self.up2_1(d2), e1], 1))
        return self.output(self.refinement(d1)) + x
