"""Benchmark: the fetch path end to end against a plain urllib floor, on a local server.

Serves N images (~0.76 MB JPEGs, 1280x1024) from nginx when it is installed (``make bench``
installs it as root; ``--server`` picks), else from a threaded Python server in its own
process, whose floor is about half as fast (the JSON's ``server`` says which served). nginx
runs with a generated config whose every path lies in the benchmark's temporary folder, as the
invoking user: as root with ``user root`` (its workers would otherwise run as ``www-data`` and
be refused the private folder), as anyone else without (nginx then cannot switch users). Every
URL is distinct (a query string), the bodies cycle through ``--distinct`` images. In the same
run it times:

- the floor: 32 threads of ``urllib`` reading every body and keeping nothing;
- our path: read the URL list as a source, partition it, fetch (http.client, 32 threads),
  sniff, header-probe, sha256, and write the partition's staging output (a WebDataset shard
  through ``storage.shards.ShardWriter``: ``O_DIRECT`` writes, fdatasync at the shard's close,
  before the partition's done marker; rejects Parquet, ``_stats.json``), as the build does.
  Content filters are off: they are measured by ``bench/curation_filters.py``;
- ``hash_only``: our path without the staging shard.

Each runs in its own process and times itself from after its imports to the end of its work
(the interpreter's start and imports are reported as ``startup_s``; a build pays them once per
worker, not per partition). ``process_seconds`` are the children's wall times from spawn.

Politeness stays on (issue 16): the server listens on ``--hosts`` loopback addresses
(127.0.0.2, 127.0.0.3, ...: all of 127.0.0.0/8 reaches the loopback on Linux) and the URLs
take them in turn, so our path asks every host for its robots.txt (404: allowed), takes each
host's turn at ``--per-host-rate`` requests per second with the default 8 concurrent requests
per host, and checks the opt-out headers of every response. The hosts are ours, so the rate is
raised from the default 2/s to 64/s: 64 hosts then allow 4,096 requests/s, above what the
floor reaches (about 1,300/s against nginx), so the figure is the fetch path's cost, not the
configured rate (at 16/s the rate itself capped the path near the floor's pace).
Prints one JSON object. Target (issues 3 and 20): ``ratio_to_floor`` >= 0.5 on 2 cores.

    .venv/bin/python -m bench.fetch --n 2000 --repeats 3
"""

from __future__ import annotations

import argparse
import hashlib
import http.server
import io
import json
import os
import pwd
import resource
import shutil
import socket
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


def free_port(address: str) -> int:
    """A port free on ``address`` right now (the server binds it a moment later)."""
    with socket.socket() as probe:
        probe.bind((address, 0))
        return probe.getsockname()[1]


def nginx_config(image_dir: Path, work: Path, hosts: int, port: int, uid: int | None = None) -> str:
    """A self-contained nginx config: every path it writes lies in ``work``.

    As root, nginx's workers switch to an unprivileged user (``www-data``/``nobody``) that
    cannot read a private temporary folder, and as a normal user nginx cannot write its
    default temp folders under /var/lib/nginx: so the workers run as the user who starts the
    benchmark (``user`` only applies, and is only allowed to matter, under root) and every
    temp path points into ``work``.
    """
    uid = os.getuid() if uid is None else uid
    user = f"user {pwd.getpwuid(uid).pw_name};" if uid == 0 else ""
    listen = " ".join(f"listen {a}:{port};" for a in host_addresses(hosts))
    temps = " ".join(
        f"{kind}_temp_path {work}/nginx-{kind};"
        for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
    )
    return (
        f"daemon off; worker_processes 1; {user} pid {work}/nginx.pid;"
        f" error_log {work}/nginx-error.log;\n"
        f"events {{ worker_connections 1024; }}\n"
        f"http {{ access_log off; sendfile on; tcp_nopush on; keepalive_requests 100000;"
        f" types {{ image/jpeg jpg; }} {temps}\n"
        f"  server {{ {listen} location /img/ {{ alias {image_dir}/; }} }} }}\n"
    )


def wait_listening(address: str, port: int, proc: subprocess.Popen, log: Path) -> None:
    deadline = time.monotonic() + 30
    while True:
        if proc.poll() is not None:
            detail = log.read_text().strip().splitlines()[-1:] if log.exists() else []
            reason = " ".join(detail) or f"exit status {proc.returncode}"
            raise RuntimeError(f"the benchmark server exited: {reason}")
        try:
            with socket.create_connection((address, port), timeout=1):
                return
        except OSError:
            if time.monotonic() > deadline:
                message = f"the benchmark server is not listening on {address}:{port}"
                raise RuntimeError(message) from None
            time.sleep(0.05)


def start_server(
    image_dir: Path, work: Path, hosts: int, kind: str
) -> tuple[subprocess.Popen, int, str]:
    port_file = work / "port"
    nginx = shutil.which("nginx") or shutil.which("nginx", path="/usr/sbin:/usr/local/sbin")
    if kind == "nginx" and not nginx:
        raise RuntimeError("--server nginx: nginx is not installed (make bench installs it)")
    if kind in ("auto", "nginx") and nginx:
        port = free_port(host_addresses(1)[0])
        conf = work / "nginx.conf"
        conf.write_text(nginx_config(image_dir, work, hosts, port))
        log = work / "nginx-error.log"
        command = [nginx, "-p", str(work), "-e", str(log), "-c", str(conf)]
        proc = subprocess.Popen(command, stderr=subprocess.DEVNULL)
        try:
            wait_listening(host_addresses(1)[0], port, proc, log)
            return proc, port, "nginx"
        except RuntimeError as exc:
            proc.kill()
            proc.wait()
            if kind == "nginx":
                raise
            print(
                f"bench.fetch: note: nginx did not start ({exc}); serving from Python",
                file=sys.stderr,
            )
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

    cpu, started = _own_cpu_s(), time.perf_counter()
    with ThreadPoolExecutor(threads) as pool:
        total = sum(pool.map(read, urls))
    seconds = time.perf_counter() - started
    print(json.dumps({"seconds": seconds, "cpu_s": _own_cpu_s() - cpu, "bytes": total}))


def disk_floor(directory: str, total_bytes: int) -> None:
    """The disk's own floor for the staging shard: ``total_bytes`` written sequentially as the
    shard writer writes them (``storage.direct_file.DurableFile``: O_DIRECT where the
    filesystem takes it, 8 MB buffers, fdatasync at close), no network, no Python per sample."""
    from storage.direct_file import DurableFile

    block = os.urandom(1 << 20)
    path = os.path.join(directory, "disk-floor.bin")
    cpu, started = _own_cpu_s(), time.perf_counter()
    out = DurableFile(path)
    for _ in range(total_bytes // len(block)):
        out.write(block)
    out.write(block[: total_bytes % len(block)])
    out.close()
    seconds = time.perf_counter() - started
    os.remove(path)
    cpu_s = _own_cpu_s() - cpu
    print(
        json.dumps({"seconds": seconds, "cpu_s": cpu_s, "bytes": total_bytes, "direct": out.direct})
    )


# img2dataset in the user's own environment (``--img2dataset PYTHON``), never a dependency:
# its download() with the settings closest to our path (original bytes kept, sha256, 32
# threads, webdataset output), timed after its import like the other children.
IMG2DATASET_CHILD = """
import json, sys, time
from img2dataset import download
url_file, out_dir, threads, processes = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
started = time.perf_counter()
download(url_list=url_file, input_format="txt", output_folder=out_dir,
         output_format="webdataset", processes_count=processes, thread_count=threads,
         resize_mode="no", compute_hash="sha256", number_sample_per_shard=100000,
         timeout=60, retries=0, enable_wandb=False, distributor="multiprocessing",
         disable_all_reencoding=True)
seconds = time.perf_counter() - started
import glob
ok = sum(json.load(open(f))["successes"] for f in glob.glob(out_dir + "/*_stats.json"))
print(json.dumps({"seconds": seconds, "accepted": ok}))
"""


def run_img2dataset(
    python: str, url_file: Path, out_dir: Path, threads: int, total_bytes: int, n: int
) -> dict:
    cpu_before = _children_cpu_s()
    started = time.perf_counter()
    command = [python, "-c", IMG2DATASET_CHILD, str(url_file), str(out_dir), str(threads), "1"]
    env = {**os.environ, "NO_ALBUMENTATIONS_UPDATE": "1"}  # no update check over the network
    proc = subprocess.run(command, capture_output=True, text=True, timeout=3600, env=env)
    if proc.returncode != 0:
        tail = (proc.stderr.strip().splitlines() or ["no output"])[-1]
        raise RuntimeError(f"img2dataset failed: {tail}")
    reported = json.loads(proc.stdout.strip().splitlines()[-1])
    return {
        "seconds": reported["seconds"],
        "process_seconds": time.perf_counter() - started,
        "cpu_s": _children_cpu_s() - cpu_before,
        "accepted": reported["accepted"],
        "bytes": total_bytes * reported["accepted"] // n,
    }


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
            if staging != "probe_only":
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

    if staging == "fetcher_only":
        return fetcher_only(config, process_start)

    import pyarrow

    # pyarrow imports pandas on its first conversion from Python objects (the rejects table):
    # an import like the others above, start-up rather than work, so it happens before the clock.
    pyarrow.array([0])
    cpu, started = _own_cpu_s(), time.perf_counter()
    totals = {"accepted": 0, "bytes": 0, "startup_s": time.time() - process_start}
    for partition in iter_all_partitions(config.sources, config.partition_size):
        out = join(out_dir, partition.id)
        result = run_partition(partition, out, config, sink=StagingSink(out, partition.id))
        totals["accepted"] += result.stats["accepted"]
        totals["bytes"] += result.stats["bytes_accepted"]
    totals["seconds"] = time.perf_counter() - started
    totals["cpu_s"] = _own_cpu_s() - cpu
    print(json.dumps(totals))


def fetcher_only(config, process_start: float) -> None:
    """The fetch layer alone: ``Fetcher.fetch`` on every URL from a pool of threads, with
    the same politeness, and nothing else (no partition, no probe, no sha256)."""
    from concurrent.futures import ThreadPoolExecutor

    from curation.fetch import Fetcher
    from curation.sources import iter_all_partitions

    candidates = [
        candidate
        for partition in iter_all_partitions(config.sources, config.partition_size)
        for candidate in partition.candidates
    ]
    startup_s = time.time() - process_start
    cpu, started = _own_cpu_s(), time.perf_counter()
    with Fetcher(config.fetch) as fetcher, ThreadPoolExecutor(config.fetch.threads) as pool:
        sizes = list(pool.map(lambda candidate: len(fetcher.fetch(candidate).data), candidates))
    totals = {"accepted": len(sizes), "bytes": sum(sizes), "startup_s": startup_s}
    totals["seconds"] = time.perf_counter() - started
    totals["cpu_s"] = _own_cpu_s() - cpu
    print(json.dumps(totals))


# -- orchestration ---------------------------------------------------------------------------


def _own_cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


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
        "--per-host-rate", type=float, default=64.0, help="requests/s per host (ours)"
    )
    parser.add_argument(
        "--server",
        choices=("auto", "nginx", "python"),
        default="auto",
        help="who serves the images: nginx when installed (auto), or a threaded Python server",
    )
    parser.add_argument(
        "--stages",
        action="store_true",
        help="also time the path's prefixes (fetch layer alone; + partition and probe) for "
        "a profile of where the time goes",
    )
    parser.add_argument(
        "--img2dataset",
        metavar="PYTHON",
        help="also time img2dataset, run by this interpreter (an environment that has it)",
    )
    parser.add_argument("--serve", nargs=2, help=argparse.SUPPRESS)
    parser.add_argument("--floor", help=argparse.SUPPRESS)
    parser.add_argument("--disk-floor", nargs=2, help=argparse.SUPPRESS)
    parser.add_argument("--worker", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        return serve(*args.serve, args.hosts)
    if args.floor:
        return floor(args.floor, args.threads)
    if args.disk_floor:
        return disk_floor(args.disk_floor[0], int(args.disk_floor[1]))
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
        # the workers of an nginx started as root read it as the invoking user, others too
        os.chmod(work, 0o755)
        try:
            server, port, server_kind = start_server(work / "img", work, args.hosts, args.server)
        except RuntimeError as exc:
            sys.exit(f"bench.fetch: error: {exc}")
        try:
            url_file = work / "urls.txt"
            hosts = host_addresses(args.hosts)
            # every URL distinct (the query), bodies cycling through the distinct images
            urls = [
                f"http://{hosts[i % len(hosts)]}:{port}/img/{i % args.distinct}.jpg?n={i}"
                for i in range(args.n)
            ]
            url_file.write_text("\n".join(urls) + "\n")
            sizes = [(work / "img" / f"{k}.jpg").stat().st_size for k in range(args.distinct)]
            total_bytes = sum(sizes[i % args.distinct] for i in range(args.n))
            runs: dict[str, list[dict]] = {"floor": [], "shards": [], "hash_only": [], "disk": []}
            runs.update({"probe_only": [], "fetcher_only": []} if args.stages else {})
            for repeat in range(args.repeats):
                runs["floor"].append(_timed(["--floor", str(url_file)], args.threads))
                disk = ["--disk-floor", str(work), str(total_bytes)]
                runs["disk"].append(_timed(disk, args.threads))
                stagings = ["shards", "hash_only"]
                if args.stages:
                    stagings += ["probe_only", "fetcher_only"]
                for staging in stagings:
                    out_dir = work / f"out-{staging}-{repeat}"
                    command = ["--worker", str(url_file), str(out_dir), staging]
                    rate = ("--per-host-rate", str(args.per_host_rate))
                    runs[staging].append(_timed(command, args.threads, rate))
                    shutil.rmtree(out_dir, ignore_errors=True)
                if args.img2dataset:
                    out_dir = work / f"out-img2dataset-{repeat}"
                    try:
                        timed = run_img2dataset(
                            args.img2dataset, url_file, out_dir, args.threads, total_bytes, args.n
                        )
                    except (OSError, RuntimeError, ValueError, subprocess.SubprocessError) as exc:
                        sys.exit(f"bench.fetch: error: --img2dataset {args.img2dataset}: {exc}")
                    runs.setdefault("img2dataset", []).append(timed)
                    shutil.rmtree(out_dir, ignore_errors=True)
        finally:
            server.terminate()
            server.wait(timeout=30)
    best = {name: min(results, key=lambda r: r["seconds"]) for name, results in runs.items()}
    rate = {name: r["bytes"] / r["seconds"] / 1e6 for name, r in best.items()}
    cpu_per_gb = {
        name: round(r["cpu_s"] / (r["bytes"] / 1e9), 2)
        for name, r in best.items()
        if name != "disk"
    }
    ours = best["shards"]
    path_floor = min(rate["floor"], rate["disk"])
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
        # The disk's own floor for the staging shard (the same bytes written sequentially as
        # the shard writer writes them, durable at the end), and the ratio to the slower of the
        # two floors: a durable staging shard cannot outrun the disk, whatever the code does.
        "disk_floor_mb_per_s": round(rate["disk"], 1),
        "disk_direct_io": best["disk"]["direct"],
        "ratio_to_path_floor": round(rate["shards"] / path_floor, 3),
        # interpreter start and imports (storage.shards imports webdataset, which imports torch)
        "startup_s": round(ours["startup_s"], 2),
        # the same ratio with each child's whole life, interpreter start and imports included
        "ratio_to_floor_with_startup": round(
            best["floor"]["process_seconds"] / ours["process_seconds"], 3
        ),
        # CPU seconds per GB of each child's timed work (not its start-up): a figure that other
        # load on a shared machine distorts less than wall time
        "cpu_s_per_gb": cpu_per_gb,
        "runs_s": {name: [round(r["seconds"], 2) for r in rs] for name, rs in runs.items()},
    }
    if args.stages:  # each prefix of the path: MB/s and CPU s per GB
        result["stages"] = {
            name: {"mb_per_s": round(rate[name], 1), "cpu_s_per_gb": cpu_per_gb[name]}
            for name in ("floor", "fetcher_only", "probe_only", "hash_only", "shards", "disk")
            if name in rate and name in cpu_per_gb
        }
        result["stages"]["disk"] = {"mb_per_s": round(rate["disk"], 1)}
    if "img2dataset" in best:  # the same URLs, server and threads, in the same window
        result["img2dataset_accepted"] = best["img2dataset"]["accepted"]
        result["img2dataset_mb_per_s"] = round(rate["img2dataset"], 1)
        result["img2dataset_ratio_to_floor"] = round(rate["img2dataset"] / rate["floor"], 3)
        result["ratio_to_img2dataset"] = round(rate["shards"] / rate["img2dataset"], 2)
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
    process_seconds = time.perf_counter() - started
    reported = json.loads(out)
    # Each child times its own work, after the interpreter started and imported its modules.
    seconds = reported.pop("seconds")
    process_cpu_s = _children_cpu_s() - cpu_before
    return {
        "seconds": seconds,
        "process_seconds": process_seconds,
        "process_cpu_s": process_cpu_s,
        **reported,
    }


if __name__ == "__main__":
    main()
