"""The result files of an evaluation: results.json, results.csv and the Markdown tables.

Everything here works on the plain dict of :func:`results_dict` (what results.json holds), so a
table can be redrawn from a results file without torch or the test data.
"""

from __future__ import annotations

import csv
import io
import json
import math
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from dynet.eval_data import ALL_COLUMNS, INPUT_LABEL, PROTOCOL_NOTES, TASK_SPECS
from dynet.published import (
    PUBLISHED_ROWS,
    TASK_COLUMNS,
    TASK_TITLES,
    URBAN100_COLUMNS,
    published_row,
)

if TYPE_CHECKING:
    from dynet.evaluate import Evaluation, RunResult

METRIC_KEYS: tuple[str, ...] = ("psnr", "ssim", "psnr_y", "ssim_y")


def _average(values: list[float | None]) -> float | None:
    if not values or any(v is None for v in values):
        return None
    return float(np.mean(values))  # type: ignore[arg-type]


def run_summary(run: RunResult, columns: Sequence[str] = TASK_COLUMNS) -> dict[str, Any]:
    """Per-task means, the five-column average (None if a column is missing) and deltas."""
    row = published_row(run.spec.compare_to) if run.spec.compare_to else None
    tasks: dict[str, Any] = {}
    for key, result in run.tasks.items():
        means = {metric: result.mean(metric) for metric in METRIC_KEYS}
        entry: dict[str, Any] = {"n_images": result.n_images, **means, "modes": result.modes()}
        if row is not None and key in row.scores:
            ref_psnr, ref_ssim = row.scores[key]
            entry["delta_psnr"] = means["psnr"] - ref_psnr
            entry["delta_ssim"] = means["ssim"] - ref_ssim
        entry["skipped"] = result.skipped
        tasks[key] = entry
    average = {
        metric: _average([tasks[k][metric] if k in tasks else None for k in columns])
        for metric in METRIC_KEYS
    }
    if row is not None and average["psnr"] is not None:
        average["delta_psnr"] = average["psnr"] - row.average[0]
        average["delta_ssim"] = average["ssim"] - row.average[1]
    return {
        "label": run.spec.label,
        "variant": list(run.spec.variant)
        if isinstance(run.spec.variant, tuple)
        else run.spec.variant,
        "compare_to": run.spec.compare_to,
        "tasks": tasks,
        "average": average,
        "ms_per_megapixel": run.ms_per_megapixel,
        "forward_seconds": run.forward_seconds,
        "megapixels": run.megapixels,
        "complexity": run.complexity,
    }


def results_dict(evaluation: Evaluation) -> dict[str, Any]:
    runs = [run_summary(run) for run in evaluation.runs]
    for summary, run in zip(runs, evaluation.runs, strict=True):
        for key, result in run.tasks.items():
            summary["tasks"][key]["images"] = result.per_image
    return {
        "arch": evaluation.arch,
        "weights": evaluation.weights,
        "data_root": evaluation.data_root,
        "device": evaluation.device,
        "created": evaluation.created,
        "torch": _torch_version(),
        "protocol": PROTOCOL_NOTES,
        "inference": {
            "tile": evaluation.inference.tile,
            "overlap": evaluation.inference.overlap,
            "max_whole_pixels": evaluation.inference.max_whole_pixels,
        },
        "requested_tasks": list(evaluation.requested_tasks),
        "missing_tasks": evaluation.missing_tasks,
        "datasets": evaluation.datasets,
        "input": run_summary(evaluation.inputs) if evaluation.inputs else None,
        "runs": runs,
        "published": [
            {
                "method": row.method,
                "source": row.source,
                "source_short": row.source_short,
                "tasks": {k: {"psnr": p, "ssim": s} for k, (p, s) in row.scores.items()},
                "average": {"psnr": row.average[0], "ssim": row.average[1]},
                "other_revisions": [
                    {"source": r.source, "psnr": r.psnr, "average_psnr": r.average_psnr}
                    for r in row.other_revisions
                ],
            }
            for row in PUBLISHED_ROWS
        ],
    }


CSV_FIELDS = (
    "method",
    "source",
    "variant",
    "task",
    "dataset",
    "n_images",
    "psnr",
    "ssim",
    "psnr_y",
    "ssim_y",
    "delta_psnr",
    "delta_ssim",
    "inference",
)


def _csv_rows(results: dict[str, Any]) -> Iterator[dict[str, Any]]:
    for row in results["published"]:
        for task in (*TASK_COLUMNS, "average"):
            scores = row["average"] if task == "average" else row["tasks"][task]
            yield {"method": row["method"], "source": "published", "task": task, **scores}
    measured = [("input", results["input"])] if results.get("input") else []
    for source, run in [*measured, *(("this run", run) for run in results["runs"])]:
        variant = run["variant"]
        base = {
            "method": run["label"],
            "source": source,
            "variant": ",".join(map(str, variant)) if isinstance(variant, list) else variant,
        }
        for task in ALL_COLUMNS:
            entry = run["tasks"].get(task)
            if entry is None:
                continue
            yield {
                **base,
                "task": task,
                "dataset": TASK_SPECS[task].dataset,
                **{k: entry.get(k) for k in CSV_FIELDS if k in entry},
                "inference": ";".join(f"{m}={n}" for m, n in entry["modes"].items()),
            }
        if run["average"]["psnr"] is not None:
            yield {**base, "task": "average", **run["average"]}


def results_csv(results: dict[str, Any]) -> str:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=CSV_FIELDS, extrasaction="ignore")
    writer.writeheader()
    for row in _csv_rows(results):
        writer.writerow({k: _csv_value(v) for k, v in row.items()})
    return buffer.getvalue()


def _csv_value(value: Any) -> Any:
    if isinstance(value, float):
        return f"{value:.6f}" if math.isfinite(value) else str(value)
    return value


def _cell(psnr: float | None, ssim: float | None, mark: str = "") -> str:
    if psnr is None or ssim is None:
        return "—"
    return f"{psnr:.2f} / {ssim:.3f}{mark}"


def _delta_cell(dp: float | None, ds: float | None) -> str:
    if dp is None or ds is None:
        return "—"
    return f"{dp:+.2f} / {ds:+.3f}"


def _g(value: float | None) -> str:
    return "—" if value is None else f"{value / 1e9:.2f}"


def _extra_columns(results: dict[str, Any]) -> list[str]:
    """Urban100's columns, after the average, when it was scored."""
    return [k for k in URBAN100_COLUMNS if k in results.get("datasets", {})]


def _table_head(extra: Sequence[str]) -> list[str]:
    titles = [TASK_TITLES[k] for k in (*TASK_COLUMNS, "average", *extra) if k != "average"]
    titles.insert(len(TASK_COLUMNS), "Average")
    return ["| Method | " + " | ".join(titles) + " |", "|---" * (len(titles) + 1) + "|"]


def _measured_row(run: dict[str, Any], label: str, missing: dict, extra: Sequence[str]) -> str:
    cells = []
    for key in (*TASK_COLUMNS, "average", *extra):
        entry = run["average"] if key == "average" else run["tasks"].get(key)
        if entry is None:
            cells.append("missing" if key in missing else "not run")
        else:
            cells.append(_cell(entry["psnr"], entry["ssim"], "*" if entry.get("skipped") else ""))
    if label.startswith("**"):
        cells = [f"**{c}**" if c[0].isdigit() else c for c in cells]
    return f"| {label} | " + " | ".join(cells) + " |"


def rgb_table(results: dict[str, Any]) -> list[str]:
    """The comparison table's Markdown lines: the published rows (with their source, and other
    revisions' figures where they differ), the degraded input, each run and its deltas."""
    missing = results["missing_tasks"]
    extra = _extra_columns(results)
    lines = _table_head(extra)
    for row in results["published"]:
        cells = [_cell(row["tasks"][k]["psnr"], row["tasks"][k]["ssim"]) for k in TASK_COLUMNS]
        cells += [_cell(row["average"]["psnr"], row["average"]["ssim"])] + ["—"] * len(extra)
        source = row.get("source_short")
        label = f"{row['method']} (published{f', {source}' if source else ''})"
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
        for other in row.get("other_revisions", []):
            known = [other["psnr"].get(k) for k in TASK_COLUMNS] + [other["average_psnr"]]
            cells = ["—" if v is None else f"{v:.2f} / —" for v in known] + ["—"] * len(extra)
            lines.append(
                f"| {row['method']} (published, {other['source']}) | " + " | ".join(cells) + " |"
            )
    if results.get("input"):
        lines.append(_measured_row(results["input"], f"{INPUT_LABEL} (no restoration)", {}, extra))
    for run in results["runs"]:
        deltas = [
            _delta_cell(run["tasks"][k].get("delta_psnr"), run["tasks"][k].get("delta_ssim"))
            if k in run["tasks"]
            else "—"
            for k in TASK_COLUMNS
        ]
        avg = run["average"]
        lines.append(_measured_row(run, f"**{run['label']} (this run)**", missing, extra))
        if run["compare_to"]:
            lines.append(
                f"| Δ vs {run['compare_to']} (published) | "
                + " | ".join(deltas)
                + f" | {_delta_cell(avg.get('delta_psnr'), avg.get('delta_ssim'))} |"
                + " — |" * len(extra)
            )
    return lines


def results_markdown(results: dict[str, Any]) -> str:
    """The comparison table (RGB, the paper's protocol), the Y-channel table and the costs."""
    missing = results["missing_tasks"]
    not_run = [k for k in TASK_COLUMNS if k not in results["requested_tasks"]]
    lines = [
        "# All-in-one evaluation",
        "",
        f"Weights `{results['weights']}` ({results['arch']}), data `{results['data_root']}`, "
        f"device {results['device']}, {results['created']}.",
        "",
        *([f"> {results['note']}", ""] if results.get("note") else []),
        "## PSNR (dB) / SSIM on RGB — the paper's protocol",
        "",
        *rgb_table(results),
    ]
    lines += [
        "",
        "## Y channel (BT.601 YCbCr Y; SSIM with an 11x11 Gaussian window) — this run only",
        "",
        "Another convention; not comparable with the RGB table above (nothing published here).",
        "",
        *_table_head(_extra_columns(results)),
    ]
    measured = [results["input"]] if results.get("input") else []
    for run in [*measured, *results["runs"]]:
        y_run = {
            "average": {"psnr": run["average"]["psnr_y"], "ssim": run["average"]["ssim_y"]},
            "tasks": {
                k: {"psnr": t["psnr_y"], "ssim": t["ssim_y"]} for k, t in run["tasks"].items()
            },
        }
        lines.append(_measured_row(y_run, run["label"], {}, _extra_columns(results)))
    lines += ["", "## Cost", ""]
    lines.append(
        "| Network | Params (total / used) | Conv GMACs | Attention GMACs | Total GMACs "
        f"| ms per megapixel ({results['device']}) |"
    )
    lines.append("|---|---|---|---|---|---|")
    size = None
    for run in results["runs"]:
        c = run["complexity"] or {}
        size = c.get("size", size)
        params = (
            f"{c['params_total']:,} / {c.get('params_used', c['params_total']):,}"
            if c.get("params_total") is not None
            else "—"
        )
        ms = run["ms_per_megapixel"]
        lines.append(
            f"| {run['label']} | {params} | {_g(c.get('conv_macs'))} | "
            f"{_g(c.get('attention_macs'))} | {_g(c.get('total_macs'))} | "
            f"{'—' if ms is None else f'{ms:,.1f}'} |"
        )
    if size is not None:
        lines.append("")
        lines.append(f"MACs for one {size}x{size} RGB input (torch.utils.flop_counter).")
    lines += ["", "## Protocol and inference", ""]
    lines += [f"- {name}: {note}" for name, note in PROTOCOL_NOTES.items()]
    for key, info in results["datasets"].items():
        modes = {
            run["label"]: run["tasks"][key]["modes"]
            for run in results["runs"]
            if key in run["tasks"]
        }
        mode_text = "; ".join(
            f"{label}: " + ", ".join(f"{n} {m}" for m, n in counts.items())
            for label, counts in modes.items()
        )
        lines.append(
            f"- {TASK_TITLES[key]}: {info['n_images']} images from `{info['folder']}`"
            f" (restored {mode_text})"
        )
        for skipped in info["skipped"]:
            lines.append(f"  - * skipped {skipped['name']}: {skipped['reason']}")
    for key, reason in missing.items():
        lines.append(f"- {TASK_TITLES[key]}: **missing**, skipped ({reason})")
    for key in not_run:
        lines.append(f"- {TASK_TITLES[key]}: not requested")
    if missing or not_run:
        lines.append("- The average needs all five columns; it is shown as — otherwise.")
    return "\n".join(lines) + "\n"


def write_results(results: dict[str, Any], out_dir: Path | str) -> dict[str, str]:
    """Write results.json, results.csv and results.md (each atomically); returns their paths."""
    from storage.atomic import atomic_write_bytes

    out = str(out_dir).rstrip("/")
    paths = {name: f"{out}/results.{name}" for name in ("json", "csv", "md")}
    atomic_write_bytes(
        paths["json"], (json.dumps(results, indent=2, allow_nan=True) + "\n").encode()
    )
    atomic_write_bytes(paths["csv"], results_csv(results).encode())
    atomic_write_bytes(paths["md"], results_markdown(results).encode())
    return paths


def _torch_version() -> str:
    import torch

    return torch.__version__
