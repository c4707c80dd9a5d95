"""Exact and near-duplicate removal over 64-bit perceptual hashes.

Search (:func:`near_duplicate_pairs`): every pair of hashes within Hamming distance ``d`` is
found exactly by multi-index hashing. The 64 bits are cut into ``m >= d + 1`` contiguous
blocks. Two hashes within distance ``d`` differ in at most ``d`` blocks, so (pigeonhole) they
agree exactly on at least ``m - d`` of them. One table per choice of ``m - d`` blocks groups the
hashes by those blocks' bits (a numpy sort); hashes in one group are candidates, verified by
popcount. ``m = d + 1`` is the classic one-block form; a larger ``m`` makes the table keys
longer (fewer random candidates) at the price of more tables, and ``m`` is picked by a cost
model from the number of hashes (d=4 at 2 M hashes: m=6, 15 tables of 21-bit keys).
A pair that agrees on the blocks of several tables is reported only by the first of them in
enumeration order (the lowest ``m - d`` agreeing blocks), so no global de-duplication of pairs
is needed, and tables (or key ranges inside a table) can be searched independently, e.g. on
Dask workers (:mod:`curation.dedupe_dask`).

Identical hash values are collapsed first: a group of k identical hashes costs one search
entry, not k^2 / 2 candidates. Groups of equal table keys are expanded into candidate pairs in
bounded chunks, so a big bucket costs time proportional to its pairs but bounded memory.

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

import math
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from functools import partial
from itertools import combinations
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

HASH_BITS = 64
DEFAULT_DISTANCE = 4
MAX_DISTANCE = 16
DEFAULT_CHUNK_PAIRS = 1 << 21
# 256-bit phash distance that confirms a 64-bit match: resized, q60 and 2 %-cropped copies of
# scikit-image's photos measured 0..22, distinct photos 108 and more
DEFAULT_VERIFY_DISTANCE = 40
STAGE = "dedupe"
REASON_DUPLICATE = "duplicate_of"
REASON_NEAR_DUPLICATE = "near_duplicate_of"

# Rough per-item costs (seconds) of the search, measured with numpy 2 on one core; only their
# ratio matters, it picks the number of blocks.
_SORT_COST = 2.5e-8
_PAIR_COST = 4e-8


#: A pair search: (uint64 hashes, distance d) -> every index pair (i, j), i < j, within d,
#: shape (P, 2), in any order; :func:`near_duplicate_pairs` (this process) or
#: :class:`curation.dedupe_dask.DaskPairSearch` (a Dask cluster).
PairSearch = Callable[[np.ndarray, int], np.ndarray]


class DedupeError(ValueError):
    """Invalid input to the dedupe stage."""


@dataclass(frozen=True)
class BlockPlan:
    """How the 64 bits are cut into blocks and which blocks each table keys on."""

    d: int
    m: int
    widths: tuple[int, ...]  # block widths, block 0 holds the most significant bits
    tables: tuple[tuple[int, ...], ...]  # the blocks of each table, lexicographic order

    @property
    def shifts(self) -> tuple[int, ...]:
        out, top = [], HASH_BITS
        for width in self.widths:
            top -= width
            out.append(top)
        return tuple(out)

    def key_bits(self, table: int) -> int:
        return sum(self.widths[b] for b in self.tables[table])

    def segments(self, table: int) -> list[tuple[int, int]]:
        """(shift, width) of the table's bits, adjacent blocks merged, most significant first."""
        out: list[tuple[int, int]] = []
        for block in self.tables[table]:
            shift, width = self.shifts[block], self.widths[block]
            if out and out[-1][0] == shift + width:
                out[-1] = (shift, out[-1][1] + width)
            else:
                out.append((shift, width))
        return out

    def table_key(self, hashes: np.ndarray, table: int) -> np.ndarray:
        """The table's blocks of every hash, packed into one uint64 (first block highest)."""
        key = np.zeros(hashes.shape, dtype=np.uint64)
        part = np.empty_like(key)
        for shift, width in self.segments(table):
            np.left_shift(key, np.uint64(width), out=key)
            np.right_shift(hashes, np.uint64(shift), out=part)
            np.bitwise_and(part, np.uint64((1 << width) - 1), out=part)
            np.bitwise_or(key, part, out=key)
        return key

    def agreeing_blocks(self, xor: np.ndarray) -> np.ndarray:
        """Bit b set where two hashes (given by their XOR) agree on block b."""
        agree = np.zeros(xor.shape, dtype=np.uint64)
        for block, (width, shift) in enumerate(zip(self.widths, self.shifts, strict=True)):
            same = ((xor >> np.uint64(shift)) & np.uint64((1 << width) - 1)) == 0
            agree |= same.astype(np.uint64) << np.uint64(block)
        return agree

    def table_mask(self, table: int) -> np.uint64:
        return np.uint64(sum(1 << b for b in self.tables[table]))

    def first_agreeing_tables(self, xor: np.ndarray) -> np.ndarray:
        """Block mask of the first table (lexicographic) whose blocks a pair agrees on.

        That is the lowest ``m - d`` agreeing blocks; a pair within ``d`` is owned by it.
        """
        agree = self.agreeing_blocks(xor)
        first = np.zeros_like(agree)
        for _ in range(self.m - self.d):
            lowest = agree & (~agree + np.uint64(1))
            first |= lowest
            agree ^= lowest
        return first


def _block_widths(m: int) -> tuple[int, ...]:
    base, extra = divmod(HASH_BITS, m)
    return tuple(base + 1 if b < extra else base for b in range(m))


def _estimated_cost(n: int, d: int, m: int) -> float:
    tables = math.comb(m, d)
    key_bits = HASH_BITS * (m - d) / m
    candidates = n * (n - 1) / 2 / 2.0**key_bits
    return tables * (n * _SORT_COST + candidates * _PAIR_COST)


def plan_blocks(n: int, d: int = DEFAULT_DISTANCE, m: int | None = None) -> BlockPlan:
    """Pick the number of blocks ``m`` (or use the given one) for ``n`` distinct hashes."""
    if not 0 <= d <= MAX_DISTANCE:
        raise DedupeError(f"Hamming distance d={d} out of range 0..{MAX_DISTANCE}")
    if m is None:
        candidates = range(d + 1, min(HASH_BITS, d + 8) + 1)
        m = min(candidates, key=lambda k: (_estimated_cost(max(n, 2), d, k), k))
    if not d + 1 <= m <= HASH_BITS:
        raise DedupeError(f"number of blocks m={m} must be in {d + 1}..{HASH_BITS} for d={d}")
    tables = tuple(combinations(range(m), m - d))
    return BlockPlan(d=d, m=m, widths=_block_widths(m), tables=tables)


def as_hashes(values: Any) -> np.ndarray:
    """uint64 view of hashes given as uint64/int64 numpy arrays, Arrow arrays or Python ints.

    int64 input is reinterpreted bit for bit (see :func:`curation.hashing.to_int64`).
    """
    if isinstance(values, pa.ChunkedArray | pa.Array):
        if values.null_count:
            raise DedupeError("hash column holds nulls")
        values = values.to_numpy(zero_copy_only=False)
    if not isinstance(values, np.ndarray):
        try:
            return np.array([int(v) for v in values], dtype=np.uint64)
        except (OverflowError, TypeError, ValueError) as exc:
            raise DedupeError(f"hashes must be integers in 0..2**64-1: {exc}") from None
    if values.dtype == np.int64:
        return values.view(np.uint64)
    if values.dtype == np.uint64:
        return values
    raise DedupeError(f"hashes must be 64-bit integers, got dtype {values.dtype}")


@dataclass(frozen=True)
class IdenticalGroups:
    """Input hashes grouped by value: group g is ``order[starts[g] : starts[g] + sizes[g]]``."""

    distinct: np.ndarray  # the distinct values, sorted; distinct[g] is group g's value
    order: np.ndarray  # input positions sorted by hash value
    starts: np.ndarray
    sizes: np.ndarray


def collapse_identical(hashes: np.ndarray) -> IdenticalGroups:
    """Group identical hash values, so that the search sees each value once."""
    order = np.argsort(hashes)
    ordered = hashes[order]
    first = np.ones(len(ordered), dtype=bool)
    first[1:] = ordered[1:] != ordered[:-1]
    starts = np.flatnonzero(first)
    sizes = np.diff(np.append(starts, len(ordered)))
    return IdenticalGroups(ordered[starts], order, starts, sizes)


def _run_pairs(run_lengths_at: np.ndarray, positions: np.ndarray, chunk_pairs: int) -> Iterator:
    """Yield (left, right) sorted-position arrays of all pairs inside equal-key runs, in chunks.

    ``positions`` are the sorted positions that start at least one pair and
    ``run_lengths_at[k]`` how many later members of its run ``positions[k]`` pairs with.
    """
    if len(positions) == 0:
        return
    ends = np.cumsum(run_lengths_at)
    start = 0
    while start < len(positions):
        base = ends[start - 1] if start else 0
        stop = int(np.searchsorted(ends, base + chunk_pairs, side="right"))
        stop = max(stop, start + 1)  # one position alone may exceed the budget
        counts = run_lengths_at[start:stop]
        left = np.repeat(positions[start:stop], counts)
        first_of_each = np.repeat(ends[start:stop] - counts, counts)
        right = left + 1 + (np.arange(len(left), dtype=np.int64) + base - first_of_each)
        yield left, right
        start = stop


def table_pairs(
    hashes: np.ndarray,
    plan: BlockPlan,
    table: int,
    *,
    key_range: tuple[int, int] | None = None,
    chunk_pairs: int = DEFAULT_CHUNK_PAIRS,
) -> np.ndarray:
    """Pairs ``(i, j)``, i < j, within ``plan.d`` that table ``table`` owns.

    ``hashes`` need not be distinct, but identical values are cheaper collapsed first (see
    :func:`collapse_identical`). ``key_range=(p, parts)`` restricts the search to keys whose
    top bits put them in part ``p`` of ``parts`` (a partition by hash block value, for running
    one table as several tasks).
    """
    key = plan.table_key(hashes, table)
    members = None
    if key_range is not None:
        part, parts = key_range
        bits = max(parts - 1, 0).bit_length()
        if bits:
            top = key >> np.uint64(max(plan.key_bits(table) - bits, 0))
            members = np.flatnonzero(top == np.uint64(part))
            del top
            key = key[members]
    n = len(key)
    if n < 2:
        return np.empty((0, 2), dtype=np.int64)
    index_bits = max(n - 1, 1).bit_length()
    if plan.key_bits(table) + index_bits <= HASH_BITS:
        # sort (key, index) packed in one uint64: a plain sort is faster than an argsort
        np.left_shift(key, np.uint64(index_bits), out=key)
        np.bitwise_or(key, np.arange(n, dtype=np.uint64), out=key)
        key.sort()
        packed = key
        index_mask = np.uint64((1 << index_bits) - 1)
        sorted_key = packed >> np.uint64(index_bits)
    else:
        packed = np.argsort(key).astype(np.uint64)
        index_mask = np.uint64(0xFFFF_FFFF_FFFF_FFFF)
        sorted_key = key[packed]
    del key
    # same[p]: sorted positions p and p + 1 share the key (one False pad at the end)
    same = np.zeros(n, dtype=bool)
    np.equal(sorted_key[1:], sorted_key[:-1], out=same[:-1])
    del sorted_key

    source = hashes if members is None else hashes[members]
    mask = plan.table_mask(table)
    found = []
    # pairs (p, p + k) for k = 1, 2, ...: p keeps its place while p + k is still in its run,
    # so the loop runs as long as the longest run and each step holds at most n positions
    left = np.flatnonzero(same)
    offset = 1
    while len(left):
        for start in range(0, len(left), chunk_pairs):
            p = left[start : start + chunk_pairs]
            i = (packed[p] & index_mask).astype(np.int64)
            j = (packed[p + offset] & index_mask).astype(np.int64)
            xor = source[i] ^ source[j]
            close = np.flatnonzero(np.bitwise_count(xor) <= plan.d)
            if len(close):
                i, j, xor = i[close], j[close], xor[close]
                owned = plan.first_agreeing_tables(xor) == mask
                found.append(np.stack([i[owned], j[owned]], axis=1))
        left = left[same[left + offset]]
        offset += 1
    if not found:
        return np.empty((0, 2), dtype=np.int64)
    pairs = np.concatenate(found)
    if members is not None:
        pairs = members[pairs]
    return np.sort(pairs, axis=1)


def distinct_pairs(
    distinct: np.ndarray,
    d: int = DEFAULT_DISTANCE,
    *,
    m: int | None = None,
    chunk_pairs: int = DEFAULT_CHUNK_PAIRS,
) -> np.ndarray:
    """All pairs of distinct hash values within distance ``d`` (``1 <= dist <= d``)."""
    plan = plan_blocks(len(distinct), d, m)
    if d == 0 or len(distinct) < 2:
        return np.empty((0, 2), dtype=np.int64)
    parts = [
        table_pairs(distinct, plan, t, chunk_pairs=chunk_pairs) for t in range(len(plan.tables))
    ]
    return np.concatenate(parts)


def expand_pairs(
    value_pairs: np.ndarray, groups: IdenticalGroups, chunk_pairs: int = DEFAULT_CHUNK_PAIRS
) -> np.ndarray:
    """Input-position pairs from pairs of distinct values plus those inside identical groups."""
    order, starts, sizes = groups.order, groups.starts, groups.sizes
    out = []
    # pairs inside one group of identical hashes (distance 0): runs in the sorted order
    shared = np.flatnonzero(sizes > 1)
    if len(shared):
        positions = np.repeat(starts[shared], sizes[shared] - 1)
        rank = np.arange(len(positions)) - np.repeat(
            np.cumsum(sizes[shared] - 1) - (sizes[shared] - 1), sizes[shared] - 1
        )
        positions = positions + rank
        partners = np.repeat(sizes[shared] - 1, sizes[shared] - 1) - rank
        for left, right in _run_pairs(partners, positions, chunk_pairs):
            out.append(np.stack([order[left], order[right]], axis=1))
    # pairs across two groups: every member of one with every member of the other
    if len(value_pairs):
        a, b = value_pairs[:, 0], value_pairs[:, 1]
        if len(shared) == 0:  # all values distinct: one position per value
            out.append(np.stack([order[a], order[b]], axis=1))
        else:
            counts = sizes[a] * sizes[b]
            pair_of = np.repeat(np.arange(len(a)), counts)
            offset = np.arange(len(pair_of)) - np.repeat(np.cumsum(counts) - counts, counts)
            ia = order[starts[a[pair_of]] + offset // sizes[b[pair_of]]]
            ib = order[starts[b[pair_of]] + offset % sizes[b[pair_of]]]
            out.append(np.stack([ia, ib], axis=1))
    if not out:
        return np.empty((0, 2), dtype=np.int64)
    return np.sort(np.concatenate(out), axis=1)


def near_duplicate_pairs(
    hashes: Any,
    d: int = DEFAULT_DISTANCE,
    *,
    m: int | None = None,
    chunk_pairs: int = DEFAULT_CHUNK_PAIRS,
) -> np.ndarray:
    """Every index pair ``(i, j)``, ``i < j``, with ``popcount(h[i] ^ h[j]) <= d``; shape (P, 2).

    Exact, not approximate. Pairs come in no particular order; identical hashes are included.
    """
    groups = collapse_identical(as_hashes(hashes))
    value_pairs = distinct_pairs(groups.distinct, d, m=m, chunk_pairs=chunk_pairs)
    return expand_pairs(value_pairs, groups, chunk_pairs)


def brute_force_pairs(hashes: Any, d: int, rows: int = 1024) -> np.ndarray:
    """Reference O(n^2) search in row chunks, for tests and recall checks."""
    values = as_hashes(hashes)
    out = []
    for start in range(0, len(values), rows):
        block = values[start : start + rows]
        dist = np.bitwise_count(block[:, None] ^ values[None, start:])
        i, j = np.nonzero(dist <= d)
        i, j = i + start, j + start
        later = j > i
        out.append(np.stack([i[later], j[later]], axis=1))
    if not out:
        return np.empty((0, 2), dtype=np.int64)
    return np.concatenate(out).astype(np.int64)


def clusters(n: int, pairs: np.ndarray) -> np.ndarray:
    """Cluster label of each of ``n`` items: the connected components of the pair graph."""
    if n == 0:
        return np.empty(0, dtype=np.int64)
    graph = coo_matrix(
        (np.ones(len(pairs), dtype=np.int8), (pairs[:, 0], pairs[:, 1])), shape=(n, n)
    )
    _, labels = connected_components(graph.tocsr(), directed=False)
    return labels.astype(np.int64)


# ---------------------------------------------------------------- dedupe with a keeper policy


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
