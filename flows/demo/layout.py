"""Generated all-in-one data in the official layout, for the demo and for trying the tools.

The real training and test sets (BSD400 + WED, Rain100L, RESIDE OTS/SOTS) cannot be
downloaded here, so the demo writes small stand-ins with the same folder and file names:
clean crops of real photographs (scikit-image's), with rain streaks and haze synthesised by
``dynet.degrade`` (noise is added by the trainer and by the evaluation protocol, as for the
real sets). Scores on them say nothing about the paper's.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from dynet.degrade import haze, rain_streaks
from dynet.imaging import to_tensor, to_uint8_image

#: Colour photographs bundled with scikit-image, cropped into clean images.
SKIMAGE_PHOTOS = ("astronaut", "coffee", "chelsea", "rocket", "immunohistochemistry", "retina")


@dataclass(frozen=True)
class DemoLayout:
    """Where the generated sets are: ``train`` for ``FinetuneConfig.data.root``, ``root`` for
    the evaluation (it holds ``test/``), and the denoising list file."""

    root: Path
    train: Path
    test: Path
    denoise_list: Path
    counts: dict[str, int]


def random_crops(
    photos: list[np.ndarray],
    count: int,
    size: int,
    seed: int = 0,
    share: tuple[float, float] = (0.5, 0.9),
) -> Iterator[np.ndarray]:
    """``count`` ``size`` x ``size`` random square crops (``share`` of the short side,
    randomly mirrored, resized) of ``photos`` (RGB uint8 arrays), taken in turn."""
    rng = np.random.default_rng(seed)
    for i in range(count):
        photo = photos[i % len(photos)]
        h, w = photo.shape[:2]
        side = int(min(h, w) * rng.uniform(*share))
        top, left = int(rng.integers(0, h - side + 1)), int(rng.integers(0, w - side + 1))
        crop = photo[top : top + side, left : left + side]
        if rng.random() < 0.5:
            crop = crop[:, ::-1]
        image = Image.fromarray(np.ascontiguousarray(crop)).resize((size, size), Image.LANCZOS)
        yield np.asarray(image)


def clean_images(count: int, size: int, seed: int = 0) -> Iterator[np.ndarray]:
    """``count`` clean ``size`` x ``size`` RGB uint8 images: random crops (50-90 % of the
    short side, randomly mirrored) of scikit-image's photographs, taken in turn."""
    import skimage.data

    photos = [np.asarray(getattr(skimage.data, name)())[..., :3] for name in SKIMAGE_PHOTOS]
    return random_crops(photos, count, size, seed)


def add_rain(image: np.ndarray, seed: int) -> np.ndarray:
    gen = torch.Generator().manual_seed(seed)
    angle = float(torch.empty(1).uniform_(70, 110, generator=gen))  # near vertical, as RainOp
    return to_uint8_image(rain_streaks(to_tensor(image), gen, 0.004, 15, angle, 0.5))


def add_haze(image: np.ndarray, seed: int, beta: float, airlight: float) -> np.ndarray:
    gen = torch.Generator().manual_seed(seed)
    return to_uint8_image(haze(to_tensor(image), gen, beta, airlight))


def _save(image: np.ndarray, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(image).save(path)


def _write_train(train: Path, images: list[np.ndarray], seed: int) -> tuple[list[str], dict]:
    """Denoise/ gets a third of the images, Derain/{rainy,gt} and Dehaze/ a third each."""
    thirds = np.array_split(np.arange(len(images)), 3)
    denoise_names = []
    for i in thirds[0]:
        denoise_names.append(f"demo_{i:04d}.png")
        _save(images[i], train / "Denoise" / denoise_names[-1])
    for n, i in enumerate(thirds[1], start=1):
        _save(images[i], train / "Derain" / "gt" / f"norain-{n}.png")
        _save(add_rain(images[i], seed + int(i)), train / "Derain" / "rainy" / f"rain-{n}.png")
    for n, i in enumerate(thirds[2], start=1):
        beta, airlight = (0.8, 0.8) if n % 2 else (1.2, 0.9)
        _save(images[i], train / "Dehaze" / "original" / f"{n:04d}.png")
        hazy = add_haze(images[i], seed + int(i), beta, airlight)
        _save(hazy, train / "Dehaze" / "synthetic" / "part1" / f"{n:04d}_{beta}_{airlight}.png")
    counts = {"denoise": len(thirds[0]), "derain": len(thirds[1]), "dehaze": len(thirds[2])}
    return denoise_names, counts


def _write_test(test: Path, images: list[np.ndarray], seed: int) -> dict[str, int]:
    """test/denoise/bsd68, test/derain/Rain100L/{input,target}, test/dehaze/{input,target}."""
    thirds = np.array_split(np.arange(len(images)), 3)
    for n, i in enumerate(thirds[0], start=1):
        _save(images[i], test / "denoise" / "bsd68" / f"{n:03d}.png")
    rain100l = test / "derain" / "Rain100L"
    for n, i in enumerate(thirds[1], start=1):
        _save(images[i], rain100l / "target" / f"norain-{n:03d}.png")
        _save(add_rain(images[i], seed + int(i)), rain100l / "input" / f"rain-{n:03d}.png")
    for n, i in enumerate(thirds[2], start=1):
        _save(images[i], test / "dehaze" / "target" / f"{n:04d}.png")
        hazy = add_haze(images[i], seed + int(i), 1.0, 0.85)
        _save(hazy, test / "dehaze" / "input" / f"{n:04d}_1.0_0.85.png")
    return {"denoise": len(thirds[0]), "derain": len(thirds[1]), "dehaze": len(thirds[2])}


def write_demo_layout(
    root: Path,
    train_images: int = 24,
    test_images: int = 9,
    train_size: int = 160,
    test_size: int = 128,
    seed: int = 0,
) -> DemoLayout:
    """Write ``root/Train`` (fine-tuning) and ``root/test`` (evaluation) in the official layout.

    Training and test images are disjoint draws. Raises ``FileExistsError`` when ``root``
    already holds a layout, so real data is never overwritten.
    """
    root = Path(root)
    if (root / "Train").exists() or (root / "test").exists():
        raise FileExistsError(f"{root} already holds Train/ or test/; choose an empty folder")
    if train_images < 3 or test_images < 3:
        raise ValueError("need at least 3 training and 3 test images (one per task)")
    images = list(clean_images(train_images + test_images, max(train_size, test_size), seed))
    train_set = [_resize(image, train_size) for image in images[:train_images]]
    test_set = [_resize(image, test_size) for image in images[train_images:]]
    return write_layout(root, train_set, test_set, seed)


def write_layout(
    root: Path, train_set: list[np.ndarray], test_set: list[np.ndarray], seed: int = 0
) -> DemoLayout:
    """The official layout from given clean images (a third per task in each set): what
    :func:`write_demo_layout` writes, for callers that choose their own images."""
    root = Path(root)
    names, train_counts = _write_train(root / "Train", train_set, seed)
    denoise_list = root / "denoise.txt"
    denoise_list.write_text("\n".join(names) + "\n")
    test_counts = _write_test(root / "test", test_set, seed + 50_000)
    counts = {f"train_{k}": v for k, v in train_counts.items()}
    counts |= {f"test_{k}": v for k, v in test_counts.items()}
    return DemoLayout(root, root / "Train", root / "test", denoise_list, counts)


def _resize(image: np.ndarray, size: int) -> np.ndarray:
    if image.shape[0] == size and image.shape[1] == size:
        return image
    return np.asarray(Image.fromarray(image).resize((size, size), Image.LANCZOS))
