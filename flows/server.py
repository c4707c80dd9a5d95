"""A local Prefect server, work pool, deployments and worker: `make serve` / `make serve-stop`.

Everything lives under ``.prefect/`` in the checkout (SQLite database, logs, PID files), binds
to 127.0.0.1 only, and has telemetry off. Start: server -> wait for /api/health -> work pool ->
``prefect --no-prompt deploy --all`` -> worker. Stop: worker first, then the server, by PID.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

POOL = "mird-process"


def _home(project: Path) -> Path:
    """State directory: ``.prefect/`` in the checkout, or ``MIRD_PREFECT_HOME`` (tests)."""
    override = os.environ.get("MIRD_PREFECT_HOME")
    return Path(override) if override else project / ".prefect"


def server_env(project: Path, port: int) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        PREFECT_HOME=str(_home(project)),
        PREFECT_API_URL=f"http://127.0.0.1:{port}/api",
        PREFECT_SERVER_ANALYTICS_ENABLED="false",
        PREFECT_SERVER_API_HOST="127.0.0.1",
        PREFECT_SERVER_API_PORT=str(port),
        MIRD_PROJECT_DIR=str(project),
        HF_HUB_OFFLINE="1",
    )
    return env


def _prefect() -> list[str]:
    return [sys.executable, "-m", "prefect"]


def _spawn(name: str, args: list[str], env: dict[str, str], project: Path) -> int:
    home = _home(project)
    home.mkdir(parents=True, exist_ok=True)
    log = open(home / f"{name}.log", "ab")  # noqa: SIM115 - handed to the child process
    process = subprocess.Popen(
        args, env=env, cwd=project, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
    )
    (home / f"{name}.pid").write_text(str(process.pid))
    return process.pid


def wait_healthy(port: int, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    url = f"http://127.0.0.1:{port}/api/health"
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.5)
    raise TimeoutError(f"Prefect server on 127.0.0.1:{port} not healthy after {timeout:.0f} s")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except OSError:
        return False
    return True


def _pid(project: Path, name: str) -> int | None:
    path = _home(project) / f"{name}.pid"
    if not path.exists():
        return None
    pid = int(path.read_text().strip() or 0)
    return pid if pid and _alive(pid) else None


def start(project: Path, port: int = 4200, log=print) -> None:  # noqa: ANN001
    env = server_env(project, port)
    if _pid(project, "server") is None:
        _spawn(
            "server",
            [*_prefect(), "server", "start", "--host", "127.0.0.1", "--port", str(port)],
            env,
            project,
        )
        log(f"server starting on http://127.0.0.1:{port} (log: .prefect/server.log)")
    wait_healthy(port)
    log("server healthy")
    pool = subprocess.run(
        [*_prefect(), "work-pool", "create", POOL, "--type", "process", "--overwrite"],
        env=env,
        cwd=project,
        capture_output=True,
        text=True,
    )
    if pool.returncode != 0:
        raise RuntimeError(f"work pool {POOL}: {pool.stderr.strip() or pool.stdout.strip()}")
    deploy = subprocess.run(
        [*_prefect(), "--no-prompt", "deploy", "--all"],
        env=env,
        cwd=project,
        capture_output=True,
        text=True,
    )
    if deploy.returncode != 0:
        tail = (deploy.stdout + deploy.stderr).strip().splitlines()[-5:]
        raise RuntimeError("prefect deploy failed: " + " | ".join(tail))
    log("deployments created from prefect.yaml")
    if _pid(project, "worker") is None:
        _spawn("worker", [*_prefect(), "worker", "start", "--pool", POOL], env, project)
        log("worker started (log: .prefect/worker.log)")
    log(f"ready: PREFECT_API_URL=http://127.0.0.1:{port}/api prefect deployment run ...")


def stop(project: Path, log=print) -> None:  # noqa: ANN001
    for name in ("worker", "server"):  # the worker first: it must not lose its server
        pid = _pid(project, name)
        if pid is None:
            log(f"{name}: not running")
            continue
        try:
            os.killpg(pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
        for _ in range(100):
            if not _alive(pid):
                break
            time.sleep(0.1)
        else:
            os.killpg(pid, signal.SIGKILL)
        (_home(project) / f"{name}.pid").unlink(missing_ok=True)
        log(f"{name}: stopped (pid {pid})")
