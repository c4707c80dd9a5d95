"""Near-duplicate search (exact, against brute force) and the dedupe stage's keeper policy."""

from __future__ import annotations

import io

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import skimage.data
from PIL import Image

from curation.dedupe import (
    REASON_DUPLICATE,
    REASON_NEAR_DUPLICATE,
    DedupeError,
    brute_force_pairs,
    dedupe,
    dedupe_columns,
    near_duplicate_pairs,
    plan_blocks,
)
from curation.hashing import perceptual_hash64, phash256, sha256_hex, to_int64
from storage.schemas import REJECTS_SCHEMA

MAX_PLANTED = 8 + 2


def planted_hashes(n: int, seed: int) -> np.ndarray:
    """Random hashes; a tenth are copies of others at every distance 0..MAX_PLANTED."""
    rng = np.random.default_rng(seed)
    hashes = rng.integers(0, 2**64 - 1, n, dtype=np.uint64, endpoint=True)
    k = n // 20
    chosen = rng.choice(n, 2 * k, replace=False)
    distance = np.arange(k) % (MAX_PLANTED + 1)
    flips = rng.random((k, 64)).argsort(axis=1) < distance[:, None]
    masks = np.packbits(flips, axis=1).view(">u8").ravel().astype(np.uint64)
    hashes[chosen[k:]] = hashes[chosen[:k]] ^ masks
    # chains: a few copies of copies, so clusters have more than two members
    hashes[chosen[: k // 10]] = hashes[chosen[k : k + k // 10]] ^ np.uint64(1 << 63)
    return hashes


def rejected(result) -> list[tuple[str, str, str]]:
    """(candidate_id, reason, detail) rows of a dedupe result's rejects table."""
    rows = result.rejects.to_pylist()
    assert all(row["stage"] == "dedupe" for row in rows)
    return [(row["candidate_id"], row["reason"], row["detail"]) for row in rows]


def as_set(pairs: np.ndarray) -> set[tuple[int, int]]:
    assert pairs.ndim == 2 and pairs.shape[1] == 2
    assert np.all(pairs[:, 0] < pairs[:, 1])
    found = set(map(tuple, pairs.tolist()))
    assert len(found) == len(pairs), "a pair was reported twice"
    return found


_REFERENCES: dict[int, tuple[np.ndarray, np.ndarray, np.ndarray]] = {}


def reference(n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Planted hashes, their brute-force pairs within MAX_PLANTED and those pairs' distances."""
    if n not in _REFERENCES:
        hashes = planted_hashes(n, seed=7)
        pairs = brute_force_pairs(hashes, MAX_PLANTED)
        distance = np.bitwise_count(hashes[pairs[:, 0]] ^ hashes[pairs[:, 1]])
        _REFERENCES[n] = hashes, pairs, distance
    return _REFERENCES[n]


@pytest.mark.parametrize("n", [5_000, pytest.param(50_000, marks=pytest.mark.slow)])
@pytest.mark.parametrize("d", [0, 4, 8])
def test_search_equals_brute_force(n, d) -> None:
    hashes, pairs, distance = reference(n)
    expected = as_set(pairs[distance <= d])
    # planted pairs just outside the radius exist, so the radius itself is tested
    assert np.any(distance == d + 1) and np.any(distance == d + 2)
    assert len(expected) >= n // 500
    assert as_set(near_duplicate_pairs(hashes, d)) == expected


@pytest.mark.parametrize(("d", "m"), [(4, 5), (4, 7), (2, 3), (8, 9), (3, 12)])
def test_any_block_count_is_exact(d, m) -> None:
    hashes = planted_hashes(5_000, seed=d * 100 + m)
    assert as_set(near_duplicate_pairs(hashes, d, m=m)) == as_set(brute_force_pairs(hashes, d))


def test_big_buckets_are_searched_in_chunks() -> None:
    rng = np.random.default_rng(3)
    # 3000 hashes equal in their top 44 bits: every table keyed on top blocks is one bucket
    top = np.uint64(0xABCDE12345 << 24)
    crowd = top | rng.integers(0, 1 << 20, 3000, dtype=np.uint64)
    same = np.full(400, crowd[0])  # 400 identical hashes
    hashes = np.concatenate([crowd, same, planted_hashes(2000, seed=4)])
    rng.shuffle(hashes)
    expected = as_set(brute_force_pairs(hashes, 4))
    assert len(expected) > 100_000
    assert as_set(near_duplicate_pairs(hashes, 4, chunk_pairs=5000)) == expected


@pytest.mark.parametrize("d", [1, 4, 8])
def test_first_block_search_in_chunks_and_processes_is_exact(d) -> None:
    """The large-input path (sort by first block, cache-sized chunks of whole buckets, forked
    workers over key ranges) gives the brute-force pairs; the chunk size is forced small."""
    from curation.near_pairs import collapse_identical, distinct_pairs, expand_pairs

    hashes = planted_hashes(12_000, seed=20 + d)
    hashes[:40] = hashes[50]  # an identical group
    hashes[100:140] = hashes[150] ^ np.uint64(1)  # a crowded bucket of near copies
    expected = as_set(brute_force_pairs(hashes, d))
    groups = collapse_identical(hashes)
    assert groups.order.dtype == np.uint32  # positions fit in 32 bits: half the memory
    for chunk_items, workers in [(256, 1), (1000, 2), (3000, 3)]:
        found = distinct_pairs(groups.distinct, d, chunk_items=chunk_items, workers=workers)
        assert as_set(expand_pairs(found, groups)) == expected
    assert as_set(near_duplicate_pairs(hashes, d, workers=2)) == expected


def test_search_units_cover_every_table_once() -> None:
    from curation.near_pairs import search_units

    plan = plan_blocks(100_000_000, 4)
    assert (plan.m, len(plan.tables)) == (7, 35)  # 27-28-bit keys at the paper's pool size
    units = search_units(plan, 3)  # rounded up to 4 key ranges per first block
    firsts = sorted({blocks[0] for blocks in plan.tables})
    assert sorted(units) == [(f, p, 4) for f in firsts for p in range(4)]
    assert units[0][0] == 0  # the first block with the most tables goes first


def test_the_search_module_is_reexported() -> None:
    import curation.dedupe
    import curation.near_pairs

    for name in ("near_duplicate_pairs", "plan_blocks", "brute_force_pairs", "DedupeError"):
        assert getattr(curation.dedupe, name) is getattr(curation.near_pairs, name)


def test_plan_choices() -> None:
    plan = plan_blocks(2_000_000, 4)
    assert sum(plan.widths) == 64 and plan.m >= 5
    assert len(plan.tables) == len(set(plan.tables))
    assert all(len(t) == plan.m - 4 for t in plan.tables)
    assert plan_blocks(10, 4, m=5).widths == (13, 13, 13, 13, 12)
    with pytest.raises(DedupeError, match="d=17 out of range"):
        plan_blocks(10, 17)
    with pytest.raises(DedupeError, match="m=3 must be"):
        plan_blocks(10, 4, m=3)


def test_dask_partitioned_search_equals_single_process() -> None:
    from distributed import Client, LocalCluster

    from curation.dedupe_dask import near_duplicate_pairs_dask

    hashes = planted_hashes(20_000, seed=11)
    hashes[:50] = hashes[60]  # identical group
    with (
        LocalCluster(
            n_workers=2, threads_per_worker=1, processes=False, dashboard_address=":0"
        ) as cluster,
        Client(cluster) as client,
    ):
        for d, parts in [(4, 1), (4, 4), (8, 2), (0, 1)]:
            single = as_set(near_duplicate_pairs(hashes, d))
            assert single
            assert as_set(near_duplicate_pairs_dask(hashes, client, d, parts_per_table=parts)) == (
                single
            )


# ------------------------------------------------------------------------- images


def _encode(image: Image.Image, fmt: str, **options) -> bytes:
    buf = io.BytesIO()
    image.convert("RGB").save(buf, fmt, **options)
    return buf.getvalue()


def _reduced_decode(data: bytes) -> Image.Image:
    image = Image.open(io.BytesIO(data))
    image.thumbnail((1024, 1024))
    return image


PHOTOS = [
    "astronaut",
    "coffee",
    "chelsea",
    "rocket",
    "camera",
    "coins",
    "moon",
    "hubble_deep_field",
    "immunohistochemistry",
]


def _photo(name: str) -> Image.Image:
    image = getattr(skimage.data, name)()
    return Image.fromarray(image)


def _variants(image: Image.Image) -> dict[str, bytes]:
    w, h = image.size
    dx, dy = round(w * 0.01), round(h * 0.01)
    return {
        "half": _encode(image.resize((w // 2, h // 2), Image.Resampling.LANCZOS), "PNG"),
        "q60": _encode(image, "JPEG", quality=60),
        # 2 % of each side cropped, centred (1 % from each edge)
        "crop2": _encode(image.crop((dx, dy, w - dx, h - dy)), "PNG"),
    }


def test_edited_copies_are_near_duplicates_and_distinct_photos_are_not() -> None:
    records, quality = [], []
    for name in PHOTOS:
        image = _photo(name)
        original = _encode(image, "PNG")
        records.append((f"{name}/original", original, _reduced_decode(original)))
        quality.append(1.0)
        for variant, data in _variants(image).items():
            # phash is not shift invariant: the busy rocket scene moves 6 bits when cropped
            if name == "rocket" and variant == "crop2":
                continue
            records.append((f"{name}/{variant}", data, _reduced_decode(data)))
            quality.append(0.5)
    keys = [key for key, _, _ in records]
    sha = [sha256_hex(data) for _, data, _ in records]
    hashes = [perceptual_hash64(image) for _, _, image in records]
    result = dedupe_columns(keys, sha, hashes, quality=quality)
    assert result.kept_keys() == [f"{name}/original" for name in PHOTOS]
    assert len(result.rejects) == len(records) - len(PHOTOS)
    for candidate, reason, detail in rejected(result):
        assert reason == REASON_NEAR_DUPLICATE
        assert detail == candidate.split("/")[0] + "/original"
    # the 256-bit verification confirms every one of these matches
    long = [phash256(image) for _, _, image in records]
    verified = dedupe_columns(keys, sha, hashes, quality=quality, verify=long)
    assert verified.rejects.equals(result.rejects)


def test_256_bit_verification_splits_a_chance_collision() -> None:
    astronaut, coffee = _photo("astronaut"), _photo("coffee")
    collided = [_h(3, 9), _h(3, 9, 20)]  # as if two distinct photos hashed 1 bit apart
    args = (["astronaut", "coffee"], ["a", "c"], collided)
    assert dedupe_columns(*args).kept_keys() == ["astronaut"]
    long = [phash256(astronaut), phash256(coffee)]
    assert dedupe_columns(*args, verify=long).kept_keys() == ["astronaut", "coffee"]
    # the previous index's phash256 column is used the same way
    previous = {"key": ["astronaut"], "phash": [collided[0]], "phash256": [long[0]]}
    assert dedupe_columns(
        ["coffee"], ["c"], [collided[1]], previous=previous, verify=[long[1]]
    ).keep[0]
    with pytest.raises(DedupeError, match="32 bytes"):
        dedupe_columns(*args, verify=[b"short", long[1]])


# ------------------------------------------------------------------- keeper policy


def _h(*bits: int) -> int:
    return sum(1 << b for b in bits)


def test_byte_identical_copies_are_duplicates_of_the_kept_one() -> None:
    result = dedupe_columns(
        ["c", "a", "b", "z"],
        ["s1", "s1", "s1", "s2"],
        [_h(1), _h(1), _h(1), _h(40, 41, 42, 43, 44, 45, 46)],
    )
    assert result.keep.tolist() == [False, True, False, True]
    assert set(rejected(result)) == {
        ("c", REASON_DUPLICATE, "a"),
        ("b", REASON_DUPLICATE, "a"),
    }
    assert result.rejects.schema.equals(REJECTS_SCHEMA, check_metadata=True)


def test_keeper_policy_quality_then_resolution_then_key() -> None:
    keys = ["k3", "k1", "k2", "k0", "k4"]
    sha = ["a", "b", "c", "d", "e"]
    hashes = [_h(), _h(0), _h(1), _h(0, 1), _h(2)]  # one cluster, all within 4
    width = [100, 200, 200, 100, 50]
    height = [100, 100, 100, 100, 50]

    best_quality = dedupe_columns(
        keys, sha, hashes, quality=[0.1, 0.5, 0.5, 0.9, 0.2], width=width, height=height
    )
    assert best_quality.kept_keys() == ["k0"]
    assert {detail for _, _, detail in rejected(best_quality)} == {"k0"}

    # tie on quality: the larger image wins; tie on both: the smallest key
    by_area = dedupe_columns(
        keys, sha, hashes, quality=[0.5, 0.5, 0.5, 0.5, np.nan], width=width, height=height
    )
    assert by_area.kept_keys() == ["k1"]
    by_key = dedupe_columns(keys, sha, hashes, quality=[0.5] * 5, width=[1] * 5, height=[1] * 5)
    assert by_key.kept_keys() == ["k0"]
    # NaN quality ranks last, not first
    nan_first = dedupe_columns(keys, sha, hashes, quality=[np.nan, 0.1, np.nan, np.nan, np.nan])
    assert nan_first.kept_keys() == ["k1"]


def test_copy_of_a_dropped_sample_points_to_the_kept_key() -> None:
    # x and its byte copy y lose to the better near-duplicate w
    result = dedupe_columns(
        ["x", "y", "w"], ["s", "s", "t"], [_h(5), _h(5), _h(5, 6)], quality=[0.1, 0.1, 0.9]
    )
    assert result.kept_keys() == ["w"]
    assert set(rejected(result)) == {
        ("x", REASON_NEAR_DUPLICATE, "w"),
        ("y", REASON_NEAR_DUPLICATE, "w"),
    }


def test_chains_cluster_transitively() -> None:
    # a-b and b-c are within 4, a-c is not: one cluster, one keeper
    result = dedupe_columns(
        ["a", "b", "c"], ["1", "2", "3"], [_h(), _h(0, 1, 2), _h(0, 1, 2, 3, 4, 5)]
    )
    assert result.kept_keys() == ["a"]
    assert [detail for _, _, detail in rejected(result)] == ["a", "a"]


def test_incremental_against_previous_index(tmp_path) -> None:
    previous = pa.table(
        {
            "key": ["p1", "p2"],
            "sha256": ["sp1", "sp2"],
            "phash": pa.array([_h(10), _h(30, 31, 32, 33, 34, 35, 36, 37)], pa.uint64()),
        }
    )
    # stored as int64 (engines without unsigned ints), read back from Parquet
    stored = previous.set_column(
        2, "phash", pa.array(to_int64(previous.column("phash").to_numpy()))
    )
    pq.write_table(stored, tmp_path / "index.parquet")
    index = pq.read_table(tmp_path / "index.parquet")

    result = dedupe_columns(
        ["n-copy", "n-near", "n-new", "n-new-copy"],
        ["sp1", "sn2", "sn3", "sn3"],
        [
            _h(10),
            _h(30, 31, 32, 33, 34, 35),
            _h(60, 61, 62, 63, 50, 51, 52),
            _h(60, 61, 62, 63, 50, 51, 52),
        ],
        quality=[9.0, 9.0, 1.0, 1.0],  # higher than anything: previous samples still win
        width=[4000, 4000, 10, 10],
        height=[4000, 4000, 10, 10],
        previous=index,
    )
    assert result.keys.to_pylist() == ["n-copy", "n-near", "n-new", "n-new-copy"]
    assert result.kept_keys() == ["n-new"]
    assert set(rejected(result)) == {
        ("n-copy", REASON_DUPLICATE, "p1"),
        ("n-near", REASON_NEAR_DUPLICATE, "p2"),
        ("n-new-copy", REASON_DUPLICATE, "n-new"),
    }

    # an index without digests still catches the copy, by its hash
    no_sha = dedupe_columns(
        ["n-copy"], ["sp1"], [_h(10)], previous={"key": ["p1"], "phash": [_h(10)]}
    )
    assert [(reason, detail) for _, reason, detail in rejected(no_sha)] == [
        (REASON_NEAR_DUPLICATE, "p1")
    ]


def test_bad_input_is_refused_clearly() -> None:
    with pytest.raises(DedupeError, match="key 'a' occurs more than once"):
        dedupe_columns(["a", "a"], ["1", "2"], [1, 2])
    with pytest.raises(DedupeError, match="key 'p' occurs more than once"):
        dedupe_columns(["p"], ["1"], [1], previous={"key": ["p"], "phash": [1]})
    with pytest.raises(DedupeError, match="differ in length"):
        dedupe_columns(["a", "b"], ["1"], [1, 2])
    with pytest.raises(DedupeError, match="lacks column 'phash'"):
        dedupe_columns(["a"], ["1"], [1], previous=pa.table({"key": ["p"]}))
    with pytest.raises(DedupeError, match="64-bit integers"):
        dedupe_columns(["a"], ["1"], np.array([1.5]))


def test_one_arrow_table_in_rejects_with_url_and_source_out() -> None:
    candidates = pa.table(
        {
            "key": ["a", "b", "c"],
            "url": ["http://h/a.jpg", "http://h/b.jpg", "http://h/c.jpg"],
            "source": ["s", "s", "t"],
            "sha256": ["1", "1", "3"],
            "phash": pa.array([_h(1), _h(1), _h(1, 2)], pa.int64()),  # int64: same bits
            "quality": pa.array([0.5, 0.9, None], pa.float32()),  # null ranks last
            "phash256": pa.array([bytes(32)] * 3, pa.binary(32)),
        }
    )
    result = dedupe(candidates)
    assert result.kept_keys() == ["b"]
    assert result.rejects.schema.equals(REJECTS_SCHEMA, check_metadata=True)
    assert result.rejects.to_pylist() == [
        {
            "candidate_id": "a",
            "url": "http://h/a.jpg",
            "source": "s",
            "stage": "dedupe",
            "reason": REASON_DUPLICATE,
            "detail": "b",
        },
        {
            "candidate_id": "c",
            "url": "http://h/c.jpg",
            "source": "t",
            "stage": "dedupe",
            "reason": REASON_NEAR_DUPLICATE,
            "detail": "b",
        },
    ]
    with pytest.raises(DedupeError, match="candidates lacks column 'sha256'"):
        dedupe(candidates.drop_columns(["sha256"]))
    with pytest.raises(DedupeError, match="key of the candidates holds nulls"):
        dedupe(candidates.set_column(0, "key", pa.array(["a", None, "c"])))
