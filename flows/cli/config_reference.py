"""The configuration reference (docs/configuration.md), generated from the pydantic models.

The models are the one source of truth for every option (DESIGN.md), so the reference is
written from them, never by hand: every field of every nested model, with its dotted name,
type, default, constraints and description.

    python -m flows.cli.config_reference                                 # print the Markdown
    python -m flows.cli.config_reference --write docs/configuration.md  # regenerate the file
    python -m flows.cli.config_reference --check docs/configuration.md  # exit 1 when stale
"""

from __future__ import annotations

import argparse
import importlib
import inspect
import json
import sys
import types
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal, Union, get_args, get_origin

import annotated_types
from pydantic import BaseModel
from pydantic.fields import FieldInfo
from pydantic_core import PydanticUndefined, to_jsonable_python

DEFAULT_PATH = "docs/configuration.md"
#: Defaults longer than this (as JSON) are shown as YAML under their table, not in a cell.
MAX_CELL_DEFAULT = 60
SECTION_DEFAULT = "(section below)"
REQUIRED = "required"


@dataclass(frozen=True)
class Section:
    """One top-level model of the reference and where users meet it."""

    key: str  # short name, e.g. "build"
    target: str  # "module:Class"
    title: str
    used_by: str


SECTIONS: tuple[Section, ...] = (
    Section(
        "build",
        "curation.config:BuildConfig",
        "Build",
        "`mird build --config build.yaml [KEY=VALUE ...]` (options such as `--root` and `--name` "
        "override the file, and dotted settings override both, e.g. `curation.probe.min_side=512`;"
        " `mird explain` and `mird calibrate` take them too), the parameter `config` of the "
        "Prefect flow `build-million-ird`, and `build` of "
        "the pipeline.",
    ),
    Section(
        "pretrain",
        "dynet.train_config:PretrainConfig",
        "Pre-training",
        "`mird train pretrain --config pretrain.yaml [KEY=VALUE ...]` (overrides use these "
        "dotted names, e.g. `optim.lr=2e-4`), the parameter `config` of the flow "
        "`pretrain-dynet`, and `pretrain` of the pipeline.",
    ),
    Section(
        "finetune",
        "dynet.train_config:FinetuneConfig",
        "Fine-tuning",
        "`mird train finetune --config finetune.yaml [KEY=VALUE ...]`, the parameter `config` "
        "of the flow `finetune-dynet`, and `finetune` of the pipeline. Its defaults are the "
        "paper's all-in-one recipe.",
    ),
    Section(
        "pipeline",
        "flows.train_flow:PipelineConfig",
        "Pipeline",
        "the parameter `config` of the flow `million-ird-pipeline` (build -> patches -> "
        "pre-training -> fine-tuning -> evaluation).",
    ),
)


@dataclass
class Row:
    path: str
    type: str
    default: str
    constraints: str
    description: str


@dataclass
class Group:
    """The fields of one model at one place in the tree (one table)."""

    path: str  # "" for the section's model itself
    model: type[BaseModel]
    rows: list[Row] = field(default_factory=list)
    long_defaults: list[tuple[str, Any]] = field(default_factory=list)


def load_model(target: str) -> type[BaseModel]:
    module, _, name = target.partition(":")
    return getattr(importlib.import_module(module), name)


# ----------------------------------------------------------------------------- types


def type_name(annotation: Any) -> str:
    """A short, readable spelling of a field's annotation."""
    if annotation is type(None):
        return "None"
    if annotation is Any:
        return "Any"
    origin = get_origin(annotation)
    args = get_args(annotation)
    if origin is Annotated:
        return type_name(args[0])
    if origin is Literal:
        return " | ".join(json.dumps(a) for a in args)
    if origin in (Union, types.UnionType):
        return " | ".join(type_name(a) for a in args)
    if origin in (list, set, frozenset, tuple, dict):
        inner = ", ".join("..." if a is Ellipsis else type_name(a) for a in args)
        return f"{origin.__name__}[{inner}]"
    if isinstance(annotation, type):
        return annotation.__name__
    return str(annotation)


def _without_none(annotation: Any) -> Any:
    if get_origin(annotation) in (Union, types.UnionType):
        rest = [a for a in get_args(annotation) if a is not type(None)]
        if len(rest) == 1:
            return rest[0]
    return annotation


def _model(annotation: Any) -> type[BaseModel] | None:
    annotation = _without_none(annotation)
    if inspect.isclass(annotation) and issubclass(annotation, BaseModel):
        return annotation
    return None


def _list_items(annotation: Any) -> list[tuple[str, type[BaseModel]]]:
    """For ``list[Model]``: ``[("[]", Model)]``; for a list of a discriminated union of models:
    ``[("[kind=noise]", NoiseOp), ...]``; otherwise nothing."""
    annotation = _without_none(annotation)
    if get_origin(annotation) is not list:
        return []
    (item,) = get_args(annotation)
    discriminator = None
    if get_origin(item) is Annotated:
        item, *extras = get_args(item)
        for extra in extras:
            if isinstance(extra, FieldInfo) and isinstance(extra.discriminator, str):
                discriminator = extra.discriminator
    if (model := _model(item)) is not None:
        return [("[]", model)]
    if discriminator and get_origin(item) in (Union, types.UnionType):
        members = [_model(a) for a in get_args(item)]
        if all(members):
            return [
                (f"[{discriminator}={m.model_fields[discriminator].default}]", m)
                for m in members
                if m is not None
            ]
    return []


# ----------------------------------------------------------------------------- cells


def constraints_text(info: FieldInfo) -> str:
    parts = []
    symbols = {
        annotated_types.Ge: (">=", "ge"),
        annotated_types.Gt: (">", "gt"),
        annotated_types.Le: ("<=", "le"),
        annotated_types.Lt: ("<", "lt"),
        annotated_types.MultipleOf: ("multiple of", "multiple_of"),
        annotated_types.MinLen: ("length >=", "min_length"),
        annotated_types.MaxLen: ("length <=", "max_length"),
    }
    for item in info.metadata:
        for kind, (symbol, attribute) in symbols.items():
            if isinstance(item, kind):
                parts.append(f"{symbol} {getattr(item, attribute)}")
    return ", ".join(parts)


def default_value(info: FieldInfo) -> Any:
    """The field's default as JSON-able data, or PydanticUndefined when it is required."""
    if info.is_required():
        return PydanticUndefined
    value = info.get_default(call_default_factory=True, validated_data={})
    return to_jsonable_python(value)


def docstring_summary(model: type[BaseModel]) -> str:
    """The first paragraph of a model's own docstring ('' for pydantic's inherited one)."""
    doc = model.__dict__.get("__doc__")
    if not doc:
        return ""
    return " ".join(inspect.cleandoc(doc).split("\n\n", 1)[0].split())


def _cell(text: str) -> str:
    return " ".join(text.split()).replace("|", "\\|")


def _code(text: str) -> str:
    return f"`{_cell(text)}`" if text else ""


# ----------------------------------------------------------------------------- the walk


def walk(
    model: type[BaseModel],
    path: str = "",
    references: dict[type[BaseModel], str] | None = None,
    defaults: dict[str, Any] | None = None,
) -> list[Group]:
    """One group per model in the tree, parents before children, in field order.

    ``defaults`` is the parent's default for this model as JSON data: a parent may default a
    section to an instance other than the class defaults (FinetuneConfig's ``optim``). Models
    in ``references`` (documented in another section) are named, not expanded.
    """
    references = references or {}
    group = Group(path, model)
    children: list[tuple[str, type[BaseModel], dict[str, Any] | None]] = []
    for name, info in model.model_fields.items():
        dotted = f"{path}.{name}" if path else name
        annotation = info.annotation
        description = info.description or ""
        nested = _model(annotation)
        default = defaults[name] if defaults and name in defaults else default_value(info)
        if nested is not None and nested in references:
            default_text = f"(see {references[nested]})"
            if default is PydanticUndefined:
                default_text = f"{REQUIRED} {default_text}"
            description = description or docstring_summary(nested)
        elif nested is not None:
            default_text = REQUIRED if default is PydanticUndefined else SECTION_DEFAULT
            if default is None:
                default_text = "null"
            description = description or docstring_summary(nested)
            children.append((dotted, nested, default if isinstance(default, dict) else None))
        else:
            if default is PydanticUndefined:
                default_text = REQUIRED
            else:
                default_text = json.dumps(default)
                if len(default_text) > MAX_CELL_DEFAULT and isinstance(default, list | dict):
                    group.long_defaults.append((dotted, default))
                    default_text = "(below the table)"
            items = _list_items(annotation)
            children += [(f"{dotted}{suffix}", item, None) for suffix, item in items]
        group.rows.append(
            Row(dotted, type_name(annotation), default_text, constraints_text(info), description)
        )
    groups = [group]
    for child_path, child, child_defaults in children:
        groups += walk(child, child_path, references, child_defaults)
    return groups


def _yaml(data: Any) -> str:
    import yaml

    return yaml.safe_dump(data, sort_keys=False, default_flow_style=None, width=90).rstrip()


def group_markdown(group: Group) -> str:
    where = f"`{group.path}`" if group.path else "top level"
    lines = [f"### {where}: {group.model.__name__}", ""]
    if group.path and (summary := docstring_summary(group.model)):
        lines += [summary, ""]
    lines += [
        "| field | type | default | constraints | description |",
        "| --- | --- | --- | --- | --- |",
    ]
    for row in group.rows:
        plain = row.default.startswith(("(", REQUIRED))  # words, not a JSON value
        default = row.default if plain else _code(row.default)
        lines.append(
            f"| `{row.path}` | {_code(row.type)} | {default} | {_cell(row.constraints)} "
            f"| {_cell(row.description)} |"
        )
    for dotted, value in group.long_defaults:
        lines += ["", f"Default of `{dotted}`:", "", "```yaml", _yaml(value), "```"]
    return "\n".join(lines)


def section_groups(section: Section) -> list[Group]:
    model = load_model(section.target)
    references = {}
    for other in SECTIONS:
        if other.key != section.key:
            references[load_model(other.target)] = f"[{other.title}](#{other.key})"
    return walk(model, "", references)


def generate() -> str:
    """The whole reference as Markdown (deterministic: same models, same bytes)."""
    parts = [
        "# Configuration reference",
        "",
        "<!-- Generated by `python -m flows.cli.config_reference --write docs/configuration.md`"
        " from the pydantic models; do not edit by hand (tests/test_docs.py checks it). -->",
        "",
        "Every option of the pipeline is a field of one of these pydantic models. A config "
        "file is YAML (or JSON) with the same nesting as the dotted names below; unknown keys "
        "are errors. Fields left out take the default shown. In the Prefect UI each flow's "
        "`config` parameter is a form of the same model.",
        "",
    ]
    parts += [f"- [{s.title}](#{s.key}): `{s.target.replace(':', '.')}`" for s in SECTIONS]
    for section in SECTIONS:
        model = load_model(section.target)
        parts += [
            "",
            f'<a id="{section.key}"></a>',
            "",
            f"## {section.title}: `{section.target.replace(':', '.')}`",
            "",
        ]
        if summary := docstring_summary(model):
            parts += [summary, ""]
        parts += [f"Used by {section.used_by}", ""]
        parts.append("\n\n".join(group_markdown(g) for g in section_groups(section)))
    return "\n".join(parts) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m flows.cli.config_reference",
        description="Print, write or check the configuration reference (Markdown).",
    )
    action = parser.add_mutually_exclusive_group()
    action.add_argument("--write", metavar="PATH", help="write the reference to PATH")
    action.add_argument("--check", metavar="PATH", help="exit 1 when PATH is not up to date")
    args = parser.parse_args(argv)
    text = generate()
    if args.write:
        target = Path(args.write)
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_name(f".{target.name}.tmp")
        tmp.write_text(text, encoding="utf-8")
        tmp.replace(target)
        print(f"wrote {target}")
        return 0
    if args.check:
        target = Path(args.check)
        fix = f"run `python -m flows.cli.config_reference --write {args.check}`"
        if not target.is_file():
            print(f"{target}: missing; {fix}", file=sys.stderr)
            return 1
        if target.read_text(encoding="utf-8") != text:
            print(f"{target}: stale (it differs from the pydantic models); {fix}", file=sys.stderr)
            return 1
        print(f"{target}: up to date")
        return 0
    sys.stdout.write(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
