"""Exact search for every pair of 64-bit hashes within Hamming distance ``d``.

Every pair within ``d`` is found exactly by multi-index hashing. The 64 bits are cut into
``m >= d + 1`` contiguous blocks. Two hashes within distance ``d`` differ in at most ``d``
blocks, so (pigeonhole) they agree exactly on at least ``m - d`` of them. One table per choice
of ``m - d`` blocks groups the hashes by those blocks' bits (a numpy sort); hashes in one group
are candidates, verified by popcount. ``m = d + 1`` is the classic one-block form; a larger
``m`` makes the table keys longer (fewer random candidates) at the price of more tables, and
``m`` is picked by a cost model from the number of hashes (d=4 at 2 M hashes: m=6, 15 tables
of 21-bit keys; at 100 M: m=7, 35 tables of 27-28-bit keys). A pair that agrees on the blocks
of several tables is reported only by the first of them in enumeration order (the lowest
``m - d`` agreeing blocks), so no global de-duplication of pairs is needed, and tables (or key
ranges inside a table) can be searched independently, e.g. on Dask workers
(:mod:`curation.dedupe_dask`).

Large inputs (more than ``chunk_items`` hashes) are searched by first block: every table whose
first block is ``b`` only pairs hashes with the same value of block ``b``, so one sort by block
``b`` splits the hashes into chunks of whole ``b``-buckets (about 2^16 hashes, or one bucket
when buckets are bigger), and each table is then searched chunk by chunk with sorts that fit
in the CPU cache. At 100 M hashes that replaces 35 sorts of 100 M keys (about 8 s each on the
dev box) by 5 such sorts plus cache-sized ones, and the ``(first block, key range)`` units are
independent: :func:`near_duplicate_pairs` spreads them over ``workers`` forked processes (the
hashes are shared copy-on-write, never copied) and :mod:`curation.dedupe_dask` over a cluster.

Identical hash values are collapsed first: a group of k identical hashes costs one search
entry, not k^2 / 2 candidates. Groups of equal table keys are expanded into candidate pairs in
bounded chunks, so a big bucket costs time proportional to its pairs but bounded memory.
Positions are kept as uint32 where they fit: per hash 8 bytes of input, 8 of distinct values
and 4 each of order, group starts and sizes, plus a worker's sort buffer and positions for its
key range (``bench.dedupe``: 5.1 GB in all for 100 M hashes on 2 workers).

A pair found can be confirmed by the 256-bit phash (:func:`confirmed_pairs`), which removes
chance collisions of the short hash among millions.
"""

from __future__ import annotations

import math
import multiprocessing
from collections.abc import Iterator
from dataclasses import dataclass
from itertools import combinations
from typing import Any

import numpy as np
import pyarrow as pa

HASH_BITS = 64
DEFAULT_DISTANCE = 4
MAX_DISTANCE = 16
DEFAULT_CHUNK_PAIRS = 1 << 21
#: hashes per cache-sized chunk of the first-block search (a few MB of sort buffer)
DEFAULT_CHUNK_ITEMS = 1 << 16

# Rough per-item costs (seconds) of the search, measured with numpy 2 on one core; only their
# ratio matters, it picks the number of blocks.
_SORT_COST = 2.5e-8
_PAIR_COST = 4e-8


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


def _positions_dtype(n: int) -> type:
    return np.uint32 if n < 2**32 else np.int64


def collapse_identical(hashes: np.ndarray) -> IdenticalGroups:
    """Group identical hash values, so that the search sees each value once."""
    n = len(hashes)
    order = np.argsort(hashes).astype(_positions_dtype(n))
    ordered = hashes[order]
    first = np.ones(n, dtype=bool)
    np.not_equal(ordered[1:], ordered[:-1], out=first[1:])
    starts = np.flatnonzero(first).astype(_positions_dtype(n))
    del first
    distinct = ordered[starts] if len(starts) < n else ordered
    del ordered
    sizes = np.diff(starts, append=_positions_dtype(n)(n))
    return IdenticalGroups(distinct, order, starts, sizes)


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


def first_block_pairs(
    hashes: np.ndarray,
    plan: BlockPlan,
    first: int,
    *,
    key_range: tuple[int, int] | None = None,
    chunk_items: int = DEFAULT_CHUNK_ITEMS,
    chunk_pairs: int = DEFAULT_CHUNK_PAIRS,
) -> np.ndarray:
    """Pairs owned by every table whose first block is ``first`` (see the module doc).

    One sort by block ``first`` cuts the hashes into chunks of whole buckets of that block's
    value; each table is searched chunk by chunk (:func:`table_pairs` on the chunk). With
    ``key_range=(p, parts)`` only block values whose top bits are ``p`` of ``parts`` are
    searched (part of the work, for another process or a Dask worker); ``parts`` is a power
    of two.
    """
    tables = [t for t, blocks in enumerate(plan.tables) if blocks[0] == first]
    n = len(hashes)
    if not tables or n < 2:
        return np.empty((0, 2), dtype=np.int64)
    shift, width = plan.shifts[first], plan.widths[first]
    index_bits = max(n - 1, 1).bit_length()
    if width + index_bits > HASH_BITS:
        raise DedupeError(f"{n} hashes are too many for a {width}-bit block")
    if key_range is not None and max(key_range[1] - 1, 0).bit_length():
        part, parts = key_range
        bits = min(max(parts - 1, 0).bit_length(), width)
        if part >= 1 << bits:
            return np.empty((0, 2), dtype=np.int64)
        members = _top_bits_equal(hashes, shift + width - bits, bits, part)
        packed = np.right_shift(hashes[members], np.uint64(shift))
        positions = members.astype(np.uint64)
        del members
    else:
        packed = np.right_shift(hashes, np.uint64(shift))
        positions = np.arange(n, dtype=np.uint64)
    np.bitwise_and(packed, np.uint64((1 << width) - 1), out=packed)
    np.left_shift(packed, np.uint64(index_bits), out=packed)
    np.bitwise_or(packed, positions, out=packed)
    del positions
    packed.sort()
    cuts = _bucket_cuts(packed, index_bits, chunk_items)
    np.bitwise_and(packed, np.uint64((1 << index_bits) - 1), out=packed)  # now: positions
    found = []
    for start, stop in zip(cuts[:-1], cuts[1:], strict=True):
        where = packed[start:stop]
        chunk = hashes[where]
        for table in tables:
            local = table_pairs(chunk, plan, table, chunk_pairs=chunk_pairs)
            if len(local):
                found.append(where[local].astype(np.int64))
    if not found:
        return np.empty((0, 2), dtype=np.int64)
    return np.concatenate(found)


def _top_bits_equal(hashes: np.ndarray, shift: int, bits: int, value: int) -> np.ndarray:
    """Positions whose ``bits`` bits from ``shift`` up equal ``value``, in slices (no n-sized
    temporaries besides the answer)."""
    out = []
    step = 1 << 22
    for start in range(0, len(hashes), step):
        field = hashes[start : start + step] >> np.uint64(shift)
        np.bitwise_and(field, np.uint64((1 << bits) - 1), out=field)
        out.append(np.flatnonzero(field == np.uint64(value)) + start)
    return np.concatenate(out) if out else np.empty(0, dtype=np.int64)


def _bucket_cuts(packed: np.ndarray, index_bits: int, chunk_items: int) -> list[int]:
    """Chunk boundaries in sorted ``(bucket << index_bits) | position`` values: about
    ``chunk_items`` apart, never inside a bucket (a bigger bucket is a chunk of its own)."""
    cuts = [0]
    while cuts[-1] < len(packed):
        at = cuts[-1] + chunk_items
        if at >= len(packed):
            cuts.append(len(packed))
            break
        bucket = packed[at] >> np.uint64(index_bits)
        start = np.searchsorted(packed, bucket << np.uint64(index_bits))  # bucket's first
        if start <= cuts[-1]:  # the bucket began at or before the cut: end after it
            start = np.searchsorted(packed, (bucket + np.uint64(1)) << np.uint64(index_bits))
        cuts.append(int(start))
    return cuts


# hashes shared with forked workers (copy-on-write); set only while a pool runs
_SHARED: dict[str, Any] = {}


def _unit(args: tuple[int, int, int]) -> np.ndarray:
    first, part, parts = args
    return first_block_pairs(
        _SHARED["hashes"],
        _SHARED["plan"],
        first,
        key_range=(part, parts),
        chunk_items=_SHARED["chunk_items"],
        chunk_pairs=_SHARED["chunk_pairs"],
    )


def search_units(plan: BlockPlan, parts: int) -> list[tuple[int, int, int]]:
    """The independent (first block, part, parts) units, the most tables first; ``parts``
    is rounded up to a power of two (a part is a range of the block's top bits)."""
    parts = 1 << max(parts - 1, 0).bit_length()
    firsts = sorted({blocks[0] for blocks in plan.tables})
    weight = {f: sum(blocks[0] == f for blocks in plan.tables) for f in firsts}
    units = [(f, p, parts) for f in firsts for p in range(parts)]
    return sorted(units, key=lambda u: -weight[u[0]])


def distinct_pairs(
    distinct: np.ndarray,
    d: int = DEFAULT_DISTANCE,
    *,
    m: int | None = None,
    chunk_pairs: int = DEFAULT_CHUNK_PAIRS,
    chunk_items: int = DEFAULT_CHUNK_ITEMS,
    workers: int = 1,
) -> np.ndarray:
    """All pairs of distinct hash values within distance ``d`` (``1 <= dist <= d``)."""
    plan = plan_blocks(len(distinct), d, m)
    if d == 0 or len(distinct) < 2:
        return np.empty((0, 2), dtype=np.int64)
    if len(distinct) <= chunk_items:  # fits in cache as it is: one sort per table
        parts = [
            table_pairs(distinct, plan, t, chunk_pairs=chunk_pairs) for t in range(len(plan.tables))
        ]
        return np.concatenate(parts)
    if workers <= 1:
        parts = [
            first_block_pairs(distinct, plan, f, chunk_items=chunk_items, chunk_pairs=chunk_pairs)
            for f in sorted({blocks[0] for blocks in plan.tables})
        ]
        return np.concatenate(parts)
    # fork: the workers read the hashes from this process's memory, copy-on-write
    _SHARED.update(hashes=distinct, plan=plan, chunk_items=chunk_items, chunk_pairs=chunk_pairs)
    try:
        with multiprocessing.get_context("fork").Pool(workers) as pool:
            parts = list(pool.imap_unordered(_unit, search_units(plan, workers)))
    finally:
        _SHARED.clear()
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
        later = sizes[shared].astype(np.int64) - 1  # members after a group's first
        positions = np.repeat(starts[shared].astype(np.int64), later)
        rank = np.arange(len(positions)) - np.repeat(np.cumsum(later) - later, later)
        positions = positions + rank
        partners = np.repeat(later, later) - rank
        for left, right in _run_pairs(partners, positions, chunk_pairs):
            out.append(np.stack([order[left], order[right]], axis=1).astype(np.int64))
    # pairs across two groups: every member of one with every member of the other
    if len(value_pairs):
        a, b = value_pairs[:, 0], value_pairs[:, 1]
        if len(shared) == 0:  # all values distinct: one position per value
            out.append(np.stack([order[a], order[b]], axis=1).astype(np.int64))
        else:
            size_a, size_b = sizes[a].astype(np.int64), sizes[b].astype(np.int64)
            counts = size_a * size_b
            pair_of = np.repeat(np.arange(len(a)), counts)
            offset = np.arange(len(pair_of)) - np.repeat(np.cumsum(counts) - counts, counts)
            ia = order[starts[a[pair_of]].astype(np.int64) + offset // size_b[pair_of]]
            ib = order[starts[b[pair_of]].astype(np.int64) + offset % size_b[pair_of]]
            out.append(np.stack([ia, ib], axis=1).astype(np.int64))
    if not out:
        return np.empty((0, 2), dtype=np.int64)
    return np.sort(np.concatenate(out), axis=1)


def near_duplicate_pairs(
    hashes: Any,
    d: int = DEFAULT_DISTANCE,
    *,
    m: int | None = None,
    chunk_pairs: int = DEFAULT_CHUNK_PAIRS,
    workers: int = 1,
) -> np.ndarray:
    """Every index pair ``(i, j)``, ``i < j``, with ``popcount(h[i] ^ h[j]) <= d``; shape (P, 2).

    Exact, not approximate. Pairs come in no particular order; identical hashes are included.
    ``workers > 1`` searches in that many forked processes (not inside a daemonic process such
    as a Dask worker; use :mod:`curation.dedupe_dask` there).
    """
    groups = collapse_identical(as_hashes(hashes))
    value_pairs = distinct_pairs(groups.distinct, d, m=m, chunk_pairs=chunk_pairs, workers=workers)
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


# -------------------------------------------------------- 256-bit confirmation of pairs


def long_hash_words(tables: list[pa.Table]) -> tuple[np.ndarray, np.ndarray]:
    """The ``phash256`` of every row of ``tables`` (in order) as (n, 4) uint64 words, and a
    has-one mask (a table without the column, or a null, has none)."""
    n = sum(table.num_rows for table in tables)
    words = np.zeros((n, 4), dtype=np.uint64)
    present = np.zeros(n, dtype=bool)
    offset = 0
    for table in tables:
        if "phash256" in table.column_names:
            for k, value in enumerate(table.column("phash256").to_pylist()):
                if value is None:
                    continue
                if len(value) != 32:
                    raise DedupeError(f"a 256-bit hash must be 32 bytes, got {len(value)}")
                words[offset + k] = np.frombuffer(value, dtype=">u8")
                present[offset + k] = True
        offset += table.num_rows
    return words, present


def confirmed_pairs(
    pairs: np.ndarray, reps: np.ndarray, words: np.ndarray, present: np.ndarray, limit: int
) -> np.ndarray:
    """Pairs (indices into ``reps``) whose 256-bit hashes agree within ``limit`` bits."""
    a, b = reps[pairs[:, 0]], reps[pairs[:, 1]]
    distance = np.bitwise_count(words[a] ^ words[b]).sum(axis=1)
    keep = (distance <= limit) | ~present[a] | ~present[b]
    return pairs[keep]
