"""Tiled inference: restore images of any size with bounded memory.

The image is cut into overlapping tiles of one fixed size (the last tile on each axis is
pushed back to end at the border, so no tile is ragged); each tile is restored on its own and
the results are blended with a separable linear ramp over the overlap, then normalised by the
summed weights. Peak memory is one tile batch through the network plus two image-sized float32
accumulators on the CPU, whatever the image size. On CUDA the network runs under bf16 (or fp16)
autocast.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import nullcontext

import torch
from torch import nn

ProgressFn = Callable[[int, int], None]


class TilingError(ValueError):
    """Invalid tile settings or input shape."""


def tile_starts(size: int, tile: int, overlap: int) -> list[int]:
    """Start offsets covering ``[0, size)`` with tiles of ``min(tile, size)``."""
    if size <= tile:
        return [0]
    stride = tile - overlap
    starts = list(range(0, size - tile, stride))
    starts.append(size - tile)
    return starts


def blend_ramp(length: int, overlap: int) -> torch.Tensor:
    """1-D weights: rising linearly over ``overlap`` at both ends, 1 in the middle, never 0."""
    if overlap <= 0:
        return torch.ones(length)
    pos = torch.arange(length, dtype=torch.float32) + 0.5
    return torch.minimum(pos, length - pos).div(overlap).clamp(max=1.0)


def iter_tiles(h: int, w: int, tile: int, overlap: int) -> Iterator[tuple[int, int]]:
    for top in tile_starts(h, tile, overlap):
        for left in tile_starts(w, tile, overlap):
            yield top, left


def _autocast(device: torch.device, enabled: bool):
    if not enabled or device.type != "cuda":
        return nullcontext()
    dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return torch.autocast("cuda", dtype=dtype)


def restore_tensor(
    model: nn.Module,
    x: torch.Tensor,
    variant: str | tuple[int, ...] | None = None,
    *,
    tile: int = 256,
    overlap: int = 32,
    tiles_per_batch: int = 1,
    autocast: bool = True,
    progress: ProgressFn | None = None,
) -> torch.Tensor:
    """Restore ``x`` (3 x H x W or N x 3 x H x W, values in [0, 1]) tile by tile.

    The model runs on the device its parameters are on; the result is float32 on the CPU,
    with the shape of ``x`` (not clamped). ``progress(done, total)`` is called after each
    tile batch, counting tiles over all images.
    """
    if tile < 8 or tile % 8:
        raise TilingError(f"tile must be a positive multiple of 8, got {tile}")
    if not 0 <= overlap < tile // 2 + 1:
        raise TilingError(
            f"overlap must be between 0 and half the tile ({tile // 2}), got {overlap}"
        )
    if tiles_per_batch < 1:
        raise TilingError(f"tiles_per_batch must be at least 1, got {tiles_per_batch}")
    single = x.dim() == 3
    batch = x.unsqueeze(0) if single else x
    if batch.dim() != 4:
        raise TilingError(
            f"expected a 3 x H x W or N x C x H x W tensor, got shape {tuple(x.shape)}"
        )
    n, c, h, w = batch.shape
    device = next(model.parameters()).device
    th, tw = min(tile, h), min(tile, w)
    window = (blend_ramp(th, overlap)[:, None] * blend_ramp(tw, overlap)[None, :]).unsqueeze(0)
    positions = list(iter_tiles(h, w, tile, overlap))
    total, done = n * len(positions), 0
    kwargs = {} if variant is None else {"variant": variant}
    out = torch.zeros(n, c, h, w)
    was_training = model.training
    model.eval()
    try:
        with torch.inference_mode(), _autocast(device, autocast):
            for i in range(n):
                acc = torch.zeros(c, h, w)
                weight = torch.zeros(1, h, w)
                for k in range(0, len(positions), tiles_per_batch):
                    group = positions[k : k + tiles_per_batch]
                    crops = torch.stack([batch[i, :, t : t + th, s : s + tw] for t, s in group])
                    pred = model(crops.to(device, torch.float32), **kwargs).float().cpu()
                    for (t, s), p in zip(group, pred, strict=True):
                        acc[:, t : t + th, s : s + tw] += p * window
                        weight[:, t : t + th, s : s + tw] += window
                    done += len(group)
                    if progress is not None:
                        progress(done, total)
                out[i] = acc / weight
    finally:
        model.train(was_training)
    return out[0] if single else out
