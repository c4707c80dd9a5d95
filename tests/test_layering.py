"""The house rules that a reader checks by eye, checked here (docs/layout.md).

storage/ is the ground; curation/ and dynet/ stand on it and on nothing of each other's;
flows/ is on top; no core package imports Prefect; no module is over 600 lines; the top
level of flows/ holds flows and deployment code only.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("storage", "curation", "dynet", "flows", "bench")
#: What each core package may import of this project's packages.
ALLOWED = {
    "storage": set(),
    "curation": {"storage"},
    "dynet": {"storage"},
}
MAX_LINES = 600


def _modules(package: str) -> list[Path]:
    return sorted((ROOT / package).rglob("*.py"))


def _imported_roots(path: Path) -> set[str]:
    """Top-level names of every import in the file, function-local ones included."""
    roots: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            roots.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            roots.add(node.module.split(".")[0])
    return roots


@pytest.mark.parametrize("package", sorted(ALLOWED))
def test_core_packages_import_only_what_is_below_them(package: str) -> None:
    offences = []
    for path in _modules(package):
        roots = _imported_roots(path)
        ours = roots & set(PACKAGES)
        for name in sorted(ours - ALLOWED[package] - {package}):
            offences.append(f"{path.relative_to(ROOT)} imports {name}")
        if "prefect" in roots:
            offences.append(f"{path.relative_to(ROOT)} imports prefect")
    assert not offences, "\n".join(offences)


def test_the_check_sees_a_forbidden_import(tmp_path: Path) -> None:
    module = tmp_path / "m.py"
    module.write_text("def f():\n    from prefect import flow\n    import flows.cli.app\n")
    assert {"prefect", "flows"} <= _imported_roots(module)


def test_no_module_is_over_600_lines() -> None:
    long = [
        f"{path.relative_to(ROOT)}: {n} lines"
        for package in PACKAGES
        for path in _modules(package)
        if (n := len(path.read_text(encoding="utf-8").splitlines())) > MAX_LINES
    ]
    assert not long, "\n".join(long)


def test_flows_top_level_holds_flows_and_deployment_code_only() -> None:
    top = sorted(p.name for p in (ROOT / "flows").glob("*.py") if p.name != "__init__.py")
    for name in top:
        source = (ROOT / "flows" / name).read_text(encoding="utf-8")
        assert "@flow" in source or "deploy" in source or "work pool" in source, (
            f"flows/{name} defines no flow and no deployment code: it belongs in a subpackage"
        )
    subpackages = sorted(p.parent.name for p in (ROOT / "flows").glob("*/__init__.py"))
    assert subpackages == ["cli", "dashboard", "demo"]


def test_every_module_says_what_it_is() -> None:
    missing = [
        str(path.relative_to(ROOT))
        for package in ("storage", "curation", "dynet", "flows")
        for path in _modules(package)
        if not ast.get_docstring(ast.parse(path.read_text(encoding="utf-8")))
    ]
    assert not missing, "modules without a docstring: " + ", ".join(missing)
