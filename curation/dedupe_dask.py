"""Near-duplicate search partitioned over a Dask cluster, for 10 M+ hashes.

The work is split by hash block: one task per (table, key range), where a table is one choice
of ``m - d`` blocks (see :mod:`curation.dedupe`) and a key range is a slice of that table's
block values (their top bits). Each pair is owned by exactly one table and lands in exactly
one key range of it (equal keys share their top bits), so the tasks' outputs are disjoint and
their union is exactly the single-process result; no shuffle or global de-duplication is
needed. The distinct hashes are broadcast to the workers once (8 bytes a hash).

:class:`DaskPairSearch` plugs this search into :func:`curation.dedupe.dedupe` (its
``pair_search``), so a build on a Dask cluster runs its global dedupe there too. ``distributed``
is imported only when a search runs, so importing this module costs nothing.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from curation.dedupe import (
    DEFAULT_CHUNK_PAIRS,
    DEFAULT_DISTANCE,
    BlockPlan,
    as_hashes,
    collapse_identical,
    expand_pairs,
    plan_blocks,
    table_pairs,
)

if TYPE_CHECKING:
    from distributed import Client


def _task(
    distinct: np.ndarray, plan: BlockPlan, table: int, part: int, parts: int, chunk_pairs: int
) -> np.ndarray:
    return table_pairs(distinct, plan, table, key_range=(part, parts), chunk_pairs=chunk_pairs)


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

    ``parts_per_table`` (a power of two) splits every table into that many key ranges, which
    bounds a task's memory to about ``1 / parts_per_table`` of the sort buffers.
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
        client.submit(_task, shared, plan, table, part, parts_per_table, chunk_pairs, pure=False)
        for table in range(len(plan.tables))
        for part in range(parts_per_table)
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
