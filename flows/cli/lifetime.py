"""Children that end when `mird` ends, however it ends (SIGKILL and the OOM killer included).

A Python ``atexit`` hook or ``finally`` runs on a normal exit or Ctrl-C, never on SIGKILL, and
not on SIGTERM either (Python's default SIGTERM action ends the process at once). So a child
that must not outlive its parent asks the kernel itself: Linux's parent-death signal
(``prctl(PR_SET_PDEATHSIG, sig)``, set in the child between fork and exec through
:func:`die_with_parent`, a ``preexec_fn``) delivers ``sig`` to the child when the thread that
started it ends. Children are therefore started from a thread that outlives them: the main
thread for Prefect's temporary server, the waiting thread for the trainer.

What `mird` starts, and how each ends with it:

- Prefect's temporary server (``python -m uvicorn ... prefect.server.api.server:create_app``,
  ~220 MB): Prefect starts it on the first API call and stops it at exit; :func:`
  start_prefect_server` starts it first, from the main thread, with SIGKILL as its
  parent-death signal (its state is an SQLite database, safe from a kill).
- The trainer (``python -m dynet.train``, or ``torchrun`` and its ranks): SIGTERM as the
  parent-death signal, so the trainer checkpoints and exits, and torchrun stops its ranks
  (they are its own children, in their own sessions); DataLoader workers watch their parent.
- Dask's local cluster (``--dask-local N``): each worker process holds a pipe from its nanny,
  which runs inside `mird`, and exits when the pipe closes (``distributed.process``).
- The demo's HTTP server and the partition workers are threads of `mird` itself.

Elsewhere than Linux the parent-death signal does not exist and :func:`die_with_parent` is a
no-op: there, a killed `mird` can leave its temporary server behind.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

#: linux/prctl.h
PR_SET_PDEATHSIG = 1


def _prctl() -> Callable[..., int] | None:
    """libc's prctl, looked up in the parent (a child between fork and exec should only call
    what is already resolved)."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        return ctypes.CDLL(ctypes.util.find_library("c") or None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None


_PRCTL = _prctl()


def die_with_parent(sig: int = signal.SIGKILL) -> Callable[[], None] | None:
    """A ``preexec_fn`` that makes the child receive ``sig`` when this process (strictly: the
    thread that starts the child) dies; None where the kernel offers no such signal.

    The child also checks that its parent is still the one that forked it: a parent that
    died between fork and prctl would never signal it.
    """
    prctl = _PRCTL
    if prctl is None:
        return None
    parent = os.getpid()

    def preexec() -> None:
        prctl(PR_SET_PDEATHSIG, int(sig), 0, 0, 0)
        if os.getppid() != parent:
            os.kill(os.getpid(), sig)

    return preexec


def popen_kwargs(sig: int = signal.SIGKILL) -> dict[str, Any]:
    """``subprocess`` keyword arguments for a child that dies with this process."""
    preexec = die_with_parent(sig)
    return {"preexec_fn": preexec} if preexec is not None else {}


class _PopenWithParentDeath:
    """Stands in for the ``subprocess`` module inside Prefect's server module while it
    starts the server: ``Popen`` gains the parent-death signal, the rest is unchanged."""

    def __init__(self, sig: int) -> None:
        self._sig = sig

    def Popen(self, *args: Any, **kwargs: Any) -> subprocess.Popen:  # noqa: N802 - the module's name
        for key, value in popen_kwargs(self._sig).items():
            kwargs.setdefault(key, value)
        return subprocess.Popen(*args, **kwargs)

    def __getattr__(self, name: str) -> Any:
        return getattr(subprocess, name)


_PATCH_LOCK = threading.Lock()


@contextmanager
def _server_popen_dies_with_parent(module: Any, sig: int) -> Iterator[None]:
    with _PATCH_LOCK:
        module.subprocess = _PopenWithParentDeath(sig)
        try:
            yield
        finally:
            module.subprocess = subprocess


def start_prefect_server() -> str | None:
    """Start Prefect's temporary server now, from this thread, so that it dies with `mird`.

    Does nothing when a server is configured (``PREFECT_API_URL``). Prefect keeps one
    temporary server per process (``SubprocessASGIServer()`` is a singleton): the instance
    started here, a subclass whose command gets the parent-death signal, is the one every
    later Prefect call finds running and uses. Call it from the main thread (the
    parent-death signal follows the thread that started the child).
    Returns the server's API URL, or None when none was started here.
    """
    from prefect.settings import PREFECT_API_URL

    if PREFECT_API_URL.value():  # a real server: nothing temporary to start
        return None
    import prefect.server.api.server as server_module

    class DyingWithParentServer(server_module.SubprocessASGIServer):
        def _run_uvicorn_command(self) -> subprocess.Popen:
            with _server_popen_dies_with_parent(server_module, signal.SIGKILL):
                return super()._run_uvicorn_command()

    server = DyingWithParentServer()
    server.start()
    return server.api_url
