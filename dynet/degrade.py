"""Synthetic degradations on image tensors, seeded, and the pre-training recipe that composes them.

Every function takes one float image ``C x H x W`` in [0, 1] and a ``torch.Generator`` and
returns a new tensor of the same shape; the same generator state gives the same result, so a
sample's corruption is a pure function of its seed (what makes resumed runs exact).

The paper corrupts about 80 % of each pre-training patch: 50 % "augmentation" (a degradation)
plus 30 % masking. :func:`apply_recipe` reads that literally: the patch is cut into blocks,
a ``degrade_fraction`` of the blocks shows the degraded image, a disjoint ``mask_ratio`` of the
blocks is zeroed, the rest stays clean. ``degrade_fraction=1`` degrades the whole patch.

The default recipe is the paper's, which is task-agnostic: noise addition (Gaussian, JPEG and
"random" noise, here Poisson, speckle, salt-and-pepper or uniform) then random masking. Blur,
motion blur, rain and haze are this project's opt-in extension (:func:`extension_ops`); rain
and haze are fine-tuning tasks, so they are off by default. See ``docs/recipes.md``.
"""

from __future__ import annotations

import io
import math
from typing import Annotated, Literal

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from pydantic import BaseModel, ConfigDict, Field, model_validator

from dynet.imaging import to_tensor, to_uint8_image

Range = tuple[float, float]


def _uniform(gen: torch.Generator, low: float, high: float) -> float:
    return low + (high - low) * float(torch.rand((), generator=gen))


def _randint(gen: torch.Generator, low: int, high: int) -> int:
    """An integer in [low, high], both included."""
    return int(torch.randint(low, high + 1, (), generator=gen))


# --------------------------------------------------------------------------- degradations


def gaussian_noise(
    image: torch.Tensor, sigma: float, gen: torch.Generator, quantize: bool = False
) -> torch.Tensor:
    """Additive Gaussian noise of ``sigma`` on the 0-255 scale.

    ``quantize=True`` follows the test protocol: the clean image is taken to uint8, the noise
    added, the result clipped to [0, 255] and truncated to uint8 again.
    """
    noise = torch.randn(image.shape, generator=gen, dtype=torch.float32)
    if quantize:
        base = (image * 255.0).round().clamp(0, 255)
        return (base + sigma * noise).clamp(0, 255).floor() / 255.0
    return (image + (sigma / 255.0) * noise).clamp(0, 1)


def jpeg(image: torch.Tensor, quality: int) -> torch.Tensor:
    """JPEG round trip at ``quality`` (libjpeg through Pillow, 4:2:0 as most cameras)."""
    buffer = io.BytesIO()
    Image.fromarray(to_uint8_image(image)).save(buffer, "JPEG", quality=int(quality))
    buffer.seek(0)
    with Image.open(buffer) as decoded:
        return to_tensor(np.asarray(decoded.convert("RGB")))


RandomNoiseFamily = Literal["poisson", "speckle", "salt_pepper", "uniform"]
RANDOM_NOISE_FAMILIES: tuple[str, ...] = ("poisson", "speckle", "salt_pepper", "uniform")


def poisson_noise(image: torch.Tensor, peak: float, gen: torch.Generator) -> torch.Tensor:
    """Shot noise: photon counts ``Poisson(image * peak) / peak`` (smaller peak: noisier)."""
    return (torch.poisson(image * peak, generator=gen) / peak).clamp(0, 1)


def speckle_noise(image: torch.Tensor, sigma: float, gen: torch.Generator) -> torch.Tensor:
    """Multiplicative noise ``image * (1 + sigma * N(0, 1))``, sigma on the 0-1 scale."""
    noise = torch.randn(image.shape, generator=gen, dtype=torch.float32)
    return (image * (1 + sigma * noise)).clamp(0, 1)


def salt_pepper_noise(image: torch.Tensor, amount: float, gen: torch.Generator) -> torch.Tensor:
    """Impulse noise: a share ``amount`` of pixels (all channels) set to 0 or 1, half each."""
    _, h, w = image.shape
    hit = torch.rand((1, h, w), generator=gen) < amount
    salt = torch.rand((1, h, w), generator=gen) < 0.5
    return torch.where(hit, salt.to(image.dtype), image)


def uniform_noise(image: torch.Tensor, half_width: float, gen: torch.Generator) -> torch.Tensor:
    """Additive noise uniform in ``[-half_width, half_width]`` on the 0-255 scale."""
    noise = torch.rand(image.shape, generator=gen, dtype=torch.float32) * 2 - 1
    return (image + (half_width / 255.0) * noise).clamp(0, 1)


def _filter(image: torch.Tensor, kernel: torch.Tensor) -> torch.Tensor:
    """Convolve every channel with ``kernel`` (k x k, odd), reflect-padded."""
    k = kernel.shape[-1]
    channels = image.shape[0]
    weight = kernel.to(image.dtype).expand(channels, 1, k, k)
    padded = F.pad(image[None], (k // 2,) * 4, mode="reflect")
    return F.conv2d(padded, weight, groups=channels)[0]


def gaussian_kernel(sigma: float) -> torch.Tensor:
    radius = max(1, math.ceil(3 * sigma))
    x = torch.arange(-radius, radius + 1, dtype=torch.float32)
    g = torch.exp(-(x**2) / (2 * sigma**2))
    g = g / g.sum()
    return g[:, None] * g[None, :]


def line_kernel(length: int, angle_deg: float) -> torch.Tensor:
    """A normalised straight line of ``length`` pixels at ``angle_deg`` (motion, rain)."""
    size = length + 1 - length % 2  # odd
    centre = size // 2
    kernel = torch.zeros(size, size)
    theta = math.radians(angle_deg)
    for t in torch.linspace(-(length - 1) / 2, (length - 1) / 2, steps=max(2, 4 * length)):
        x = int(round(centre + float(t) * math.cos(theta)))
        y = int(round(centre - float(t) * math.sin(theta)))
        kernel[y, x] = 1.0
    return kernel / kernel.sum()


def gaussian_blur(image: torch.Tensor, sigma: float) -> torch.Tensor:
    return _filter(image, gaussian_kernel(sigma))


def motion_blur(image: torch.Tensor, length: int, angle_deg: float) -> torch.Tensor:
    return _filter(image, line_kernel(length, angle_deg))


def rain_streaks(
    image: torch.Tensor,
    gen: torch.Generator,
    density: float,
    length: int,
    angle_deg: float,
    intensity: float,
) -> torch.Tensor:
    """Screen-blend thin, bright, slanted streaks: sparse seeds smeared along one direction."""
    _, h, w = image.shape
    seeds = (torch.rand((1, h, w), generator=gen) < density).float()
    streaks = _filter(seeds, line_kernel(length, angle_deg)) * length  # each streak ~1 bright
    streaks = (streaks * intensity).clamp(0, 1)
    return 1 - (1 - image) * (1 - streaks)  # screen blend: rain only brightens


def depth_proxy(h: int, w: int, gen: torch.Generator) -> torch.Tensor:
    """A plausible relative depth in [0, 1]: far at the top, plus smooth random variation."""
    rows = torch.linspace(1.0, 0.0, h)[:, None].expand(h, w)
    coarse = torch.rand((1, 1, 4, 4), generator=gen)
    smooth = F.interpolate(coarse, size=(h, w), mode="bicubic", align_corners=True)[0, 0]
    depth = 0.7 * rows + 0.3 * smooth
    depth = depth - depth.min()
    return depth / depth.max().clamp_min(1e-6)


def haze(image: torch.Tensor, gen: torch.Generator, beta: float, airlight: float) -> torch.Tensor:
    """Atmospheric scattering ``I = J t + A (1 - t)`` with ``t = exp(-beta * depth)``."""
    _, h, w = image.shape
    transmission = torch.exp(-beta * depth_proxy(h, w, gen))[None]
    return (image * transmission + airlight * (1 - transmission)).clamp(0, 1)


def block_mask(
    h: int, w: int, block: int, ratio: float, gen: torch.Generator, exclude: torch.Tensor | None
) -> torch.Tensor:
    """A boolean H x W mask of whole ``block`` x ``block`` cells: ``ratio`` of all cells, drawn
    among the cells not in ``exclude`` (a cell-grid boolean tensor)."""
    rows, cols = math.ceil(h / block), math.ceil(w / block)
    total = rows * cols
    wanted = int(round(ratio * total))
    free = torch.ones(total, dtype=torch.bool) if exclude is None else ~exclude.flatten()
    candidates = free.nonzero().flatten()
    order = candidates[torch.randperm(len(candidates), generator=gen)]
    cells = torch.zeros(total, dtype=torch.bool)
    cells[order[: min(wanted, len(order))]] = True
    return cells.view(rows, cols)


def cells_to_pixels(cells: torch.Tensor, block: int, h: int, w: int) -> torch.Tensor:
    return cells.repeat_interleave(block, 0).repeat_interleave(block, 1)[:h, :w]


# --------------------------------------------------------------------------- the recipe


class _Op(BaseModel):
    """One degradation of the recipe.

    Each range is ``[low, high]``; a value is drawn from it every time the op is applied, i.e.
    once per patch (twice if ``chain`` happens to draw the op twice).
    """

    model_config = ConfigDict(extra="forbid")
    weight: float = Field(1.0, ge=0, description="Relative chance of this degradation.")


class NoiseOp(_Op):
    """Additive white Gaussian noise."""

    kind: Literal["noise"] = Field("noise", description="Selects this degradation.")
    sigma: Range = Field(
        (5.0, 50.0),
        description="Noise standard deviation on the 0-255 scale, "
        "one value drawn uniformly per patch.",
    )
    quantize: bool = Field(False, description="Round to uint8 as the test protocol does.")

    def __call__(self, image: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
        return gaussian_noise(image, _uniform(gen, *self.sigma), gen, self.quantize)


class JpegOp(_Op):
    """A JPEG encode/decode round trip (Pillow, 4:2:0)."""

    kind: Literal["jpeg"] = Field("jpeg", description="Selects this degradation.")
    quality: tuple[int, int] = Field(
        (20, 90),
        description="Pillow JPEG quality (1-95, lower is blockier), "
        "one integer drawn uniformly per patch, both ends included.",
    )

    def __call__(self, image: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
        return jpeg(image, _randint(gen, *self.quality))


class RandomNoiseOp(_Op):
    """The paper's "random noise": one family drawn uniformly per patch from ``families``,
    then its strength drawn from that family's range."""

    kind: Literal["random_noise"] = Field("random_noise", description="Selects this degradation.")
    families: list[RandomNoiseFamily] = Field(
        default_factory=lambda: list(RANDOM_NOISE_FAMILIES),
        min_length=1,
        description="Noise families drawn among with equal chance: poisson (shot noise), "
        "speckle (multiplicative Gaussian), salt_pepper (impulses), uniform (additive).",
    )
    poisson_peak: Range = Field(
        (10.0, 100.0),
        description="Poisson: photons at full white (smaller: noisier), drawn log-uniformly.",
    )
    speckle_sigma: Range = Field(
        (0.05, 0.3), description="Speckle: sigma of the multiplicative Gaussian (0-1 scale)."
    )
    salt_pepper_amount: Range = Field(
        (0.005, 0.05), description="Salt-and-pepper: share of pixels replaced by 0 or 1."
    )
    uniform_half_width: Range = Field(
        (10.0, 60.0), description="Uniform: half width of the additive noise (0-255 scale)."
    )

    def choose(self, gen: torch.Generator) -> str:
        """The family of one application (uniform over ``families``)."""
        return self.families[_randint(gen, 0, len(self.families) - 1)]

    def __call__(self, image: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
        family = self.choose(gen)
        if family == "poisson":
            low, high = (math.log(v) for v in self.poisson_peak)
            return poisson_noise(image, math.exp(_uniform(gen, low, high)), gen)
        if family == "speckle":
            return speckle_noise(image, _uniform(gen, *self.speckle_sigma), gen)
        if family == "salt_pepper":
            return salt_pepper_noise(image, _uniform(gen, *self.salt_pepper_amount), gen)
        return uniform_noise(image, _uniform(gen, *self.uniform_half_width), gen)


class BlurOp(_Op):
    """Isotropic Gaussian blur (kernel radius ceil(3 sigma), reflect padding)."""

    kind: Literal["blur"] = Field("blur", description="Selects this degradation.")
    sigma: Range = Field(
        (0.5, 3.0),
        description="Gaussian standard deviation in pixels, one value drawn uniformly per patch.",
    )

    def __call__(self, image: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
        return gaussian_blur(image, _uniform(gen, *self.sigma))


class MotionBlurOp(_Op):
    """Linear motion blur along a direction drawn uniformly from 0-180 degrees."""

    kind: Literal["motion_blur"] = Field("motion_blur", description="Selects this degradation.")
    length: tuple[int, int] = Field(
        (5, 15),
        description="Length of the blur line in pixels, "
        "one integer drawn uniformly per patch, both ends included.",
    )

    def __call__(self, image: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
        return motion_blur(image, _randint(gen, *self.length), _uniform(gen, 0, 180))


class RainOp(_Op):
    """Synthetic rain: sparse seeds smeared into slanted streaks, screen-blended (only brightens).

    All four parameters are drawn once per application, so one patch's streaks share them.
    """

    kind: Literal["rain"] = Field("rain", description="Selects this degradation.")
    density: Range = Field(
        (0.002, 0.01),
        description="Share of pixels that start a streak (0-1), "
        "one value drawn uniformly per patch.",
    )
    length: tuple[int, int] = Field(
        (10, 30),
        description="Streak length in pixels, "
        "one integer drawn uniformly per patch, both ends included.",
    )
    angle: Range = Field(
        (60.0, 120.0),
        description="Streak direction in degrees from the horizontal, counter-clockwise (90: "
        "vertical), one value drawn uniformly per patch.",
    )
    intensity: Range = Field(
        (0.3, 0.8),
        description="Streak brightness (0-1) before the screen blend, "
        "one value drawn uniformly per patch.",
    )

    def __call__(self, image: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
        return rain_streaks(
            image,
            gen,
            _uniform(gen, *self.density),
            _randint(gen, *self.length),
            _uniform(gen, *self.angle),
            _uniform(gen, *self.intensity),
        )


class HazeOp(_Op):
    """Atmospheric scattering I = J t + A (1 - t), t = exp(-beta * depth), depth a synthetic
    relative depth in [0, 1] (far at the top, smooth random variation)."""

    kind: Literal["haze"] = Field("haze", description="Selects this degradation.")
    beta: Range = Field(
        (0.6, 2.0),
        description="Scattering coefficient per unit of relative depth (larger: denser haze; "
        "t at the farthest point is exp(-beta)); one value drawn uniformly per patch.",
    )
    airlight: Range = Field(
        (0.7, 1.0),
        description="Atmospheric light A, the colour haze fades to, as an intensity 0-1 "
        "(grey: the same on every channel); one value drawn uniformly per patch.",
    )

    def __call__(self, image: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
        return haze(image, gen, _uniform(gen, *self.beta), _uniform(gen, *self.airlight))


Degradation = Annotated[
    NoiseOp | JpegOp | RandomNoiseOp | BlurOp | MotionBlurOp | RainOp | HazeOp,
    Field(discriminator="kind"),
]


def paper_ops() -> list:
    """The paper's pre-training degradations, equally likely: Gaussian noise, JPEG, random noise."""
    return [NoiseOp(), JpegOp(), RandomNoiseOp()]


def extension_ops() -> list:
    """This project's opt-in extension (not in the paper): blur, motion blur, rain, haze."""
    return [BlurOp(), MotionBlurOp(), RainOp(), HazeOp()]


class DegradationRecipe(BaseModel):
    """How a clean patch becomes a network input (configuration as data)."""

    model_config = ConfigDict(extra="forbid")

    ops: list[Degradation] = Field(
        default_factory=paper_ops,
        description="Degradations to draw from (by weight, chain times per patch), one entry "
        "per kind as below; the same kind may appear more than once with other ranges. "
        "Default: the paper's noise, jpeg and random_noise; blur, motion_blur, rain and haze "
        "are this project's extension, off unless listed here.",
    )
    chain: int = Field(
        1, ge=0, description="Degradations applied in a row, each drawn by weight (0: none)."
    )
    degrade_fraction: float = Field(
        0.5, ge=0, le=1, description="Share of blocks showing the degraded image (paper: 50 %)."
    )
    mask_ratio: float = Field(
        0.3, ge=0, le=1, description="Share of blocks zeroed, disjoint from the degraded ones."
    )
    block_size: int = Field(16, ge=1, description="Side of a masking/degradation block.")

    @model_validator(mode="after")
    def _check(self) -> DegradationRecipe:
        if self.degrade_fraction + self.mask_ratio > 1 + 1e-9:
            raise ValueError("degrade_fraction + mask_ratio cannot exceed 1")
        if self.chain and not any(op.weight > 0 for op in self.ops):
            raise ValueError("the recipe needs at least one degradation with weight > 0")
        return self


def choose_op(recipe: DegradationRecipe, gen: torch.Generator) -> _Op:
    """One degradation of ``recipe``, drawn by weight."""
    weights = torch.tensor([op.weight for op in recipe.ops], dtype=torch.float64)
    return recipe.ops[int(torch.multinomial(weights, 1, generator=gen))]


def degrade_whole(
    image: torch.Tensor, recipe: DegradationRecipe, gen: torch.Generator
) -> torch.Tensor:
    """``recipe.chain`` degradations, each drawn by weight, applied to the whole image."""
    out = image
    for _ in range(recipe.chain):
        out = choose_op(recipe, gen)(out, gen)
    return out


def apply_recipe(
    clean: torch.Tensor, recipe: DegradationRecipe, gen: torch.Generator
) -> torch.Tensor:
    """The corrupted input for ``clean`` (C x H x W in [0, 1]): degraded blocks, masked blocks."""
    _, h, w = clean.shape
    degraded = degrade_whole(clean, recipe, gen)
    block = recipe.block_size
    if recipe.degrade_fraction >= 1:
        out = degraded
        taken = None
    else:
        taken = block_mask(h, w, block, recipe.degrade_fraction, gen, exclude=None)
        where = cells_to_pixels(taken, block, h, w)
        out = torch.where(where, degraded, clean)
    if recipe.mask_ratio > 0:
        masked = block_mask(h, w, block, recipe.mask_ratio, gen, exclude=taken)
        out = out.masked_fill(cells_to_pixels(masked, block, h, w), 0.0)
    return out
