"""Shared fixtures. ``shared/`` (reference data) lies beside the repository checkout."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

pytest.register_assert_rewrite("tests.bench_runner", "tests.http_fixtures")  # as in tests

os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

REPO_ROOT = Path(__file__).resolve().parents[1]
REFERENCE_DIR = REPO_ROOT.parent / "shared" / "reference"


@pytest.fixture(scope="session")
def reference_dir() -> Path:
    if not REFERENCE_DIR.is_dir():
        pytest.skip(f"reference data not found at {REFERENCE_DIR} (shared/ beside the clone)")
    return REFERENCE_DIR


@pytest.fixture(scope="module")
def one_torch_thread():
    """One intra-op thread for modules of many small forwards: on a small shared CPU, OpenMP
    threads spinning against each other make them tens of times slower."""
    import torch

    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)
