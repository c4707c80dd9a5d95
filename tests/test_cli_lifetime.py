"""A killed `mird` leaves nothing running, and a rebuild with nothing new publishes nothing.

`mird` is killed alone (SIGKILL to its pid, not to its process group): whatever it started
must end by itself (``flows.cli.lifetime``). The process table is read from /proc (Linux).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from flows.cli.lifetime import die_with_parent
from tests.build_sources import served_demo_source, small_build_config

REPO = Path(__file__).resolve().parents[1]
PROC = Path("/proc")

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="Linux /proc")


# ------------------------------------------------------------------ the process table


def _stat(pid: int) -> tuple[int, str, str] | None:
    """(parent pid, state, start time) of a live process, None when it is gone."""
    try:
        text = (PROC / str(pid) / "stat").read_text()
    except OSError:
        return None
    fields = text[text.rindex(")") + 2 :].split()  # after "pid (comm) "
    return int(fields[1]), fields[0], fields[19]


def _cmdline(pid: int) -> str:
    try:
        return (PROC / str(pid) / "cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""


def descendants(root: int) -> dict[int, tuple[str, str]]:
    """Every live descendant of ``root``: pid -> (start time, command line)."""
    parents: dict[int, int] = {}
    for entry in PROC.iterdir():
        if entry.name.isdigit() and (stat := _stat(int(entry.name))) is not None:
            parents[int(entry.name)] = stat[0]
    found: dict[int, tuple[str, str]] = {}
    frontier = [root]
    while frontier:
        parent = frontier.pop()
        for pid, ppid in parents.items():
            if ppid == parent and pid not in found and (stat := _stat(pid)) is not None:
                found[pid] = (stat[2], _cmdline(pid))
                frontier.append(pid)
    return found


def alive(processes: dict[int, tuple[str, str]]) -> dict[int, str]:
    """Those still running: the same pid with the same start time, not a zombie."""
    left = {}
    for pid, (started, cmdline) in processes.items():
        stat = _stat(pid)
        if stat is not None and stat[2] == started and stat[1] != "Z":
            left[pid] = cmdline
    return left


def kill_alone_and_wait(victim: subprocess.Popen, seen: dict[int, tuple[str, str]]) -> dict:
    """SIGKILL ``victim`` only; return what of ``seen`` still runs after a few seconds (and
    kill that, so that a failing test leaves nothing behind either)."""
    seen.update(descendants(victim.pid))
    os.kill(victim.pid, signal.SIGKILL)
    victim.wait()
    deadline = time.monotonic() + 10
    while alive(seen) and time.monotonic() < deadline:
        time.sleep(0.2)
    left = alive(seen)
    for pid in left:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    return left


def mird(*args: str, home: Path) -> subprocess.Popen:
    env = {
        **os.environ,
        "PREFECT_HOME": str(home),
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "OMP_NUM_THREADS": "1",
    }
    return subprocess.Popen(
        [sys.executable, "-m", "flows.cli", *args],
        cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        start_new_session=True,  # its own group: only the test's kill reaches it
    )  # fmt: skip


def wait_for(
    victim: subprocess.Popen, ready: Callable[[dict[int, tuple[str, str]]], bool], timeout: float
) -> dict[int, tuple[str, str]]:
    """Poll until ``ready(descendants)``; returns every descendant seen on the way."""
    seen: dict[int, tuple[str, str]] = {}
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert victim.poll() is None, victim.communicate()[1][-3000:]
        seen.update(descendants(victim.pid))
        if ready(seen):
            return seen
        time.sleep(0.2)
    victim.kill()
    pytest.fail(f"not ready after {timeout:.0f} s; descendants: {seen}")


def _server(seen: dict[int, tuple[str, str]]) -> bool:
    return any("prefect.server.api.server:create_app" in c for _, c in seen.values())


# ------------------------------------------------------------------ the mechanism


def test_parent_death_signal_kills_the_child():
    # A parent that starts `sleep` with die_with_parent, then is killed: sleep goes too.
    script = (
        "import subprocess, sys, time; from flows.cli.lifetime import popen_kwargs; "
        "p = subprocess.Popen(['sleep', '300'], **popen_kwargs()); "
        "print(p.pid, flush=True); time.sleep(300)"
    )
    parent = subprocess.Popen(
        [sys.executable, "-c", script], cwd=REPO, stdout=subprocess.PIPE, text=True
    )
    child = int(parent.stdout.readline())
    seen = {child: (_stat(child)[2], "sleep 300")}
    assert alive(seen)
    assert kill_alone_and_wait(parent, seen) == {}
    assert die_with_parent() is not None  # Linux: the mechanism exists here


# ------------------------------------------------------------------ killed commands


@pytest.fixture(scope="module")
def http_source(tmp_path_factory):
    with served_demo_source(tmp_path_factory.mktemp("http")) as source:
        yield source


@pytest.mark.slow
def test_killed_build_leaves_nothing_and_a_rebuild_with_nothing_new_publishes_nothing(
    tmp_path, http_source
):
    url_list, expected = http_source
    root, home = tmp_path / "out", tmp_path / "prefect"
    config = tmp_path / "build.json"
    config.write_text(json.dumps(small_build_config(root, url_list, partition_size=2)))
    build = ("build", "--config", str(config))

    # Killed mid-run (the temporary server up, a partition done): nothing of it survives.
    victim = mird(*build, home=home)
    done = root / "ird" / "_builds"
    seen = wait_for(
        victim,
        lambda seen: _server(seen) and any(done.glob("*/partitions/*/_stats.json")),
        timeout=600,
    )
    assert kill_alone_and_wait(victim, seen) == {}
    assert not (root / "ird" / "versions.json").exists()

    # The rerun finishes the build; the same build again finds nothing new.
    first = mird(*build, home=home)
    out, err = first.communicate(timeout=900)
    assert first.returncode == 0, err[-3000:]
    assert out.splitlines()[0] == f"{root}/ird/v1"
    index = (root / "ird" / "versions.json").read_bytes()
    again = mird(*build, home=home)
    out, err = again.communicate(timeout=900)
    assert again.returncode == 0, err[-3000:]
    assert out.splitlines() == [
        "no new candidates: ird stays at v1",
        f"{len(expected)} candidates already known, skipped",
    ]
    assert (root / "ird" / "versions.json").read_bytes() == index
    assert not (root / "ird" / "v2").exists()


@pytest.mark.slow
def test_killed_dask_build_leaves_nothing(tmp_path, http_source):
    url_list, _ = http_source
    config = tmp_path / "build.json"
    config.write_text(json.dumps(small_build_config(tmp_path / "out", url_list)))
    victim = mird("build", "--config", str(config), "--dask-local", "2", home=tmp_path / "p")
    seen = wait_for(
        victim,
        lambda seen: _server(seen) and sum("multiprocessing" in c for _, c in seen.values()) >= 2,
        timeout=600,
    )
    assert kill_alone_and_wait(victim, seen) == {}


@pytest.mark.slow
def test_killed_demo_leaves_nothing(tmp_path):
    # Killed while training: the server, the trainer and its loader workers all end.
    victim = mird(
        "demo", "--out", str(tmp_path / "demo"), "--candidates", "40",
        "--pretrain-steps", "100000", "--finetune-steps", "1", home=tmp_path / "prefect",
    )  # fmt: skip
    seen = wait_for(
        victim,
        lambda seen: _server(seen) and any("dynet.train" in c for _, c in seen.values()),
        timeout=900,
    )
    time.sleep(3)  # let the trainer start its loader workers
    assert kill_alone_and_wait(victim, seen) == {}
