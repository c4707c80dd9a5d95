"""Benchmark: the fetch path end to end against a plain urllib floor, on a local server.

Serves N images (~1 MB JPEGs, 1280x1024) from a local server (nginx if installed, else a
threaded Python server in its own process), then in the same run times:

- the floor: 32 threads of ``urllib`` reading every body and keeping nothing (timed inside
  its process, so interpreter start-up is not charged to it);
- our path, from process start to exit: read the URL list as a source, partition it, fetch
  (http.client, 32 threads), sniff, header-probe, sha256, and write the partition's staging output
  (a WebDataset shard through ``storage.shards.ShardWriter``, rejects Parquet, ``_stats.json``).
  Content filters are off: they are measured by ``bench/curation_filters.py``.

Politeness stays on (issue 16): the server listens on ``--hosts`` loopback addresses
(127.0.0.2, 127.0.0.3, ...: all of 127.0.0.0/8 reaches the loopback on Linux) and the URLs
take them in turn, so our path asks every host for its robots.txt (404: allowed), waits for
each host's turn at ``--per-host-rate`` requests per second (the hosts are ours, so the rate is
raised from the default 2/s, high enough that 64 hosts do not cap the path: the figure is the
fetch path's cost, not the configured rate), with the default 8 concurrent requests per host,
and checks the opt-out headers of every response. Prints one JSON object. Target (issue 3):
``ratio_to_floor`` >= 0.5 on 2 cores.

    .venv/bin/python -m bench.fetch --n 2000 --repeats 2
"""

from __future__ import annotations

import argparse
import hashlib
import http.server
import io
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from bench.common import REPO, Report

# The server, the floor and our path each run in a child process: ``python -m bench.fetch``
# with a hidden flag, from the repository root.
SELF = [sys.executable, "-m", "bench.fetch"]


# -- the server (its own process) -----------------------------------------------------------


def host_addresses(count: int) -> list[str]:
    """127.0.0.2, 127.0.0.3, ...: distinct hosts to the fetcher, all the loopback to Linux."""
    return [f"127.0.{(k + 2) // 256}.{(k + 2) % 256}" for k in range(count)]


def serve(image_dir: str, port_file: str, hosts: int) -> None:
    import threading

    blobs = [p.read_bytes() for p in sorted(Path(image_dir).glob("*.jpg"))]

    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args: object) -> None:
            pass

        def do_GET(self) -> None:  # noqa: N802
            try:
                index = int(self.path.rsplit("/", 1)[-1].split(".")[0])
            except ValueError:
                self.send_error(404)
                return
            data = blobs[index % len(blobs)]
            self.send_response(200)
            self.send_header("Content-Type", "image/jpeg")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

    addresses = host_addresses(hosts)
    first = http.server.ThreadingHTTPServer((addresses[0], 0), Handler)
    port = first.server_address[1]
    servers = [first] + [http.server.ThreadingHTTPServer((a, port), Handler) for a in addresses[1:]]
    for server in servers:
        server.daemon_threads = True
    for server in servers[1:]:
        threading.Thread(target=server.serve_forever, daemon=True).start()
    Path(port_file).write_text(str(port))
    first.serve_forever()


def start_server(image_dir: Path, work: Path, hosts: int) -> tuple[subprocess.Popen, int, str]:
    port_file = work / "port"
    if shutil.which("nginx"):
        port = 18000 + os.getpid() % 1000
        listen = " ".join(f"listen {a}:{port};" for a in host_addresses(hosts))
        conf = work / "nginx.conf"
        conf.write_text(
            f"daemon off; worker_processes 1; pid {work}/nginx.pid; error_log {work}/err.log;\n"
            f"events {{}} http {{ access_log off; sendfile on; server {{ {listen}"
            f" location /img/ {{ alias {image_dir}/; }} }} }}\n"
        )
        proc = subprocess.Popen(["nginx", "-c", str(conf)])
        time.sleep(0.5)
        return proc, port, "nginx"
    command = [*SELF, "--serve", str(image_dir), str(port_file), "--hosts", str(hosts)]
    proc = subprocess.Popen(command, cwd=REPO)
    deadline = time.monotonic() + 30
    while not (port_file.exists() and port_file.read_text()):
        if time.monotonic() > deadline or proc.poll() is not None:
            raise RuntimeError("the benchmark server did not start")
        time.sleep(0.05)
    return proc, int(port_file.read_text()), "python-threaded"


# -- the floor (its own process) -------------------------------------------------------------


def floor(url_file: str, threads: int) -> None:
    urls = Path(url_file).read_text().split()

    def read(url: str) -> int:
        with urllib.request.urlopen(url, timeout=60) as response:
            return len(response.read())

    started = time.perf_counter()
    with ThreadPoolExecutor(threads) as pool:
        total = sum(pool.map(read, urls))
    print(json.dumps({"seconds": time.perf_counter() - started, "bytes": total}))


# -- our path (its own process, timed from its start) ----------------------------------------


def worker(
    url_file: str, out_dir: str, staging: str, threads: int, rate: float, process_start: float
) -> None:
    from curation.config import CurationConfig, FetchConfig, FilterConfig, SourceConfig
    from curation.partition import run_partition
    from curation.sources import iter_all_partitions
    from storage.shards import Sample, ShardWriter
    from storage.uri import join

    config = CurationConfig(
        sources=[SourceConfig(uri=url_file, name="bench")],
        fetch=FetchConfig(  # robots.txt, opt-out headers and per-host turns: the defaults
            threads=threads,
            allow_hosts=["127.0.0.0/8"],
            per_host_rate=rate,
            rate_limit_allow_listed=True,
        ),
        filters=FilterConfig(enabled=False),
    )

    class StagingSink:
        """sha256 + a staging shard of the original bytes: what the next stages consume."""

        def __init__(self, uri: str, prefix: str) -> None:
            self.writer = None
            if staging == "shards":
                self.writer = ShardWriter(
                    uri, prefix=prefix, staging_dir=join(uri, ".staging"), digest=False
                )

        def prepare(self, record):  # worker threads: hashlib releases the GIL
            record.provenance["sha256"] = hashlib.sha256(record.data).hexdigest()
            return None

        def accept(self, record):  # the runner's thread: one writer, in order
            if self.writer is not None:
                meta = {"url": record.candidate.url, "sha256": record.provenance["sha256"]}
                self.writer.write(Sample(record.id, record.data, record.format, meta))
            return None

        def finish(self) -> dict:
            shards = self.writer.close() if self.writer is not None else []
            return {"shards": len(shards), "samples": sum(s.samples for s in shards)}

    totals = {"accepted": 0, "bytes": 0, "startup_s": time.time() - process_start}
    for partition in iter_all_partitions(config.sources, config.partition_size):
        out = join(out_dir, partition.id)
        result = run_partition(partition, out, config, sink=StagingSink(out, partition.id))
        totals["accepted"] += result.stats["accepted"]
        totals["bytes"] += result.stats["bytes_accepted"]
    print(json.dumps(totals))


# -- orchestration ---------------------------------------------------------------------------


def _children_cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def make_images(directory: Path, count: int) -> float:
    import numpy as np
    from PIL import Image

    from tests.curation_images import photo_like_array

    sizes = []
    for k in range(count):
        base = photo_like_array(640, 512, seed=k, grain=6.0)
        image = Image.fromarray(base).resize((1280, 1024), Image.Resampling.BICUBIC)
        pixels = np.asarray(image).astype(np.int16)
        grain = np.random.default_rng(k).integers(-9, 10, size=pixels.shape[:2] + (1,))
        image = Image.fromarray(np.clip(pixels + grain, 0, 255).astype(np.uint8))
        buffer = io.BytesIO()
        image.save(buffer, "JPEG", quality=96)
        (directory / f"{k}.jpg").write_bytes(buffer.getvalue())
        sizes.append(len(buffer.getvalue()))
    return sum(sizes) / len(sizes)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n", type=int, default=2000, help="images fetched per run")
    parser.add_argument("--distinct", type=int, default=16, help="distinct images served")
    parser.add_argument("--threads", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=2, help="best of this many runs each")
    parser.add_argument("--hosts", type=int, default=64, help="loopback addresses served")
    parser.add_argument(
        "--per-host-rate", type=float, default=16.0, help="requests/s per host (ours)"
    )
    parser.add_argument("--serve", nargs=2, help=argparse.SUPPRESS)
    parser.add_argument("--floor", help=argparse.SUPPRESS)
    parser.add_argument("--worker", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        return serve(*args.serve, args.hosts)
    if args.floor:
        return floor(args.floor, args.threads)
    if args.worker:
        spawned = float(os.environ["BENCH_SPAWNED_AT"])
        return worker(*args.worker, args.threads, args.per_host_rate, spawned)
    if min(args.n, args.distinct, args.repeats, args.hosts) < 1 or args.hosts > 60_000:
        parser.error("--n, --distinct, --repeats and --hosts (<= 60000) must be at least 1")
    if args.per_host_rate <= 0:
        parser.error("--per-host-rate must be positive")
    report = Report(
        "fetch",
        {k: v for k, v in vars(args).items() if k not in ("serve", "floor", "worker")},
        packages=("webdataset", "pydantic"),
    )

    with tempfile.TemporaryDirectory(prefix="bench-fetch-") as tmp:
        work = Path(tmp)
        (work / "img").mkdir()
        mean_bytes = make_images(work / "img", args.distinct)
        server, port, server_kind = start_server(work / "img", work, args.hosts)
        try:
            url_file = work / "urls.txt"
            hosts = host_addresses(args.hosts)
            name = (lambda i: i % args.distinct) if server_kind == "nginx" else (lambda i: i)
            urls = [
                f"http://{hosts[i % len(hosts)]}:{port}/img/{name(i)}.jpg" for i in range(args.n)
            ]
            url_file.write_text("\n".join(urls) + "\n")
            runs: dict[str, list[dict]] = {"floor": [], "shards": [], "hash_only": []}
            for repeat in range(args.repeats):
                runs["floor"].append(_timed(["--floor", str(url_file)], args.threads))
                for staging in ("shards", "hash_only"):
                    out_dir = work / f"out-{staging}-{repeat}"
                    command = ["--worker", str(url_file), str(out_dir), staging]
                    rate = ("--per-host-rate", str(args.per_host_rate))
                    runs[staging].append(_timed(command, args.threads, rate))
                    shutil.rmtree(out_dir)
        finally:
            server.terminate()
            server.wait(timeout=30)
    best = {name: min(results, key=lambda r: r["seconds"]) for name, results in runs.items()}
    rate = {name: r["bytes"] / r["seconds"] / 1e6 for name, r in best.items()}
    cpu_per_gb = {name: round(r["cpu_s"] / (r["bytes"] / 1e9), 2) for name, r in best.items()}
    ours = best["shards"]
    result = {
        "n": args.n,
        "threads": args.threads,
        "hosts": args.hosts,
        "per_host_rate": args.per_host_rate,
        "load_average_1m": round(os.getloadavg()[0], 2),
        "server": server_kind,
        "mean_image_mb": round(mean_bytes / 1e6, 3),
        "accepted": ours["accepted"],
        "seconds": round(ours["seconds"], 2),
        "images_per_s": round(ours["accepted"] / ours["seconds"], 1),
        "mb_per_s": round(rate["shards"], 1),
        "floor_seconds": round(best["floor"]["seconds"], 2),
        "floor_mb_per_s": round(rate["floor"], 1),
        "ratio_to_floor": round(rate["shards"] / rate["floor"], 3),
        "target_ratio_ge_0_5": rate["shards"] / rate["floor"] >= 0.5,
        # The same path with sha256 but no staging shard (storage.shards.ShardWriter): what
        # fetch + probe + hashing cost on their own.
        "hash_only_mb_per_s": round(rate["hash_only"], 1),
        "hash_only_ratio_to_floor": round(rate["hash_only"] / rate["floor"], 3),
        # interpreter start and imports (storage.shards imports webdataset, which imports torch)
        "startup_s": round(ours["startup_s"], 2),
        # CPU seconds per GB: a figure that other load on a shared machine does not distort
        "cpu_s_per_gb": cpu_per_gb,
        "runs_s": {name: [round(r["seconds"], 2) for r in rs] for name, rs in runs.items()},
    }
    report.emit(result)


def _timed(command: list[str], threads: int, extra: tuple[str, ...] = ()) -> dict:
    """Run ``python -m bench.fetch *command`` in a child process; its JSON line plus wall
    seconds (from spawn) and CPU seconds."""
    cpu_before = _children_cpu_s()
    env = {**os.environ, "BENCH_SPAWNED_AT": repr(time.time())}
    started = time.perf_counter()
    out = subprocess.run(
        [*SELF, *command, "--threads", str(threads), *extra],
        cwd=REPO,
        check=True,
        capture_output=True,
        text=True,
        env=env,
    ).stdout
    seconds = time.perf_counter() - started
    reported = json.loads(out)
    if "seconds" in reported:  # the floor times itself, without interpreter start-up
        seconds = reported.pop("seconds")
    return {"seconds": seconds, "cpu_s": _children_cpu_s() - cpu_before, **reported}


if __name__ == "__main__":
    main()
