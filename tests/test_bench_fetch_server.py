"""bench.fetch's servers: nginx started as root and as a normal user serves the benchmark's
private folder (it used to answer 403 as root), the Python server stands in where nginx is
missing, and the JSON says which one served."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import urllib.request
from pathlib import Path

import pytest

from bench import fetch as bench_fetch
from tests.bench_runner import bench, run_module

NGINX = shutil.which("nginx") or shutil.which("nginx", path="/usr/sbin:/usr/local/sbin")
needs_nginx = pytest.mark.skipif(NGINX is None, reason="nginx is not installed (make bench)")


@pytest.mark.parametrize(
    "server", ["python", pytest.param("nginx", marks=needs_nginx)], ids=["python", "nginx"]
)
def test_each_server_serves_every_image(server):
    result = bench(
        "fetch", "--server", server, "--n", "24", "--distinct", "3", "--repeats", "1",
        "--stages", timeout=600,
    )  # fmt: skip
    assert result["server"] == {"python": "python-threaded", "nginx": "nginx"}[server]
    assert result["accepted"] == 24 and result["args"]["server"] == server
    assert result["floor_mb_per_s"] > 0 and result["ratio_to_floor"] > 0
    assert result["disk_floor_mb_per_s"] > 0 and isinstance(result["disk_direct_io"], bool)
    assert result["ratio_to_path_floor"] >= result["ratio_to_floor"]
    # the profile: every prefix of the path timed, each with its own CPU per GB
    stages = result["stages"]
    assert list(stages) == ["floor", "fetcher_only", "probe_only", "hash_only", "shards", "disk"]
    for name in ("floor", "fetcher_only", "probe_only", "hash_only", "shards"):
        assert stages[name]["mb_per_s"] > 0 and stages[name]["cpu_s_per_gb"] > 0


def test_a_broken_img2dataset_environment_is_one_clear_error(tmp_path):
    missing = tmp_path / "no-such-python"
    proc = run_module(
        ["bench.fetch", "--server", "python", "--n", "4", "--distinct", "2", "--repeats", "1",
         "--img2dataset", str(missing)],
        timeout=600,
    )  # fmt: skip
    assert proc.returncode == 1 and proc.stdout == ""
    assert (
        proc.stderr.strip()
        .splitlines()[-1]
        .startswith(f"bench.fetch: error: --img2dataset {missing}:")
    )


def test_asking_for_nginx_where_it_is_missing_is_one_clear_error(monkeypatch, tmp_path):
    monkeypatch.setattr(bench_fetch.shutil, "which", lambda *a, **k: None)
    with pytest.raises(RuntimeError, match="nginx is not installed"):
        bench_fetch.start_server(tmp_path, tmp_path, 1, "nginx")


def _serve_one_image(tmp_path: Path, as_user: str | None) -> bytes:
    work = tmp_path / "work"
    (work / "img").mkdir(parents=True)
    body = b"\xff\xd8\xff\xe0 a jpeg body"
    (work / "img" / "0.jpg").write_bytes(body)
    work.chmod(0o700)  # private, as the benchmark's temporary folder is
    prefix: list[str] = []
    if as_user is not None:
        shutil.chown(work, as_user)
        for path in (work / "img", work / "img" / "0.jpg"):
            shutil.chown(path, as_user)
        prefix = ["runuser", "-u", as_user, "--"]
    address = bench_fetch.host_addresses(1)[0]
    port = bench_fetch.free_port(address)
    uid = os.getuid() if as_user is None else 65534
    config = bench_fetch.nginx_config(work / "img", work, 1, port, uid=uid)
    (work / "nginx.conf").write_text(config)
    log = work / "nginx-error.log"
    command = [*prefix, NGINX, "-p", str(work), "-e", str(log), "-c", str(work / "nginx.conf")]
    proc = subprocess.Popen(command, stderr=subprocess.DEVNULL)
    try:
        bench_fetch.wait_listening(address, port, proc, log)
        url = f"http://{address}:{port}/img/0.jpg?n=7"
        with urllib.request.urlopen(url, timeout=10) as response:
            assert response.headers["Content-Type"] == "image/jpeg"
            return response.read()
    finally:
        proc.terminate()
        proc.wait(timeout=30)


@needs_nginx
def test_nginx_as_the_invoking_user_reads_a_private_folder(tmp_path):
    assert _serve_one_image(tmp_path, None) == b"\xff\xd8\xff\xe0 a jpeg body"


@needs_nginx
@pytest.mark.skipif(
    os.getuid() != 0 or shutil.which("runuser") is None, reason="needs root to become nobody"
)
def test_nginx_as_a_normal_user_needs_no_root_paths():
    # no `user` directive, every temp and log path inside the work folder: as `nobody`,
    # nginx cannot write /var/lib/nginx or /var/log/nginx. pytest's tmp_path lies under a
    # folder only root may enter, so this one is made in the system's temporary folder.
    base = Path(tempfile.mkdtemp(prefix="bench-fetch-nobody-"))
    try:
        base.chmod(0o755)
        assert _serve_one_image(base, "nobody") == b"\xff\xd8\xff\xe0 a jpeg body"
    finally:
        shutil.rmtree(base, ignore_errors=True)
