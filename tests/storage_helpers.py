"""Helpers for storage tests: publish small versions of generated images."""

from __future__ import annotations

import hashlib

from flows.demo.data import encode, photo_like
from storage.shards import Sample
from storage.versions import Dataset, PublishedVersion


def make_samples(n: int, start: int = 0, size: tuple[int, int] = (64, 48)) -> list[Sample]:
    samples = []
    for i in range(start, start + n):
        image = photo_like(*size, seed=i)
        if i % 3 == 2:
            samples.append(Sample(f"img-{i:05d}", encode(image, "PNG"), "png", {"i": i}))
        else:
            samples.append(
                Sample(f"img-{i:05d}", encode(image, "JPEG", quality=90), "jpg", {"i": i})
            )
    return samples


def row_for(sample: Sample) -> dict:
    return {
        "source": "test",
        "url": f"test://{sample.key}",
        "sha256": hashlib.sha256(sample.data).hexdigest(),
        "width": 64,
        "height": 48,
    }


def publish(
    dataset: Dataset, samples: list[Sample], max_shard_count: int = 4, **kw
) -> PublishedVersion:
    with dataset.begin_version(max_shard_count=max_shard_count, **kw) as writer:
        for sample in samples:
            writer.write_sample(sample, row_for(sample))
        return writer.publish(stats={"test": True})
