"""DyNet's depths ("variants"): the named ones, and the one parser of variant text.

A variant is ``"L"``, ``"S"`` or four block repeat counts, one per encoder/decoder level.
``mird restore``, ``mird evaluate`` and the training config all read the same spellings
through :func:`parse_variant` / :func:`resolve_variant`, and print them with
:func:`variant_label`.
"""

from __future__ import annotations

import re

VARIANTS: dict[str, tuple[int, int, int, int]] = {"L": (4, 6, 6, 8), "S": (2, 3, 3, 4)}

Variant = str | tuple[int, int, int, int]


class InvalidVariantError(ValueError):
    """A variant that is neither a known name nor a tuple of four positive repeat counts."""


def resolve_variant(variant: str | tuple[int, ...] | list[int]) -> tuple[int, int, int, int]:
    """Turn ``"L"``, ``"S"`` (any case) or four positive ints into repeat counts."""
    if isinstance(variant, str):
        key = variant.strip().upper().removeprefix("DYNET-")
        if key in VARIANTS:
            return VARIANTS[key]
        raise InvalidVariantError(
            f"unknown DyNet variant {variant!r}: use 'L', 'S' or four repeat counts like 2,3,3,4"
        )
    repeats = tuple(variant)
    if len(repeats) != 4 or not all(
        isinstance(n, int) and not isinstance(n, bool) and n >= 1 for n in repeats
    ):
        raise InvalidVariantError(
            f"a DyNet variant needs four positive integer repeat counts, got {variant!r}"
        )
    return repeats  # type: ignore[return-value]


def parse_variant(text: str | None, option: str = "--variant") -> Variant | None:
    """Variant text as a variant: ``L``/``S``/``DyNet-S`` (any case) -> ``"L"``/``"S"``; four
    repeat counts (``2,3,3,4``, ``(2, 3, 3, 4)``, ``2 3 3 4``) -> a checked tuple; blank -> None.

    Anything else raises :class:`InvalidVariantError`; ``option`` names the source in the
    message when the text is not made of integers."""
    if text is None or not text.strip():
        return None
    key = text.strip().upper().removeprefix("DYNET-")
    if key in VARIANTS:
        return key
    parts = [part for part in re.split(r"[,\s]+", text.strip().strip("()[] ")) if part]
    if len(parts) == 1:
        return resolve_variant(text)  # a single word: an unknown name, named in the error
    try:
        repeats = tuple(int(part) for part in parts)
    except ValueError:
        raise InvalidVariantError(
            f"{option} {text!r}: use L, S or four repeat counts like 2,3,3,4"
        ) from None
    return resolve_variant(repeats)


def variant_label(variant: str | tuple[int, ...] | None) -> str | None:
    """A variant as text: names as they are, repeat counts as ``4,6,6,8``."""
    if variant is None or isinstance(variant, str):
        return variant
    return ",".join(str(n) for n in variant)
