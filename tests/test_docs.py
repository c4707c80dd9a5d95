"""The docs cannot rot: the configuration reference, `--help` examples and the README.

Each check reads the documentation as a user would (Markdown tables, YAML blocks, command
lines) and holds it against the code: the pydantic models, the typer command tree, the
Arrow schemas and prefect.yaml.
"""

from __future__ import annotations

import copy
import inspect
import json
import re
import shlex
from pathlib import Path
from typing import Any

import pytest
import typer
import yaml
from pydantic import BaseModel, ValidationError
from pydantic_core import to_jsonable_python
from typer.testing import CliRunner

from curation.config import BuildConfig
from dynet.train_config import FinetuneConfig, PretrainConfig, build_config
from flows.cli import config_reference
from flows.cli.app import app
from flows.train_flow import PipelineConfig

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
CONFIG_DOC = ROOT / "docs" / "configuration.md"

# Section anchor in docs/configuration.md -> model, and the smallest valid config of each.
SECTION_MODELS: dict[str, type[BaseModel]] = {
    "build": BuildConfig,
    "pretrain": PretrainConfig,
    "finetune": FinetuneConfig,
    "pipeline": PipelineConfig,
}
MINIMAL: dict[str, dict[str, Any]] = {
    "build": {"root": "datasets"},
    "pretrain": {},
    "finetune": {},
    "pipeline": {"build": {"root": "datasets"}},
}
# List items that need a field to be valid at all.
MINIMAL_ITEMS: dict[str, dict[str, Any]] = {"curation.sources[]": {"uri": "urls.txt"}}
OMIT = object()  # config_with: create the path's parents only


# ------------------------------------------------------------------ configuration reference


def _cells(line: str) -> list[str]:
    return [c.strip().replace("\\|", "|") for c in re.split(r"(?<!\\)\|", line)[1:-1]]


def documented_rows() -> list[tuple[str, str, str]]:
    """(section, dotted path, default cell) of every table row of docs/configuration.md."""
    rows, section = [], None
    for line in CONFIG_DOC.read_text(encoding="utf-8").splitlines():
        if match := re.fullmatch(r'<a id="(\w+)"></a>', line):
            section = match.group(1)
        elif line.startswith("| `") and section:
            cells = _cells(line)
            rows.append((section, cells[0].strip("`"), cells[2]))
    return rows


def long_defaults() -> dict[tuple[str, str], Any]:
    """Defaults documented as YAML under a table, by (section, path)."""
    out, section = {}, None
    text = CONFIG_DOC.read_text(encoding="utf-8")
    pattern = re.compile(r'<a id="(\w+)"></a>|Default of `([^`]+)`:\n\n```yaml\n(.*?)\n```', re.S)
    for match in pattern.finditer(text):
        if match.group(1):
            section = match.group(1)
        else:
            out[(section, match.group(2))] = yaml.safe_load(match.group(3))
    return out


def _parts(path: str) -> list[tuple[str, str | None]]:
    """``a.b[kind=x].c`` -> [("a", None), ("b", "kind=x"), ("c", None)]; ``[]`` -> ""."""
    out = []
    for part in path.split("."):
        name, bracket, rest = part.partition("[")
        out.append((name, rest[:-1] if bracket else None))
    return out


def config_with(section: str, path: str, value: Any) -> dict[str, Any]:
    """The section's minimal config with ``value`` set at the documented ``path``."""
    data = copy.deepcopy(MINIMAL[section])
    node = data
    parts = _parts(path)
    prefix = ""
    for index, (name, selector) in enumerate(parts):
        prefix = f"{prefix}.{name}" if prefix else name
        last = index == len(parts) - 1
        if selector is None:
            if last and value is not OMIT:
                node[name] = value
            elif last:
                pass
            else:
                node = node.setdefault(name, {})
            continue
        item = copy.deepcopy(MINIMAL_ITEMS.get(f"{prefix}[]", {}))
        if selector:
            key, _, choice = selector.partition("=")
            item[key] = choice
        node[name] = [item]
        node = item
        prefix += f"[{selector}]"
    return data


def value_at(model: BaseModel, path: str) -> Any:
    value: Any = model
    for name, selector in _parts(path):
        value = getattr(value, name)
        if selector is not None:
            value = value[0]
    return to_jsonable_python(value)


def test_configuration_reference_is_generated_from_the_models():
    assert CONFIG_DOC.read_text(encoding="utf-8") == config_reference.generate(), (
        "docs/configuration.md is stale: python -m flows.cli.config_reference --write "
        "docs/configuration.md"
    )


def test_check_flag_says_stale_in_one_line(tmp_path, capsys):
    doc = tmp_path / "configuration.md"
    assert config_reference.main(["--write", str(doc)]) == 0
    assert config_reference.main(["--check", str(doc)]) == 0
    doc.write_text(doc.read_text().replace("million-ird", "million-xyz", 1))
    capsys.readouterr()
    assert config_reference.main(["--check", str(doc)]) == 1
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "stale" in err and "--write" in err
    assert config_reference.main(["--check", str(tmp_path / "missing.md")]) == 1


def schema_paths(schema: dict[str, Any], stop: set[str]) -> set[str]:
    """Dotted field paths read from pydantic's JSON schema (independent of the generator)."""
    defs = schema.get("$defs", {})

    def resolve(node: dict[str, Any]) -> dict[str, Any]:
        while "$ref" in node:
            node = defs[node["$ref"].rsplit("/", 1)[-1]]
        return node

    def objects(node: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
        """('', object) for a nested model (or optional one); none for plain values."""
        if "$ref" in node and node["$ref"].rsplit("/", 1)[-1] in stop:
            return []
        node = resolve(node)
        if node.get("type") == "object" and "properties" in node:
            return [("", node)]
        for union in ("anyOf", "oneOf"):
            if union in node:
                return [o for option in node[union] for o in objects(option)]
        return []

    def walk(node: dict[str, Any], prefix: str) -> set[str]:
        paths = set()
        for name, prop in node["properties"].items():
            path = f"{prefix}.{name}" if prefix else name
            paths.add(path)
            for _, child in objects(prop):
                paths |= walk(child, path)
            items = resolve(prop).get("items")
            if items is None:
                continue
            items = resolve(items)
            mapping = items.get("discriminator", {}).get("mapping")
            if mapping:
                field = items["discriminator"]["propertyName"]
                for value, ref in mapping.items():
                    member = defs[ref.rsplit("/", 1)[-1]]
                    paths |= walk(member, f"{path}[{field}={value}]")
            elif items.get("type") == "object" and "properties" in items:
                paths |= walk(items, f"{path}[]")
        return paths

    return walk(resolve(schema), "")


@pytest.mark.parametrize("section", list(SECTION_MODELS))
def test_every_field_of_the_model_is_documented(section):
    model = SECTION_MODELS[section]
    stop = {m.__name__ for key, m in SECTION_MODELS.items() if key != section}
    expected = schema_paths(model.model_json_schema(), stop)
    documented = [path for s, path, _ in documented_rows() if s == section]
    assert len(documented) == len(set(documented))
    assert set(documented) == expected


@pytest.mark.parametrize("section", list(SECTION_MODELS))
def test_every_documented_field_resolves_with_its_documented_default(section):
    model = SECTION_MODELS[section]
    longs = long_defaults()
    rows = [(path, cell) for s, path, cell in documented_rows() if s == section]
    assert rows
    checked = 0
    for path, cell in rows:
        if cell.startswith("`"):
            value, known = json.loads(cell.strip("`")), True
        elif (section, path) in longs:
            value, known = longs[(section, path)], True
        else:  # a section ("(section below)", "(see ...)") or a required field
            value, known = ({} if cell.startswith(("(", "required (")) else "x"), False
        try:
            validated = model.model_validate(config_with(section, path, value))
        except ValidationError as exc:
            unknown = [e for e in exc.errors() if e["type"] == "extra_forbidden"]
            assert not unknown, f"{section}: {path} is not a field: {unknown[0]['loc']}"
            assert not known, f"{section}: documented default of {path} is invalid: {exc}"
            continue
        if known:  # valid where documented; now: is it the default?
            assert value_at(validated, path) == value
            # Parents stay unset (a parent may default to its own instance, as
            # FinetuneConfig's model does), except lists, which need an item to read.
            bare = config_with(section, path, OMIT) if "[" in path else MINIMAL[section]
            default = model.model_validate(bare)
            assert value_at(default, path) == value, f"{section}: default of {path}"
            checked += 1
    assert checked >= len(rows) // 2


def test_documented_defaults_match_a_default_instance():
    """Read back from real instances: FinetuneConfig's own optim/model defaults included."""
    rows = {(s, p): c for s, p, c in documented_rows()}
    assert rows[("finetune", "optim.lr")] == f"`{FinetuneConfig().optim.lr}`"
    assert rows[("pretrain", "optim.lr")] == f"`{PretrainConfig().optim.lr}`"
    assert rows[("finetune", "model.variant_mode")] == '`"official"`'
    assert rows[("build", "root")] == "required"


# ------------------------------------------------------------------------ `--help` examples


def command_tree() -> dict[str, Any]:
    """Every command of `mird` by its words, e.g. "server start", groups included."""
    out: dict[str, Any] = {}

    def walk(command: Any, words: list[str]) -> None:
        if words:
            out[" ".join(words)] = command
        for name, sub in getattr(command, "commands", {}).items():
            walk(sub, [*words, name])

    walk(typer.main.get_command(app), [])
    return out


def parse_command_line(line: str) -> None:
    """Parse a `mird ...` line against the real command tree, as `mird` would, without running
    it: unknown commands, options or bad values raise."""
    words = shlex.split(line, comments=True)
    assert words[0].endswith("mird"), line
    command = typer.main.get_command(app)
    args = words[1:]
    parent = command.make_context("mird", [], resilient_parsing=True)
    while hasattr(command, "commands"):
        assert args, f"{line}: a group without a command"
        name = args.pop(0)
        assert name in command.commands, f"{line}: no command {name!r}"
        command = command.commands[name]
        if hasattr(command, "commands"):
            parent = command.make_context(name, [], parent=parent, resilient_parsing=True)
    command.make_context(name, args, parent=parent)


def help_examples(help_text: str) -> list[str]:
    text = inspect.cleandoc(help_text)
    if "Example" not in text:
        return []
    after = text.split("Example", 1)[1]
    return [line.strip() for line in after.splitlines() if line.strip().startswith("mird ")]


def documented_commands() -> dict[str, Any]:
    # `demo` belongs to the lead's first README part; it is held to the rule once it has one.
    return {
        words: command
        for words, command in command_tree().items()
        if words != "demo" or "Example" in (command.help or "")
    }


def test_every_command_is_checked():
    names = set(command_tree())
    assert {"build", "verify", "train", "server start", "weights fetch"} <= names


@pytest.mark.parametrize("words", sorted(documented_commands()))
def test_help_shows_an_example(words):
    result = CliRunner().invoke(app, [*words.split(), "--help"])
    assert result.exit_code == 0, result.output
    assert "Example" in result.output
    assert f"mird {words}" in result.output


@pytest.mark.parametrize("words", sorted(documented_commands()))
def test_help_examples_parse_and_fit_80_columns(words):
    help_text = documented_commands()[words].help or ""
    examples = help_examples(help_text)
    assert examples, f"mird {words} --help has no example line"
    for line in examples:
        assert line.startswith(f"mird {words}"), line
        parse_command_line(line)
    # Rich keeps the help's line breaks: a line wider than the terminal would wrap mid-line.
    paragraphs = inspect.cleandoc(help_text).split("\n\n")
    for paragraph in paragraphs[1:]:
        for line in paragraph.splitlines():
            assert len(line) <= 78, f"mird {words}: help line over 78 columns: {line!r}"


def test_parse_command_line_rejects_what_mird_rejects():
    with pytest.raises(AssertionError):
        parse_command_line("mird no-such-command")
    with pytest.raises(Exception, match="No such option|no such option"):
        parse_command_line("mird verify ROOT/NAME --no-such-option")
    with pytest.raises(Exception, match="valid integer"):
        parse_command_line("mird patches ROOT/NAME --size big")


# ------------------------------------------------------------------------------- README


def readme() -> str:
    return README.read_text(encoding="utf-8")


def fenced_blocks(language: str) -> list[str]:
    return re.findall(rf"```{language}\n(.*?)```", readme(), re.S)


def test_readme_links_the_configuration_reference():
    assert "(docs/configuration.md)" in readme()


def test_readme_config_examples_validate():
    seen = set()
    for block in fenced_blocks("yaml"):
        first = block.splitlines()[0]
        match = re.fullmatch(r"# (\w+)\.yaml.*", first)
        assert match, f"README yaml block must start with '# <kind>.yaml': {first!r}"
        kind = match.group(1)
        data = yaml.safe_load(block)
        if kind == "build":
            BuildConfig.model_validate(data)
        elif kind in ("pretrain", "finetune"):
            build_config(data, kind, f"README {kind}.yaml")
        else:
            pytest.fail(f"README yaml block of unknown kind {kind!r}")
        seen.add(kind)
    assert {"build", "pretrain"} <= seen


def readme_command_lines() -> list[str]:
    lines = []
    for block in fenced_blocks("bash"):
        for line in block.replace("\\\n", " ").splitlines():
            line = line.split(" #", 1)[0].strip()
            if re.match(r"(\.venv/bin/)?mird ", line):
                lines.append(line)
    return lines


def test_readme_mird_command_lines_parse():
    lines = readme_command_lines()
    assert len(lines) >= 8
    for line in lines:
        parse_command_line(line)


def deployments() -> set[str]:
    """``flow-name/deployment-name`` of every deployment in prefect.yaml."""
    import importlib

    spec = yaml.safe_load((ROOT / "prefect.yaml").read_text())
    names = set()
    for deployment in spec["deployments"]:
        module_path, function = deployment["entrypoint"].split(":")
        module = importlib.import_module(module_path.removesuffix(".py").replace("/", "."))
        names.add(f"{getattr(module, function).name}/{deployment['name']}")
    return names


def test_readme_deployments_exist_in_prefect_yaml():
    text = readme()
    known = deployments()
    mentioned = set(re.findall(r"deployment run '([^']+)'", text))
    assert mentioned and mentioned <= known, mentioned - known
    listed = set(re.findall(r"`([a-z-]+/(?:default|weekly))`", text))
    assert listed == known, known ^ listed


def schema_table(marker: str) -> list[tuple[str, str, str]]:
    """Rows (column, type, required) of the README table right after the marker line."""
    lines = readme().splitlines()
    start = next(i for i, line in enumerate(lines) if marker in line)
    rows = []
    for line in lines[start + 1 :]:
        if not line.startswith("|"):
            if rows or line.startswith("#"):
                break
            continue
        cells = _cells(line)
        if cells[0].startswith("`"):
            rows.append((cells[0].strip("`"), cells[1].strip("`"), cells[2]))
    return rows


@pytest.mark.parametrize(
    "name", ["MANIFEST_SCHEMA", "REJECTS_SCHEMA", "REJECT_SAMPLES_SCHEMA", "SHARD_STATS_SCHEMA"]
)
def test_readme_schema_tables_match_storage_schemas(name):
    import storage.schemas

    schema = getattr(storage.schemas, name)
    expected = [(f.name, str(f.type), "no" if f.nullable else "yes") for f in schema]
    assert schema_table(f"`storage.schemas.{name}`") == expected


def test_readme_reasons_table_is_generated_from_the_catalogue():
    from curation.reasons import REASONS, markdown_table

    table = markdown_table()
    assert table in readme(), (
        "README's table of reject reasons is stale: paste curation.reasons.markdown_table()"
    )
    assert len(table.splitlines()) == len(REASONS) + 2
    start = readme().index(table)
    assert "curation.reasons" in readme()[start - 400 : start]


def test_readme_names_the_official_layout_folders():
    from dynet.data import TASK_FOLDERS
    from dynet.eval_data import TASK_SPECS

    text = readme()
    for folder in TASK_FOLDERS.values():
        assert f"{folder}/" in text
    for spec in TASK_SPECS.values():
        assert spec.folder in text
    for sub in ("rainy", "gt", "original", "synthetic", "input", "target"):
        assert sub in text
