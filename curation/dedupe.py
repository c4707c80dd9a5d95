"""Exact and near-duplicate removal over 64-bit perceptual hashes.

The pair search lives in :mod:`curation.near_pairs` (exact multi-index hashing, re-exported
here: :func:`near_duplicate_pairs`, :func:`plan_blocks`, :func:`brute_force_pairs`, ...); this
module turns its pairs into kept and rejected samples.

Dedupe (:func:`dedupe`): byte-identical samples (sha256) collapse first, then the remaining
representatives are searched, pairs become clusters (connected components, i.e. union-find),
and each cluster keeps one sample. Keeper policy, in order:

1. samples of the previous published version (they are published and always kept);
2. the highest quality score (higher is better; pass ``-niqe`` for lower-is-better metrics;
   NaN ranks last);
3. the larger resolution ``width * height``;
4. the smallest key (code-point order), which makes the choice deterministic.

Every dropped candidate gets a reject whose detail is a kept key: ``duplicate_of`` when it is
byte-identical to a kept sample, ``near_duplicate_of`` otherwise (the cluster's keeper, which
may be a transitive rather than a direct near-duplicate).
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
    distinct_pairs,
    expand_pairs,
    first_block_pairs,
    near_duplicate_pairs,
    plan_blocks,
    table_pairs,
)

# 256-bit phash distance that confirms a 64-bit match: resized, q60 and 2 %-cropped copies of
# scikit-image's photos measured 0..22, distinct photos 108 and more
DEFAULT_VERIFY_DISTANCE = 40
STAGE = "dedupe"
REASON_DUPLICATE = "duplicate_of"
REASON_NEAR_DUPLICATE = "near_duplicate_of"

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
    rejects: pa.Table  # candidate_id, stage, reason, detail; in candidate order
    pairs: int  # near-duplicate pairs among byte-distinct samples, after verification

    def kept_keys(self) -> list[str]:
        return self.keys.filter(pa.array(self.keep)).to_pylist()


REJECT_SCHEMA = pa.schema(
    [
        ("candidate_id", pa.string()),
        ("stage", pa.string()),
        ("reason", pa.string()),
        ("detail", pa.string()),
    ]
)


def _column(source: Any, name: str) -> Any:
    if isinstance(source, pa.Table):
        if name not in source.column_names:
            raise DedupeError(f"previous index lacks column {name!r}")
        return source.column(name)
    if name not in source:
        raise DedupeError(f"previous index lacks column {name!r}")
    return source[name]


def _strings(values: Any, what: str) -> pa.Array:
    if isinstance(values, pa.ChunkedArray):
        values = values.combine_chunks()
    arr = values if isinstance(values, pa.Array) else pa.array(list(values), pa.string())
    if arr.null_count:
        raise DedupeError(f"{what} holds nulls")
    return arr.cast(pa.string())


def _floats(values: Any, n: int, fill: float) -> np.ndarray:
    if values is None:
        return np.full(n, fill, dtype=np.float64)
    if isinstance(values, pa.Array | pa.ChunkedArray):
        values = values.to_numpy(zero_copy_only=False)
    arr = np.asarray(values, dtype=np.float64)
    if arr.shape != (n,):
        raise DedupeError(f"expected {n} values, got shape {arr.shape}")
    return arr


def _has(source: Any, name: str) -> bool:
    if source is None:
        return False
    return name in (source.column_names if isinstance(source, pa.Table) else source)


def _long_hashes(
    previous: Any, n_prev: int, candidates: Any, n_new: int
) -> tuple[np.ndarray, np.ndarray]:
    """256-bit hashes of previous + candidate items as (n, 4) uint64 words, and a has-one mask."""
    words = np.zeros((n_prev + n_new, 4), dtype=np.uint64)
    present = np.zeros(n_prev + n_new, dtype=bool)
    for offset, count, values in ((0, n_prev, previous), (n_prev, n_new, candidates)):
        if values is None:
            continue
        if isinstance(values, pa.ChunkedArray | pa.Array):
            values = values.to_pylist()
        values = list(values)
        if len(values) != count:
            raise DedupeError(f"expected {count} 256-bit hashes, got {len(values)}")
        for k, value in enumerate(values):
            if value is None:
                continue
            if len(value) != 32:
                raise DedupeError(f"a 256-bit hash must be 32 bytes, got {len(value)}")
            words[offset + k] = np.frombuffer(value, dtype=">u8")
            present[offset + k] = True
    return words, present


def _confirmed(
    pairs: np.ndarray, reps: np.ndarray, words: np.ndarray, present: np.ndarray, limit: int
) -> np.ndarray:
    """Pairs (indices into ``reps``) whose 256-bit hashes agree within ``limit`` bits."""
    a, b = reps[pairs[:, 0]], reps[pairs[:, 1]]
    distance = np.bitwise_count(words[a] ^ words[b]).sum(axis=1)
    keep = (distance <= limit) | ~present[a] | ~present[b]
    return pairs[keep]


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
    keys: Sequence[str] | pa.Array,
    sha256: Sequence[str] | pa.Array,
    hashes: Any,
    *,
    quality: Any = None,
    width: Any = None,
    height: Any = None,
    previous: pa.Table | Mapping[str, Any] | None = None,
    hash_column: str = "phash",
    d: int = DEFAULT_DISTANCE,
    m: int | None = None,
    verify: Any = None,
    verify_distance: int = DEFAULT_VERIFY_DISTANCE,
    pair_search: PairSearch | None = None,
) -> DedupeResult:
    """Drop byte-identical and near-duplicate candidates; keep one per cluster (module doc).

    ``previous`` is the previous published version's index (an Arrow table or a mapping with
    ``key``, ``hash_column`` and optionally ``sha256``); its samples are never re-hashed and
    always kept, and candidates that duplicate them are dropped.

    ``verify`` (optional) holds each candidate's 256-bit phash (32 bytes, see
    :func:`curation.hashing.phash256`; a ``phash256`` column of ``previous`` is used likewise):
    a 64-bit match is then confirmed only if the 256-bit hashes are within ``verify_distance``,
    which removes chance collisions of the short hash. Pairs lacking a long hash stay as found.

    ``pair_search`` replaces the in-process :func:`near_duplicate_pairs` (e.g. with a search on
    a Dask cluster); it sees the 64-bit hashes of the byte-distinct candidates and of every
    previous sample, and must return exactly the pairs within ``d``. ``m`` tunes the
    in-process search only.
    """
    if pair_search is None:
        pair_search = partial(near_duplicate_pairs, m=m)
    elif m is not None:
        raise DedupeError("m tunes the in-process pair search; configure pair_search instead")
    cand_keys = _strings(keys, "candidate keys")
    n_new = len(cand_keys)
    cand_hashes = as_hashes(hashes)
    cand_sha = _strings(sha256, "candidate sha256")
    if len(cand_hashes) != n_new or len(cand_sha) != n_new:
        raise DedupeError(
            f"keys, sha256 and hashes differ in length: {n_new}, {len(cand_sha)}, "
            f"{len(cand_hashes)}"
        )
    quality_new = _floats(quality, n_new, np.nan)
    area_new = _floats(width, n_new, 0.0) * _floats(height, n_new, 0.0)

    if previous is not None:
        prev_keys = _strings(_column(previous, "key"), "previous keys")
        prev_hashes = as_hashes(_column(previous, hash_column))
        if _has(previous, "sha256"):
            prev_sha = _strings(_column(previous, "sha256"), "previous sha256")
        else:  # no digests: previous samples only match by hash; give them unique tokens
            prev_sha = pc.binary_join_element_wise("previous:", prev_keys, "")
        if len(prev_hashes) != len(prev_keys) or len(prev_sha) != len(prev_keys):
            raise DedupeError("previous index columns differ in length")
    else:
        prev_keys = pa.array([], pa.string())
        prev_hashes = np.empty(0, dtype=np.uint64)
        prev_sha = pa.array([], pa.string())
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
    if verify is not None:
        prev_long = _column(previous, "phash256") if _has(previous, "phash256") else None
        long_hashes, has_long = _long_hashes(prev_long, n_prev, verify, n_new)
        pairs = _confirmed(pairs, reps, long_hashes, has_long, verify_distance)
    labels = clusters(len(reps), pairs)
    keeper_of = np.full(n, -1, dtype=np.int64)
    keeper_of[reps] = policy.best_per_group(labels, reps)[labels]

    kept = is_prev | (keeper_of == items)
    dropped = np.flatnonzero(~kept)  # never a previous sample
    rep = representative[dropped]
    copy_of_kept = (rep != dropped) & kept[rep]
    target = np.where(copy_of_kept, rep, keeper_of[rep])
    rejects = pa.table(
        [
            all_keys.take(pa.array(dropped)),
            pa.array(np.full(len(dropped), STAGE)),
            pa.array(np.where(copy_of_kept, REASON_DUPLICATE, REASON_NEAR_DUPLICATE)),
            all_keys.take(pa.array(target)),
        ],
        schema=REJECT_SCHEMA,
    )
    return DedupeResult(keys=cand_keys, keep=kept[n_prev:], rejects=rejects, pairs=len(pairs))
