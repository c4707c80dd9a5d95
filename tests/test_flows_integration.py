"""Real Prefect: a local server + worker runs a deployment; a killed build resumes."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from flows import server
from storage.verify import verify_version
from storage.versions import Dataset
from tests.build_sources import served_demo_source, small_build_config

REPO = Path(__file__).resolve().parents[1]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def http_source(tmp_path_factory):
    with served_demo_source(tmp_path_factory.mktemp("http")) as source:
        yield source


@pytest.mark.integration
def test_deployment_run_on_a_local_server(tmp_path, http_source, monkeypatch):
    url_list, expected = http_source
    port = _free_port()
    monkeypatch.setenv("MIRD_PREFECT_HOME", str(tmp_path / "prefect"))
    env = server.server_env(REPO, port)

    def prefect(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            [sys.executable, "-m", "prefect", *args],
            env=env, cwd=REPO, capture_output=True, text=True, timeout=660,
        )  # fmt: skip

    build = (
        "deployment", "run", "build-million-ird/weekly", "--param",
        "config=" + json.dumps(small_build_config(tmp_path / "out", url_list)),
        "--watch", "--watch-timeout", "600",
    )  # fmt: skip
    try:
        server.start(REPO, port, log=lambda _msg: None)
        run = prefect(*build)
        # The same run again: nothing new, nothing published, and the run completes saying so.
        again = prefect(*build)
        summary = prefect("artifact", "inspect", "build-summary", "--limit", "1", "-o", "json")
    finally:
        server.stop(REPO, log=lambda _msg: None)
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-2000:]
    assert "Completed" in run.stdout
    assert again.returncode == 0 and "Completed" in again.stdout, again.stdout[-2000:]
    assert Dataset(str(tmp_path / "out"), "ird").versions() == ["v1"]
    assert "# no new candidates: ird stays at v1" in json.loads(summary.stdout)[0]["data"]
    version = Dataset(str(tmp_path / "out"), "ird").version()
    assert version.manifest().num_rows == list(expected.values()).count("keep")
    assert verify_version(version).ok


def _mird_build(root: Path, url_list: Path, *extra: str) -> subprocess.Popen:
    config = root.parent / f"{root.name}.json"
    config.write_text(json.dumps(small_build_config(root, url_list, partition_size=2)))
    env = {**os.environ, "PREFECT_HOME": str(root.parent / "prefect-home")}
    return subprocess.Popen(
        [sys.executable, "-m", "flows.cli", "build", "--config", str(config), *extra],
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )


@pytest.mark.slow
def test_killed_build_reruns_to_the_same_version(tmp_path, http_source):
    url_list, _ = http_source
    # Uninterrupted reference build.
    reference = _mird_build(tmp_path / "ref", url_list)
    out, err = reference.communicate(timeout=900)
    assert reference.returncode == 0, err[-2000:]

    # Killed with SIGKILL once two partitions are done, then rerun.
    victim = _mird_build(tmp_path / "killed", url_list)
    builds = tmp_path / "killed" / "ird" / "_builds"
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline and len(list(builds.glob("*/partitions/*/_stats.json"))) < 2:
        assert victim.poll() is None, victim.stderr.read()[-2000:]
        time.sleep(0.2)
    os.killpg(victim.pid, signal.SIGKILL)
    victim.wait()
    assert not (tmp_path / "killed" / "ird" / "versions.json").exists()
    rerun = _mird_build(tmp_path / "killed", url_list)
    out, err = rerun.communicate(timeout=900)
    assert rerun.returncode == 0, err[-2000:]

    for rel in (
        "manifest/part-00000.parquet",
        "shards/shard-000000.tar",
        "rejects/part-00000.parquet",
    ):
        assert (tmp_path / "ref/ird/v1" / rel).read_bytes() == (
            tmp_path / "killed/ird/v1" / rel
        ).read_bytes(), rel


@pytest.mark.slow
def test_build_on_a_local_dask_cluster(tmp_path, http_source):
    url_list, expected = http_source
    build = _mird_build(tmp_path / "dask", url_list, "--dask-local", "2")
    out, err = build.communicate(timeout=900)
    assert build.returncode == 0, err[-2000:]
    uri, summary = out.strip().splitlines()  # the URI alone, then what was kept
    assert uri.endswith("/ird/v1") and summary.startswith("kept ")
    version = Dataset(str(tmp_path / "dask"), "ird").version()
    assert version.manifest().num_rows == list(expected.values()).count("keep")
    assert verify_version(version).ok


WATCHED_BUILD = """
import json, sys
from flows.build_flow import build_million_ird, watching
from flows.cli.lifetime import start_prefect_server

start_prefect_server()
config = json.loads(sys.argv[1])
for _ in range(2):  # the second build finds nothing new and says so to its watcher
    progress, notices = [], []
    with watching(progress=lambda *call: progress.append(call), notice=notices.append):
        ref = build_million_ird(config)
    print(json.dumps({"ref": [ref.root, ref.name, ref.version, ref.uri],
                      "progress": progress, "notices": notices}))
"""


@pytest.mark.slow
def test_a_local_build_reports_to_its_watcher_and_returns_its_version(tmp_path, http_source):
    """Progress and notices reach the caller that passed them in (not a module global), the
    flow returns which version it published, typed, and nothing is left set afterwards."""
    url_list, _ = http_source
    config = small_build_config(tmp_path / "out", url_list, partition_size=2)
    env = {
        **os.environ,
        "PREFECT_HOME": str(tmp_path / "prefect-home"),
        "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "120",  # as `mird` sets it
        "PYTHONPATH": str(REPO),
    }
    run = subprocess.run(
        [sys.executable, "-c", WATCHED_BUILD, json.dumps(config)],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=900,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr[-3000:]
    first, again = (json.loads(line) for line in run.stdout.strip().splitlines()[-2:])
    root = str(tmp_path / "out")
    assert first["ref"] == [root, "ird", "v1", f"{root}/ird/v1"]
    partitions = [call for call in first["progress"] if call[0] == "partitions"]
    assert partitions and partitions[-1][1] == partitions[-1][2] > 1  # every partition done
    assert first["notices"] == []
    assert again["ref"] == first["ref"] and again["progress"] == []
    assert again["notices"][0] == "no new candidates: ird stays at v1"
