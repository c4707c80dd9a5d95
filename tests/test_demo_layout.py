"""The demo's generated all-in-one data is read by the real fine-tuning and evaluation code."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from dynet.data import discover_items
from dynet.eval_data import discover_task
from flows.demo.layout import write_demo_layout


@pytest.fixture(scope="module")
def layout(tmp_path_factory):
    return write_demo_layout(tmp_path_factory.mktemp("layout"), train_images=9, test_images=6)


def test_training_layout_is_the_official_one(layout):
    lists = {"denoise": layout.denoise_list}
    items = discover_items(layout.train, ["denoise_25", "derain", "dehaze"], lists)
    by_task = {task: [i for i in items if i.task == task] for task in ("derain", "dehaze")}
    assert len(items) == 9
    assert [i.target.name for i in by_task["derain"]] == [
        "norain-1.png",
        "norain-2.png",
        "norain-3.png",
    ]
    assert all(i.target.parent.name == "original" for i in by_task["dehaze"])
    for item in by_task["derain"] + by_task["dehaze"]:
        degraded = np.asarray(Image.open(item.degraded), dtype=float)
        clean = np.asarray(Image.open(item.target), dtype=float)
        assert degraded.shape == clean.shape == (160, 160, 3)
        assert np.abs(degraded - clean).mean() > 1.0  # rain or haze is really there


def test_test_layout_pairs_every_task(layout):
    for task in ("denoise_15", "derain", "dehaze"):
        data = discover_task(layout.root, task)
        assert len(data.pairs) == 2
    hazy = np.asarray(Image.open(discover_task(layout.root, "dehaze").pairs[0].degraded))
    clean = np.asarray(Image.open(discover_task(layout.root, "dehaze").pairs[0].target))
    assert hazy.astype(float).std() < clean.astype(float).std()  # haze lowers contrast


def test_layout_is_deterministic_and_never_overwrites(tmp_path, layout):
    again = write_demo_layout(tmp_path / "again", train_images=9, test_images=6)
    for path in sorted(layout.root.rglob("*.png")):
        twin = again.root / path.relative_to(layout.root)
        assert twin.read_bytes() == path.read_bytes()
    with pytest.raises(FileExistsError, match="already holds"):
        write_demo_layout(layout.root)
    with pytest.raises(ValueError, match="at least 3"):
        write_demo_layout(tmp_path / "small", train_images=2)
