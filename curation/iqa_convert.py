"""Convert the classic NIQE and BRISQUE parameter files into the formats pyiqa reads.

pyiqa downloads its NIQE/BRISQUE parameters at first use; a machine without internet cannot.
The same parameters are public (see ``shared/reference/iqa/``), in other formats:

- ``niqe_pris_params.npz`` (BasicSR) -> ``niqe_pris_params.mat`` with the keys pyiqa's ``NIQE``
  loads via ``scipy.io.loadmat``: ``mu_prisparam`` (1x36) and ``cov_prisparam`` (36x36).
  pyiqa builds its own 7x7 Gaussian window (``fspecial(7, 7/6)``); the conversion checks that
  the window shipped with the parameters is that one, so the model is used as it was fitted.
- ``brisque_allmodel`` (libsvm text) -> ``brisque_svm_weights.pt``: ``torch.save`` of the tuple
  ``(sv_coef, sv)``, float32, shapes ``(n_sv,)`` and ``(n_sv, 36)``, which pyiqa's ``BRISQUE``
  loads. pyiqa hard-codes the model's rbf ``gamma`` (0.05) and ``rho`` (-153.591) for its
  "original" version, so the conversion refuses a model whose header says otherwise.

Usage: ``python -m curation.iqa_convert SRC_DIR DEST_DIR``.
"""

from __future__ import annotations

import io
import math
import sys
from pathlib import Path

import numpy as np

NIQE_SOURCE = "niqe_pris_params.npz"
BRISQUE_SOURCE = "brisque_allmodel"
NIQE_TARGET = "niqe_pris_params.mat"
BRISQUE_TARGET = "brisque_svm_weights.pt"

NIQE_FEATURES = 36
BRISQUE_FEATURES = 36
#: The constants pyiqa's BRISQUE (version "original") uses instead of reading them from a file.
PYIQA_BRISQUE_GAMMA = 0.05
PYIQA_BRISQUE_RHO = -153.591

# A .mat v5 header is 116 bytes of text; scipy writes the creation time there. A fixed text keeps
# the converted file byte-identical from run to run.
_MAT_HEADER_TEXT = b"MATLAB 5.0 MAT-file, written by curation.iqa_convert"


class IqaConversionError(ValueError):
    """A source parameter file that is missing, malformed or not the expected model."""


def _matlab_gaussian(size: int, sigma: float) -> np.ndarray:
    """MATLAB's ``fspecial('gaussian', size, sigma)``, the window NIQE's features are built on."""
    half = (size - 1) / 2.0
    y, x = np.ogrid[-half : half + 1, -half : half + 1]
    window = np.exp(-(x * x + y * y) / (2.0 * sigma * sigma))
    window[window < np.finfo(window.dtype).eps * window.max()] = 0
    return window / window.sum()


def convert_niqe(source: Path, target: Path) -> None:
    """Write NIQE's pristine Gaussian from BasicSR's ``.npz`` as the ``.mat`` pyiqa reads."""
    import scipy.io

    try:
        with np.load(source) as npz:
            params = {name: np.asarray(npz[name], dtype=np.float64) for name in npz.files}
    except (OSError, ValueError) as exc:
        raise IqaConversionError(f"{source}: not a readable .npz file ({exc})") from exc
    for name in ("mu_pris_param", "cov_pris_param", "gaussian_window"):
        if name not in params:
            raise IqaConversionError(f"{source}: missing array {name!r}")
    mu = params["mu_pris_param"].reshape(1, -1)
    cov = params["cov_pris_param"]
    if mu.shape != (1, NIQE_FEATURES) or cov.shape != (NIQE_FEATURES, NIQE_FEATURES):
        raise IqaConversionError(
            f"{source}: expected mu 1x{NIQE_FEATURES} and cov {NIQE_FEATURES}x{NIQE_FEATURES}, "
            f"got {mu.shape} and {cov.shape}"
        )
    if not np.allclose(cov, cov.T, rtol=0, atol=1e-9):
        raise IqaConversionError(f"{source}: cov_pris_param is not symmetric")
    window = params["gaussian_window"]
    if window.shape != (7, 7) or not np.allclose(window, _matlab_gaussian(7, 7 / 6), atol=1e-6):
        raise IqaConversionError(
            f"{source}: gaussian_window is not the 7x7 sigma 7/6 window pyiqa's NIQE uses"
        )
    buffer = io.BytesIO()
    scipy.io.savemat(buffer, {"mu_prisparam": mu, "cov_prisparam": cov, "gaussian_window": window})
    data = bytearray(buffer.getvalue())
    data[:116] = _MAT_HEADER_TEXT.ljust(116)
    _write_atomic(target, bytes(data))


def parse_libsvm_model(source: Path) -> tuple[dict[str, str], np.ndarray, np.ndarray]:
    """Read a libsvm text model: (header, sv_coef (n,), support vectors (n, features))."""
    try:
        lines = source.read_text(encoding="ascii").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise IqaConversionError(f"{source}: not a readable libsvm text model ({exc})") from exc
    header: dict[str, str] = {}
    body_start = None
    for number, line in enumerate(lines):
        if line.strip() == "SV":
            body_start = number + 1
            break
        name, _, value = line.strip().partition(" ")
        header[name] = value
    if body_start is None:
        raise IqaConversionError(f"{source}: no 'SV' line, not a libsvm model")
    coefs: list[float] = []
    vectors = []
    for number, line in enumerate(lines[body_start:], start=body_start + 1):
        fields = line.split()
        if not fields:
            continue
        vector = np.zeros(BRISQUE_FEATURES, dtype=np.float64)  # libsvm omits zero features
        try:
            coefs.append(float(fields[0]))
            for pair in fields[1:]:
                index, value = pair.split(":")
                vector[int(index) - 1] = float(value)
        except (ValueError, IndexError) as exc:
            raise IqaConversionError(f"{source}:{number}: bad support vector ({exc})") from exc
        vectors.append(vector)
    return header, np.asarray(coefs, dtype=np.float64), np.stack(vectors) if vectors else None


def convert_brisque(source: Path, target: Path) -> None:
    """Write BRISQUE's libsvm model as the ``(sv_coef, sv)`` torch file pyiqa reads."""
    import torch

    header, sv_coef, sv = parse_libsvm_model(source)
    expected = {"svm_type": "epsilon_svr", "kernel_type": "rbf"}
    for name, value in expected.items():
        if header.get(name) != value:
            raise IqaConversionError(f"{source}: {name} is {header.get(name)!r}, not {value!r}")
    try:
        total, gamma, rho = int(header["total_sv"]), float(header["gamma"]), float(header["rho"])
    except (KeyError, ValueError) as exc:
        raise IqaConversionError(f"{source}: header lacks total_sv/gamma/rho ({exc})") from exc
    if sv is None or len(sv_coef) != total:
        raise IqaConversionError(
            f"{source}: header says {total} support vectors, found {len(sv_coef)}"
        )
    if not (math.isclose(gamma, PYIQA_BRISQUE_GAMMA) and math.isclose(rho, PYIQA_BRISQUE_RHO)):
        raise IqaConversionError(
            f"{source}: gamma {gamma} / rho {rho} differ from the constants pyiqa's BRISQUE uses "
            f"({PYIQA_BRISQUE_GAMMA} / {PYIQA_BRISQUE_RHO}); the model would be scored wrongly"
        )
    payload = (
        torch.from_numpy(sv_coef.astype(np.float32)),
        torch.from_numpy(sv.astype(np.float32)),
    )
    buffer = io.BytesIO()
    torch.save(payload, buffer)
    _write_atomic(target, buffer.getvalue())


def _write_atomic(target: Path, data: bytes) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(target.name + ".partial")
    partial.write_bytes(data)
    partial.replace(target)


def convert_all(source_dir: Path, dest_dir: Path) -> list[Path]:
    """Convert both models found in ``source_dir``; return the files written in ``dest_dir``."""
    sources = {NIQE_SOURCE: NIQE_TARGET, BRISQUE_SOURCE: BRISQUE_TARGET}
    for name in sources:
        if not (source_dir / name).is_file():
            raise FileNotFoundError(f"{source_dir / name}: IQA parameter file not found")
    convert_niqe(source_dir / NIQE_SOURCE, dest_dir / NIQE_TARGET)
    convert_brisque(source_dir / BRISQUE_SOURCE, dest_dir / BRISQUE_TARGET)
    return [dest_dir / NIQE_TARGET, dest_dir / BRISQUE_TARGET]


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 2:
        print("usage: python -m curation.iqa_convert SRC_DIR DEST_DIR", file=sys.stderr)
        return 2
    try:
        written = convert_all(Path(args[0]), Path(args[1]))
    except (FileNotFoundError, IqaConversionError) as exc:
        print(f"iqa_convert: error: {exc}", file=sys.stderr)
        return 1
    for path in written:
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
