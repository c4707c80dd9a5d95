"""Copies a build meets again, remembered so that they cost little: the digests of the parent
version's samples (a copy of one is rejected before any decode) and the memo of the records
this process has hashed and scored (a byte-identical copy reuses their outcome).
"""

from __future__ import annotations

import functools
import threading
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from storage.versions import Dataset

#: records a memo of prepared copies holds per worker process (``dedupe.copies_memo_entries``)
DEFAULT_MEMO_ENTRIES = 50_000


class PublishedDigests:
    """sha256 -> key of the samples a published version holds, compact (sorted 32-byte
    digests and their keys as numpy arrays: ~50 bytes a sample, 2 M samples ~100 MB).

    Rows without a phash are left out, as :func:`curation.build.find_duplicates` leaves them
    out of dedupe's previous index. When several samples share bytes, the smallest key is the
    one named (the one dedupe's keeper policy would name)."""

    def __init__(self, table: pa.Table) -> None:
        table = table.filter(pc.is_valid(table.column("phash")))
        digests = np.array(
            [bytes.fromhex(h) for h in table.column("sha256").to_pylist()], dtype="S32"
        )
        keys = np.array(table.column("key").to_pylist(), dtype=object)
        order = np.lexsort((keys.astype(str), digests)) if len(keys) else np.arange(0)
        self._digests = digests[order]
        self._keys = keys[order]

    def __len__(self) -> int:
        return len(self._digests)

    def key_of(self, sha256: str) -> str | None:
        digest = np.array(bytes.fromhex(sha256), dtype="S32")
        at = int(np.searchsorted(self._digests, digest))
        if at < len(self._digests) and self._digests[at] == digest:
            return str(self._keys[at])
        return None


@functools.lru_cache(maxsize=2)
def published_digests(root: str, name: str, version: str) -> PublishedDigests:
    """One index per process and parent version (a build's partitions share it)."""
    manifest = Dataset(root, name).version(version).manifest()
    return PublishedDigests(manifest.select(["key", "sha256", "phash"]))


class _Pending:
    """A memo entry: set once by the thread that prepares the first copy of some bytes."""

    def __init__(self) -> None:
        self.ready = threading.Event()
        self.value: tuple[dict[str, Any], dict[str, float] | None, tuple | None] | None = None


_ALWAYS_READY = threading.Event()
_ALWAYS_READY.set()


class _Settled:
    """A memo entry whose first copy is done (same interface as :class:`_Pending`)."""

    __slots__ = ("value",)
    ready = _ALWAYS_READY

    def __init__(self, value) -> None:  # noqa: ANN001 - the entry's value tuple
        self.value = value


class PreparedMemo:
    """sha256 -> (hashes, scores, reject) of the records a build has prepared in this process,
    so that a byte-identical copy is neither hashed nor scored again (identical bytes decode
    to identical pixels, hence identical hashes, scores and verdict). A copy that arrives
    while the first is being scored waits for it. Bounded (oldest entries dropped): a copy
    seen after that is scored again, and global dedupe still removes it."""

    def __init__(self, capacity: int = DEFAULT_MEMO_ENTRIES) -> None:
        self.capacity = capacity
        self._lock = threading.Lock()
        self._entries: dict[str, _Pending] = {}

    def claim(self, sha256: str) -> tuple[bool, _Pending]:
        """(True, entry) for the first copy (its thread must ``settle`` the entry), else
        (False, entry) of the copy that came first."""
        with self._lock:
            entry = self._entries.get(sha256)
            if entry is not None:
                return False, entry
            entry = self._entries[sha256] = _Pending()
            while len(self._entries) > self.capacity:
                del self._entries[next(iter(self._entries))]
            return True, entry

    def settle(self, sha256: str, entry: _Pending, value) -> None:  # noqa: ANN001 - the tuple
        """Publish the first copy's outcome; the entry kept is then a slotted object without
        an Event of its own (a quarter of the size: the memo is bounded, but it is in every
        worker, and a threading.Event is about a kilobyte)."""
        entry.value = value
        entry.ready.set()
        with self._lock:
            if self._entries.get(sha256) is entry:
                self._entries[sha256] = _Settled(value)  # type: ignore[assignment]


_MEMO_LOCK = threading.Lock()
_MEMOS: dict[str, PreparedMemo] = {}


def prepared_memo(build_id: str, capacity: int = DEFAULT_MEMO_ENTRIES) -> PreparedMemo:
    """The memo of one build in this process (its partitions share it); the last few kept.
    ``capacity`` applies when the memo is made (the build's first partition here)."""
    with _MEMO_LOCK:
        memo = _MEMOS.pop(build_id, None) or PreparedMemo(capacity)
        _MEMOS[build_id] = memo
        while len(_MEMOS) > 2:
            del _MEMOS[next(iter(_MEMOS))]
        return memo
