"""The defaults are the documented recipe: every row of docs/recipes.md's tables, held against
``PretrainConfig()`` and ``FinetuneConfig()`` (one table-driven test per stage)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from dynet.train_config import FinetuneConfig, PretrainConfig

RECIPES = Path(__file__).resolve().parents[1] / "docs" / "recipes.md"
STAGES = {"Pre-training": PretrainConfig, "Fine-tuning": FinetuneConfig}


def documented(stage: str) -> list[tuple[str, Any]]:
    """(setting, default) of every table row under the stage's ``## `` heading."""
    rows, section = [], None
    for line in RECIPES.read_text(encoding="utf-8").splitlines():
        if line.startswith("## "):
            section = line[3:].split(" (")[0].strip()
        elif section == stage and line.startswith("| `"):
            cells = [c.strip() for c in line.strip("|").split("|")]
            setting = cells[0].replace("`", "")
            rows.append((setting, yaml.safe_load(cells[1].strip("`"))))
    return rows


def actual(config: dict[str, Any], setting: str) -> Any:
    """The value a setting names: ``a.b``, ``ops[kind].field``, ``ops (kinds)``/``(weights)``."""
    path, _, view = setting.partition(" (")
    node: Any = config
    for part in path.split("."):
        name, _, selector = part.partition("[")
        node = node[name]
        if selector:
            kind = selector.rstrip("]")
            node = next(op for op in node if op["kind"] == kind)
    if view == "kinds)":
        return [op["kind"] for op in node]
    if view == "weights)":
        return [op["weight"] for op in node]
    return node


@pytest.mark.parametrize("stage", list(STAGES))
def test_defaults_equal_the_documented_recipe(stage: str) -> None:
    rows = documented(stage)
    assert len(rows) >= 15, f"no table found for {stage} in {RECIPES}"
    config = STAGES[stage]().model_dump(mode="json")
    wrong = {
        setting: (value, actual(config, setting))
        for setting, value in rows
        if actual(config, setting) != value
    }
    assert not wrong, f"docs/recipes.md (documented, default) differ: {wrong}"


def test_every_row_says_where_it_comes_from() -> None:
    text = RECIPES.read_text(encoding="utf-8")
    for line in text.splitlines():
        if line.startswith("| `"):
            source, why = (c.strip() for c in line.strip("|").split("|")[2:4])
            assert re.match(r"(paper|official|ours)", source), line
            if source.startswith("ours"):
                assert why, f"an 'ours' setting needs its reason: {line}"


def test_partial_sections_keep_the_stage_recipe() -> None:
    """``optim.lr=...`` alone does not fall back to another stage's optimiser."""
    fine = FinetuneConfig.model_validate({"optim": {"lr": 1e-4}})
    assert (fine.optim.name, fine.optim.weight_decay, fine.optim.grad_clip) == ("adamw", 0.01, None)
    pre = PretrainConfig.model_validate({"optim": {"lr": 3e-4}, "model": {"variant_mode": "all"}})
    assert (pre.optim.name, pre.optim.schedule, pre.optim.lr) == ("adam", "constant", 3e-4)
    assert [v.label for v in pre.model.variants] == ["L", "S"]
