"""Shard writing cost: the project's ShardWriter against webdataset's ShardWriter.

Writes N samples of S bytes (random, incompressible) with each, plus a raw file write as the
floor, and prints one JSON object: CPU seconds per GB and MB/s for each, and the ratio.
Usage: python -m bench.shards [--n 1000] [--size 760000]
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import tempfile
import time

from bench.common import Report


def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _measure(fn) -> tuple[float, float]:  # noqa: ANN001
    wall, cpu = time.perf_counter(), _cpu()
    fn()
    return time.perf_counter() - wall, _cpu() - cpu


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=1000)
    parser.add_argument("--size", type=int, default=760_000)
    args = parser.parse_args()
    if args.n < 1 or args.size < 1:
        parser.error("--n and --size must be at least 1")
    report = Report("shards", args, packages=("webdataset",))
    import webdataset as wds

    from storage.shards import Sample, ShardWriter, encode_meta

    data = os.urandom(args.size)
    gigabytes = args.n * args.size / 1e9
    work = tempfile.mkdtemp(prefix="bench-shards-", dir=os.getcwd())
    try:

        def ours() -> None:
            with ShardWriter(os.path.join(work, "ours"), max_bytes=1 << 62) as writer:
                for i in range(args.n):
                    writer.write(Sample(f"s{i:07d}", data, "jpg", {"i": i}))

        def webdataset_writer() -> None:
            os.makedirs(os.path.join(work, "wds"))
            pattern = os.path.join(work, "wds", "shard-%06d.tar")
            with wds.ShardWriter(pattern, maxsize=1 << 62, verbose=0, mtime=0) as writer:
                for i in range(args.n):
                    writer.write({"__key__": f"s{i:07d}", "jpg": data,
                                  "json": encode_meta({"i": i})})  # fmt: skip

        def raw() -> None:
            with open(os.path.join(work, "raw"), "wb") as handle:
                for _ in range(args.n):
                    handle.write(data)
                handle.flush()
                os.fsync(handle.fileno())

        results = {}
        for name, fn in (("raw_fsync", raw), ("webdataset", webdataset_writer), ("ours", ours)):
            wall, cpu = _measure(fn)
            results[name] = {
                "cpu_s_per_gb": round(cpu / gigabytes, 3),
                "mb_per_s": round(gigabytes * 1000 / wall, 1),
            }
        report.emit({
            "n": args.n, "sample_bytes": args.size, **results,
            "cpu_ratio_webdataset_to_ours": round(
                results["webdataset"]["cpu_s_per_gb"] / results["ours"]["cpu_s_per_gb"], 2),
            "note": "ours also hashes each shard (sha256) and fsyncs it; webdataset does neither",
        })  # fmt: skip
    finally:
        shutil.rmtree(work)


if __name__ == "__main__":
    main()
