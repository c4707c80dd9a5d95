"""Hashes of records: sha256 of the bytes, 64-bit perceptual hashes, Arrow/Parquet layout."""

from __future__ import annotations

import io

import imagehash
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import skimage.data
from PIL import Image

from curation.hashing import (
    WHASH_IMAGE_SCALE,
    HashingError,
    from_int64,
    hamming64,
    hamming_bytes,
    perceptual_hash64,
    phash256,
    sha256_hex,
    to_int64,
)


@pytest.fixture(scope="module")
def photos() -> dict[str, Image.Image]:
    return {
        name: Image.fromarray(getattr(skimage.data, name)())
        for name in ("astronaut", "coffee", "chelsea", "rocket")
    }


def _png(image: Image.Image) -> bytes:
    buf = io.BytesIO()
    image.save(buf, "PNG")
    return buf.getvalue()


def test_sha256_of_original_bytes() -> None:
    # FIPS 180-2 test vector
    assert sha256_hex(b"abc") == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"


@pytest.mark.parametrize("kind", ["phash", "dhash", "whash"])
def test_64_bit_hash_is_imagehash_hex_as_unsigned_int(photos, kind) -> None:
    hasher = {
        "phash": imagehash.phash,
        "dhash": imagehash.dhash,
        "whash": lambda im: imagehash.whash(im, image_scale=WHASH_IMAGE_SCALE),
    }[kind]
    reference = {name: hasher(im) for name, im in photos.items()}
    ours = {name: perceptual_hash64(im, kind) for name, im in photos.items()}
    for name in photos:
        assert 0 <= ours[name] < 2**64
        # documented bit order: first row-major bit is the most significant one
        assert ours[name] == int(str(reference[name]), 16)
    names = sorted(photos)
    for a in names:
        for b in names:
            assert hamming64(ours[a], ours[b]) == reference[a] - reference[b]


def test_256_bit_phash_for_verification(photos) -> None:
    astronaut, coffee = photos["astronaut"], photos["coffee"]
    long_a, long_c = phash256(astronaut), phash256(coffee)
    assert len(long_a) == 32
    expected = imagehash.phash(astronaut, hash_size=16) - imagehash.phash(coffee, hash_size=16)
    assert hamming_bytes(long_a, long_c) == expected > 0
    with pytest.raises(ValueError, match="lengths differ"):
        hamming_bytes(long_a, long_a[:8])


def test_hashes_keep_their_bits_in_parquet_and_as_int64(photos, tmp_path) -> None:
    hashes = np.array([perceptual_hash64(im) for im in photos.values()], dtype=np.uint64)
    long_hashes = [phash256(im) for im in photos.values()]
    table = pa.table(
        {"phash": pa.array(hashes, pa.uint64()), "phash256": pa.array(long_hashes, pa.binary(32))}
    )
    pq.write_table(table, tmp_path / "hashes.parquet")
    back = pq.read_table(tmp_path / "hashes.parquet")
    assert back.equals(table)
    assert back.column("phash").to_numpy().tolist() == hashes.tolist()

    # the int64 form keeps the bits, so distances are unchanged
    signed = to_int64(hashes)
    assert signed.dtype == np.int64
    assert from_int64(signed).tolist() == hashes.tolist()
    assert (np.bitwise_count(signed[0] ^ signed[1])) == hamming64(*hashes[:2].tolist())


def test_unknown_hash_kind_is_refused(photos) -> None:
    with pytest.raises(HashingError, match="unknown hash kind 'ahash'"):
        perceptual_hash64(photos["coffee"], "ahash")  # type: ignore[arg-type]
