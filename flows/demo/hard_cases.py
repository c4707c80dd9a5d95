"""Photographs of the kinds a global content gate wrongly rejects, made from real ones: shallow
depth of field, haze and mist, low key and night, sky and water. Used by the demo source (as
kept candidates: a gate regression that rejects them fails the demo) and by the gate's tests
(``tests/real_images.py``). Deterministic; pixel sizes are meant for a photograph of
~300-800 px (scikit-image's), brought to size afterwards if need be.

- **shallow depth of field**: a sharp subject (a feathered ellipse, ~25 % of the frame) over
  a strongly defocused rest, as from a fast lens;
- **haze / mist**: the atmospheric scattering model I = J t + A (1 - t), transmission 0.4-0.6
  falling with a depth-like gradient, towards a bright grey-blue airlight, fine detail kept,
  then sensor noise (the haze is in the scene, the sensor noise comes after it);
- **low key / night**: a steep tone curve (gamma ~2.4) that keeps a few lights;
- **sky / water**: more than half of the frame a smooth gradient carrying sensor noise, above
  (or below) a sharp photographic band.
"""

from __future__ import annotations

import numpy as np
from PIL import Image
from scipy import ndimage


def as_float(image: Image.Image) -> np.ndarray:
    """The image as an (H, W, 3) float32 array."""
    return np.asarray(image, dtype=np.float32)


def to_image(array: np.ndarray) -> Image.Image:
    """A float array back to an RGB image, rounded and clipped to 0..255."""
    return Image.fromarray(np.clip(np.rint(array), 0, 255).astype(np.uint8))


def gaussian(array: np.ndarray, sigma: float) -> np.ndarray:
    """Gaussian blur of an (H, W, 3) float array, per channel, edges reflected."""
    return ndimage.gaussian_filter(array, sigma=(sigma, sigma, 0), mode="reflect")


def _grain(shape: tuple[int, ...], sigma: float, seed: int) -> np.ndarray:
    """Sensor noise: mostly luma (shared by the channels), a little chroma."""
    rng = np.random.default_rng(seed)
    h, w = shape[:2]
    luma = rng.normal(0.0, sigma, (h, w, 1))
    chroma = rng.normal(0.0, 0.4 * sigma, (h, w, 3))
    return (luma + chroma).astype(np.float32)


def ellipse_mask(
    size: tuple[int, int], area: float, centre: tuple[float, float], feather: float
) -> np.ndarray:
    """A soft ellipse covering ``area`` of the frame (same aspect as the frame), centred at
    ``centre`` (fractions of width and height); 1 inside, 0 outside, a smooth ramp of
    ``feather`` (a fraction of the radius) across the border."""
    w, h = size
    scale = np.sqrt(area / np.pi)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    radius = np.sqrt(
        ((xx - centre[0] * w) / (scale * w)) ** 2 + ((yy - centre[1] * h) / (scale * h)) ** 2
    )
    ramp = np.clip((1.0 + feather / 2 - radius) / feather, 0.0, 1.0)
    return (ramp * ramp * (3 - 2 * ramp))[..., None]  # smoothstep


# ------------------------------------------------------------------------- hard cases (kept)


def shallow_dof(
    photo: Image.Image,
    *,
    area: float = 0.25,
    centre: tuple[float, float] = (0.5, 0.5),
    sigma: float = 8.0,
    grain: float = 0.0,
    seed: int = 0,
) -> Image.Image:
    """A sharp subject (a soft ellipse over ``area`` of the frame) on a strongly blurred rest:
    a fast lens focused on the subject. The blur also wipes out the photograph's own noise in
    the background; ``grain`` puts sensor noise of that sigma back there (the lens blurs the
    scene, the sensor adds its noise after it, evenly over the frame)."""
    sharp = as_float(photo)
    mask = ellipse_mask(photo.size, area, centre, feather=0.35)
    background = gaussian(sharp, sigma)
    if grain:
        background = background + _grain(background.shape, grain, seed)
    return to_image(sharp * mask + background * (1 - mask))


def haze(
    image: Image.Image,
    *,
    near: float = 0.6,
    far: float = 0.4,
    airlight: tuple[int, int, int] = (200, 210, 222),
    grain: float = 1.2,
    seed: int = 0,
) -> Image.Image:
    """Mist or haze: transmission ``far`` at the top of the frame (distant) to ``near`` at the
    bottom, with a gentle sideways tilt, towards a bright grey-blue airlight; no blur, so the
    fine detail stays (attenuated). ``grain``: the sensor noise added after the scattering."""
    photo = as_float(image)
    h, w = photo.shape[:2]
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    depth = np.clip(1.0 - yy / (h - 1) + 0.15 * (xx / (w - 1) - 0.5), 0.0, 1.0)  # 1: far
    t = (near + (far - near) * depth)[..., None]
    hazy = photo * t + np.asarray(airlight, np.float32) * (1 - t)
    if grain:
        hazy = hazy + _grain(hazy.shape, grain, seed)
    return to_image(hazy)


def low_key(
    image: Image.Image,
    *,
    gamma: float = 2.4,
    curve: str = "rgb",
    lights: int = 5,
    seed: int = 0,
) -> Image.Image:
    """A low-key / night rendering through a steep tone curve (``gamma``), plus a few small
    bright lights (lamps, windows) that keep the highlights a night scene has.

    ``curve="rgb"``: the curve on each channel (an editor's RGB curve; it also saturates the
    colours); ``"luma"``: on luma only, the colours scaled with it (hue and saturation kept, as
    an exposure change keeps them)."""
    photo = as_float(image)
    h, w = photo.shape[:2]
    if curve == "rgb":
        dark = 255.0 * (photo / 255.0) ** gamma
    elif curve == "luma":
        luma = photo @ np.asarray([0.299, 0.587, 0.114], np.float32)
        toned = 255.0 * (luma / 255.0) ** gamma
        dark = photo * (toned / np.maximum(luma, 1.0))[..., None]
    else:
        raise ValueError(curve)
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    colour = np.asarray([255, 236, 190], np.float32) * 1.15  # warm tungsten, clipping
    for _ in range(lights):
        x, y = rng.uniform(0.1 * w, 0.9 * w), rng.uniform(0.1 * h, 0.6 * h)
        radius = rng.uniform(2.5, 5.0)
        glow = np.exp(-((xx - x) ** 2 + (yy - y) ** 2) / (2 * radius**2))[..., None]
        dark = dark * (1 - glow) + colour * glow
    return to_image(dark)


def _sky(w: int, h: int, grain: float, seed: int) -> np.ndarray:
    """A clear sky: deep blue at the zenith to pale at the horizon, with sensor noise."""
    t = np.linspace(0.0, 1.0, h, dtype=np.float32)[:, None, None] ** 1.4
    zenith, horizon = (
        np.asarray([58, 108, 186], np.float32),
        np.asarray([178, 202, 228], np.float32),
    )
    sky = zenith + (horizon - zenith) * t + np.zeros((1, w, 1), np.float32)
    return sky + _grain(sky.shape, grain, seed)


def sky_over(
    image: Image.Image, *, sky_share: float = 0.58, grain: float = 1.8, seed: int = 1
) -> Image.Image:
    """The upper ``sky_share`` of the frame a smooth sky, over the photograph's own lower part
    (a sharp photographic band); the horizon is soft and slightly uneven."""
    photo = as_float(image)
    h, w = photo.shape[:2]
    sky = _sky(w, h, grain, seed)
    x = np.arange(w, dtype=np.float32)
    rng = np.random.default_rng(seed)
    skyline = sky_share * h + 4.0 * np.sin(x / w * 2 * np.pi * rng.uniform(1.5, 3.0))
    yy = np.arange(h, dtype=np.float32)[:, None]
    land = np.clip((yy - skyline[None, :]) / 3.0 + 0.5, 0.0, 1.0)[..., None]
    return to_image(sky * (1 - land) + photo * land)


def water_below(
    image: Image.Image, *, water_share: float = 0.55, grain: float = 1.6, seed: int = 2
) -> Image.Image:
    """The photograph's upper part as a sharp band above calm water: a dark-teal gradient with
    faint horizontal ripples and sensor noise over the lower ``water_share``."""
    photo = as_float(image)
    h, w = photo.shape[:2]
    rng = np.random.default_rng(seed)
    shore = int(round((1 - water_share) * h))
    t = np.linspace(0.0, 1.0, h - shore, dtype=np.float32)[:, None, None]
    far, near = np.asarray([96, 134, 150], np.float32), np.asarray([30, 70, 84], np.float32)
    water = far + (near - far) * t + np.zeros((1, w, 1), np.float32)
    ripples = ndimage.gaussian_filter(rng.standard_normal((h - shore, w)), sigma=(1.2, 14.0))
    water += (3.0 * ripples / (ripples.std() + 1e-6))[..., None]
    water += _grain(water.shape, grain, seed + 1)
    out = photo.copy()
    out[shore:] = water
    band = slice(max(0, shore - 2), min(h, shore + 2))  # a soft shoreline
    out[band] = gaussian(out, 1.0)[band]
    return to_image(out)
