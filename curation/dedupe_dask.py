"""Near-duplicate search partitioned over a Dask cluster, for 10 M+ hashes.

The work is split as :func:`curation.near_pairs.first_block_pairs` splits it: one task per
(first block, key range), where the task searches every table whose first block is that block
(a table is one choice of ``m - d`` blocks, see :mod:`curation.near_pairs`) for the block
values in its key range (a slice of the block's top bits). Each pair is owned by exactly one
table and lands in exactly one key range of it (equal keys share their top bits), so the
tasks' outputs are disjoint and their union is exactly the single-process result; no shuffle
or global de-duplication is needed. The distinct hashes are broadcast to the workers once
(8 bytes a hash).

:class:`DaskPairSearch` plugs this search into :func:`curation.dedupe.dedupe` (its
``pair_search``), so a build on a Dask cluster runs its global dedupe there too. ``distributed``
is imported only when a search runs, so importing this module costs nothing.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from curation.near_pairs import (
    DEFAULT_CHUNK_PAIRS,
    DEFAULT_DISTANCE,
    BlockPlan,
    as_hashes,
    collapse_identical,
    expand_pairs,
    first_block_pairs,
    plan_blocks,
    search_units,
)

if TYPE_CHECKING:
    from distributed import Client


def _task(
    distinct: np.ndarray, plan: BlockPlan, first: int, part: int, parts: int, chunk_pairs: int
) -> np.ndarray:
    return first_block_pairs(
        distinct, plan, first, key_range=(part, parts), chunk_pairs=chunk_pairs
    )


def near_duplicate_pairs_dask(
    hashes: Any,
    client: Client,
    d: int = DEFAULT_DISTANCE,
    *,
    m: int | None = None,
    parts_per_table: int = 1,
    chunk_pairs: int = DEFAULT_CHUNK_PAIRS,
) -> np.ndarray:
    """Same pairs as :func:`curation.dedupe.near_duplicate_pairs`, computed on ``client``.

    ``parts_per_table`` (a power of two) splits the tables of every first block into that
    many key ranges, which bounds a task's memory to about ``1 / parts_per_table`` of the sort
    buffer.
    """
    from distributed import as_completed

    if parts_per_table < 1 or parts_per_table & (parts_per_table - 1):
        raise ValueError(f"parts_per_table must be a power of two, got {parts_per_table}")
    groups = collapse_identical(as_hashes(hashes))
    plan = plan_blocks(len(groups.distinct), d, m)
    if d == 0 or len(groups.distinct) < 2:
        return expand_pairs(np.empty((0, 2), dtype=np.int64), groups, chunk_pairs)
    # hash=False: a unique key per call. With content hashing, a second call on the same hashes
    # reuses the key while the first call's release is still in flight, and the scheduler
    # then drops the data under the new call's tasks ("lost dependencies").
    [shared] = client.scatter([groups.distinct], broadcast=True, hash=False)
    futures = [
        client.submit(_task, shared, plan, first, part, parts, chunk_pairs, pure=False)
        for first, part, parts in search_units(plan, parts_per_table)
    ]
    found = []
    for future in as_completed(futures, loop=client.loop):  # not the default client
        found.append(future.result())
        future.release()
    value_pairs = np.concatenate(found) if found else np.empty((0, 2), dtype=np.int64)
    return expand_pairs(value_pairs, groups, chunk_pairs)


@dataclass(frozen=True)
class DaskPairSearch:
    """A :data:`curation.dedupe.PairSearch` on the Dask scheduler at ``address``.

    Each call connects its own client and closes it before returning, so nothing stays open
    between searches and the object is a plain value (the cluster's owner closes the cluster).
    """

    backend: ClassVar[str] = "dask"  # recorded in a build's stats.json as dedupe_backend

    address: str
    parts_per_table: int = 1
    connect_timeout_s: float = 60.0

    def __call__(self, hashes: np.ndarray, d: int) -> np.ndarray:
        from distributed import Client

        with Client(self.address, timeout=self.connect_timeout_s, set_as_default=False) as client:
            return near_duplicate_pairs_dask(
                hashes, client, d, parts_per_table=self.parts_per_table
            )

    def __str__(self) -> str:
        return f"the Dask cluster at {self.address}"
