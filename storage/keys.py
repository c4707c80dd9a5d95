"""Sample keys: WebDataset splits member names at the first dot, so keys carry none."""

from __future__ import annotations

import re

from storage.errors import InvalidKeyError

_KEY_RE = re.compile(r"^[A-Za-z0-9_-]{1,200}$")


def validate_key(key: str) -> str:
    """Return ``key`` if it is usable as a WebDataset key, else raise InvalidKeyError."""
    if not isinstance(key, str) or not _KEY_RE.match(key):
        raise InvalidKeyError(
            f"invalid sample key {key!r}: use 1-200 characters of A-Z a-z 0-9 _ - "
            "(no dot, slash or space)"
        )
    return key


class KeyRegistry:
    """Remembers the keys of one version so a duplicate is refused before it is written."""

    def __init__(self) -> None:
        self._seen: set[str] = set()

    def add(self, key: str) -> None:
        validate_key(key)
        if key in self._seen:
            raise InvalidKeyError(f"duplicate sample key {key!r} in one dataset version")
        self._seen.add(key)

    def __len__(self) -> int:
        return len(self._seen)
