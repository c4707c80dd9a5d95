"""Exact and near-duplicate removal over 64-bit perceptual hashes.

The pair search and the 256-bit confirmation of pairs live in :mod:`curation.near_pairs`
(re-exported here: :func:`near_duplicate_pairs`, :func:`plan_blocks`, ...); this module turns
the pairs into kept samples and rejects (the rows of ``storage.schemas.REJECTS_SCHEMA``).

Dedupe (:func:`dedupe`): byte-identical samples (sha256) collapse first, then the remaining
representatives are searched, pairs become clusters (connected components, i.e. union-find),
and each cluster keeps one sample. Keeper policy, in order:

1. samples of the previous published version (they are published and always kept);
2. the highest quality score (higher is better; pass ``-niqe`` for lower-is-better metrics;
   NaN ranks last);
3. the larger resolution ``width * height``;
4. the smallest key (code-point order), which makes the choice deterministic.

Input is one Arrow table of candidates (:func:`dedupe`; :func:`dedupe_columns` builds it
from loose columns). Every dropped candidate gets a reject whose detail is a kept key:
``duplicate_of`` when it is byte-identical to a kept sample, ``near_duplicate_of`` otherwise
(the cluster's keeper, which may be a transitive rather than a direct near-duplicate).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

from curation.near_pairs import (  # noqa: F401 - re-exported: callers import them from here
    DEFAULT_CHUNK_PAIRS,
    DEFAULT_DISTANCE,
    HASH_BITS,
    MAX_DISTANCE,
    BlockPlan,
    DedupeError,
    IdenticalGroups,
    as_hashes,
    brute_force_pairs,
    collapse_identical,
    confirmed_pairs,
    distinct_pairs,
    expand_pairs,
    first_block_pairs,
    long_hash_words,
    near_duplicate_pairs,
    plan_blocks,
    table_pairs,
)
from curation.reasons import code
from storage.schemas import REJECTS_SCHEMA

# 256-bit phash distance that confirms a 64-bit match: resized, q60 and 2 %-cropped copies of
# scikit-image's photos measured 0..22, distinct photos 108 and more
DEFAULT_VERIFY_DISTANCE = 40
STAGE = "dedupe"
REASON_DUPLICATE = code("duplicate_of", STAGE)
REASON_NEAR_DUPLICATE = code("near_duplicate_of", STAGE)

#: A pair search: (uint64 hashes, distance d) -> every index pair (i, j), i < j, within d,
#: shape (P, 2), in any order; :func:`near_duplicate_pairs` (this process) or
#: :class:`curation.dedupe_dask.DaskPairSearch` (a Dask cluster).
PairSearch = Callable[[np.ndarray, int], np.ndarray]


def clusters(n: int, pairs: np.ndarray) -> np.ndarray:
    """Cluster label of each of ``n`` items: the connected components of the pair graph."""
    if n == 0:
        return np.empty(0, dtype=np.int64)
    graph = coo_matrix(
        (np.ones(len(pairs), dtype=np.int8), (pairs[:, 0], pairs[:, 1])), shape=(n, n)
    )
    _, labels = connected_components(graph.tocsr(), directed=False)
    return labels.astype(np.int64)


@dataclass(frozen=True)
class DedupeResult:
    keys: pa.Array  # the candidates' keys, in input order
    keep: np.ndarray  # bool, aligned with keys
    rejects: pa.Table  # storage.schemas.REJECTS_SCHEMA, in candidate order
    pairs: int  # near-duplicate pairs among byte-distinct samples, after verification

    def kept_keys(self) -> list[str]:
        return self.keys.filter(pa.array(self.keep)).to_pylist()


def _column(table: pa.Table, name: str, what: str) -> pa.Array:
    if name not in table.column_names:
        raise DedupeError(f"{what} lacks column {name!r}")
    return table.column(name).combine_chunks()


def _strings(table: pa.Table, name: str, what: str) -> pa.Array:
    values = _column(table, name, what)
    if values.null_count:
        raise DedupeError(f"{name} of the {what} holds nulls")
    return values.cast(pa.string())


def _floats(table: pa.Table, name: str, fill: float) -> np.ndarray:
    """A numeric column as float64 (nulls as NaN), or ``fill`` everywhere when absent."""
    if name not in table.column_names:
        return np.full(table.num_rows, fill, dtype=np.float64)
    values = table.column(name).cast(pa.float64()).to_numpy(zero_copy_only=False)
    return values.astype(np.float64)


@dataclass(frozen=True)
class _KeeperPolicy:
    """Ranks items: previous first, then quality desc (NaN last), area desc, key asc."""

    keys: pa.Array
    is_previous: np.ndarray
    quality: np.ndarray  # NaN already mapped to -inf, previous samples to +inf
    area: np.ndarray

    def order(self, items: np.ndarray) -> np.ndarray:
        """Positions into ``items``, best first."""
        key_rank = pc.rank(self.keys.take(pa.array(items)), sort_keys="ascending").to_numpy()
        return np.lexsort(
            (key_rank, -self.area[items], -self.quality[items], ~self.is_previous[items])
        )

    def best_per_group(self, group: np.ndarray, items: np.ndarray) -> np.ndarray:
        """For group ids 0..G-1 (``group`` aligned with ``items``), each group's best item."""
        sizes = np.bincount(group)
        best = np.full(len(sizes), -1, dtype=np.int64)
        alone = sizes[group] == 1
        best[group[alone]] = items[alone]
        # only members of groups with several items need ranking (a small share, usually)
        contested_items, contested_group = items[~alone], group[~alone]
        if len(contested_items):
            order = self.order(contested_items)
            rank = np.empty(len(order), dtype=np.int64)
            rank[order] = np.arange(len(order))
            best_rank = np.full(len(sizes), len(order), dtype=np.int64)
            np.minimum.at(best_rank, contested_group, rank)
            shared = np.flatnonzero(sizes > 1)
            best[shared] = contested_items[order[best_rank[shared]]]
        return best


def dedupe(
    candidates: pa.Table,
    previous: pa.Table | None = None,
    *,
    d: int = DEFAULT_DISTANCE,
    m: int | None = None,
    verify_distance: int = DEFAULT_VERIFY_DISTANCE,
    pair_search: PairSearch | None = None,
) -> DedupeResult:
    """Drop byte-identical and near-duplicate candidates; keep one per cluster (module doc).

    ``candidates``: one row per candidate, columns ``key``, ``sha256`` and ``phash`` (uint64,
    or int64 read bit for bit), and optionally ``quality`` (higher is better; NaN or null ranks
    last), ``width`` and ``height``, ``phash256`` (32 bytes, :func:`curation.hashing.phash256`),
    ``url`` and ``source`` (copied into the rejects).

    ``previous`` is the previous published version's index (``key``, ``phash``, optionally
    ``sha256`` and ``phash256``); its samples are never re-hashed and always kept, and
    candidates that duplicate them are dropped.

    When the candidates carry ``phash256``, a 64-bit match is confirmed only if the 256-bit
    hashes are within ``verify_distance`` (``previous``'s ``phash256`` is used likewise), which
    removes chance collisions of the short hash. Pairs lacking a long hash stay as found.

    ``pair_search`` replaces the in-process :func:`near_duplicate_pairs` (e.g. with a search on
    a Dask cluster); it sees the 64-bit hashes of the byte-distinct candidates and of every
    previous sample, and must return exactly the pairs within ``d``. ``m`` tunes the
    in-process search only.
    """
    if pair_search is None:
        pair_search = partial(near_duplicate_pairs, m=m)
    elif m is not None:
        raise DedupeError("m tunes the in-process pair search; configure pair_search instead")
    n_new = candidates.num_rows
    cand_keys = _strings(candidates, "key", "candidates")
    cand_sha = _strings(candidates, "sha256", "candidates")
    cand_hashes = as_hashes(_column(candidates, "phash", "candidates"))
    quality_new = _floats(candidates, "quality", np.nan)
    area_new = _floats(candidates, "width", 0.0) * _floats(candidates, "height", 0.0)

    if previous is None:
        previous = pa.table({"key": pa.array([], pa.string()), "phash": pa.array([], pa.uint64())})
    prev_keys = _strings(previous, "key", "previous index")
    prev_hashes = as_hashes(_column(previous, "phash", "previous index"))
    if "sha256" in previous.column_names:
        prev_sha = _strings(previous, "sha256", "previous index")
    else:  # no digests: previous samples only match by hash; give them unique tokens
        prev_sha = pc.binary_join_element_wise("previous:", prev_keys, "")
    n_prev = len(prev_keys)

    all_keys = pa.concat_arrays([prev_keys, cand_keys])
    if len(pc.unique(all_keys)) != len(all_keys):
        counts = pc.value_counts(all_keys)
        twice = pc.filter(counts.field("values"), pc.greater(counts.field("counts"), 1))
        raise DedupeError(
            f"key {twice[0].as_py()!r} occurs more than once among candidates/previous index"
        )
    n = n_prev + n_new
    is_prev = np.arange(n) < n_prev
    quality_all = np.concatenate([np.full(n_prev, np.inf), quality_new])
    policy = _KeeperPolicy(
        keys=all_keys,
        is_previous=is_prev,
        quality=np.where(np.isnan(quality_all), -np.inf, quality_all),
        area=np.concatenate([np.zeros(n_prev), area_new]),
    )
    items = np.arange(n)

    # 1. byte-identical groups: the best member represents the group
    all_sha = pa.concat_arrays([prev_sha, cand_sha])
    sha_group = pc.dictionary_encode(all_sha).indices.to_numpy().astype(np.int64)
    representative = policy.best_per_group(sha_group, items)[sha_group]

    # 2. near duplicates among representatives (and all previous samples)
    is_rep = (representative == items) | is_prev
    reps = np.flatnonzero(is_rep)
    all_hashes = np.concatenate([prev_hashes, cand_hashes])
    pairs = np.asarray(pair_search(all_hashes[reps], d), dtype=np.int64)
    if pairs.ndim != 2 or pairs.shape[1] != 2:
        raise DedupeError(f"pair search returned shape {pairs.shape}, expected (P, 2)")
    if "phash256" in candidates.column_names:
        long_hashes, has_long = long_hash_words([previous, candidates])
        pairs = confirmed_pairs(pairs, reps, long_hashes, has_long, verify_distance)
    labels = clusters(len(reps), pairs)
    keeper_of = np.full(n, -1, dtype=np.int64)
    keeper_of[reps] = policy.best_per_group(labels, reps)[labels]

    kept = is_prev | (keeper_of == items)
    dropped = np.flatnonzero(~kept)  # never a previous sample
    rep = representative[dropped]
    copy_of_kept = (rep != dropped) & kept[rep]
    target = np.where(copy_of_kept, rep, keeper_of[rep])
    rejects = _rejects(candidates, dropped - n_prev, copy_of_kept, all_keys.take(pa.array(target)))
    return DedupeResult(keys=cand_keys, keep=kept[n_prev:], rejects=rejects, pairs=len(pairs))


def _rejects(
    candidates: pa.Table, rows: np.ndarray, byte_copy: np.ndarray, kept_keys: pa.Array
) -> pa.Table:
    """The REJECTS_SCHEMA rows of the dropped candidates ``rows``: the detail is a kept key."""
    take = pa.array(rows, pa.int64())

    def column(name: str) -> pa.Array:
        if name in candidates.column_names:
            return candidates.column(name).combine_chunks().take(take).cast(pa.string())
        return pa.nulls(len(rows), pa.string())

    reasons = np.where(byte_copy, REASON_DUPLICATE, REASON_NEAR_DUPLICATE)
    return pa.Table.from_arrays(
        [
            column("key"),
            column("url"),
            column("source"),
            pa.array(np.full(len(rows), STAGE), pa.string()),
            pa.array(reasons, pa.string()),
            kept_keys.cast(pa.string()),
        ],
        schema=REJECTS_SCHEMA,
    )


def dedupe_columns(
    keys: Sequence[str] | pa.Array,
    sha256: Sequence[str] | pa.Array,
    hashes: Any,
    *,
    quality: Any = None,
    width: Any = None,
    height: Any = None,
    verify: Any = None,
    previous: pa.Table | Mapping[str, Any] | None = None,
    **options: Any,
) -> DedupeResult:
    """:func:`dedupe` of loose columns (lists, numpy or Arrow arrays), as tests and benchmarks
    have them; ``verify`` is the ``phash256`` column, ``previous`` a table or a mapping."""
    columns = {
        "key": keys,
        "sha256": sha256,
        "phash": pa.array(as_hashes(hashes), pa.uint64()),
        "quality": quality,
        "width": width,
        "height": height,
        "phash256": verify,
    }
    given = {name: values for name, values in columns.items() if values is not None}
    lengths = {name: len(values) for name, values in given.items()}
    if len(set(lengths.values())) > 1:
        raise DedupeError(f"candidate columns differ in length: {lengths}")
    if previous is not None and not isinstance(previous, pa.Table):
        previous = pa.table(
            {
                name: pa.array(as_hashes(values), pa.uint64()) if name == "phash" else values
                for name, values in previous.items()
            }
        )
    return dedupe(pa.table(given), previous, **options)
