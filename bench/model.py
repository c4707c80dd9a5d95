"""Benchmark: DyNet-L, DyNet-S and PromptIR -- parameters, MACs, forward and forward+backward
time, peak memory -- plus the straightforward module-per-repeat DyNet-L (``dynet.reference``)
that the weight-shared implementation must not be slower than.

Prints one JSON object. Timings are taken round-robin over all models in one process (load
from other processes then hits every model alike; ratios use the minimum over rounds); peak
memory is taken from one training step per model in a fresh child process, so that the CPU
peak (resident set size) belongs to that model alone. Targets (issue 5): the S/L time ratio within
10 % of the MAC ratio (0.687); DyNet-L no slower than the module-per-repeat implementation.

    .venv/bin/python -m bench.model --threads 1          # CPU, batch 4 x 3 x 64 x 64
    .venv/bin/python -m bench.model --device cuda        # bf16 autocast + channels_last

``--threads`` sets torch's intra-op threads (default: torch's own choice); on a small shared
CPU, ``--threads 1`` avoids OpenMP threads spinning against other processes.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import resource
import statistics
import time
from contextlib import nullcontext
from pathlib import Path

from bench.common import Report

MODELS = {
    "dynet-L": ("dynet", "L"),
    "dynet-S": ("dynet", "S"),
    "promptir": ("promptir", None),
    "reference-dynet-L": ("reference", "L"),
}


def _build(kind: str, variant: str | None):
    from dynet import create_model, resolve_variant
    from dynet.reference import ReferenceNet

    if kind == "reference":
        return ReferenceNet(resolve_variant(variant), prompts_on="encoder"), None
    return create_model(kind), variant


class _Runner:
    """One model on one device, with its input, ready to run a forward or a training step."""

    def __init__(self, name: str, args: dict) -> None:
        import torch

        from dynet.registry import to_channels_last

        torch.manual_seed(0)
        self.torch = torch
        self.device = torch.device(args["device"])
        kind, variant = MODELS[name]
        self.model, variant = _build(kind, variant)
        self.model.to(self.device)
        self.x = torch.rand(args["batch"], 3, args["size"], args["size"], device=self.device)
        self.autocast = nullcontext
        if self.device.type == "cuda":
            to_channels_last(self.model)
            self.x = self.x.contiguous(memory_format=torch.channels_last)
            self.autocast = lambda: torch.autocast("cuda", dtype=torch.bfloat16)
        self.kwargs = {} if variant is None else {"variant": variant}

    def _sync(self) -> None:
        if self.device.type == "cuda":
            self.torch.cuda.synchronize()

    def forward(self) -> float:
        start = time.perf_counter()
        with self.torch.no_grad(), self.autocast():
            self.model(self.x, **self.kwargs)
        self._sync()
        return (time.perf_counter() - start) * 1000

    def forward_backward(self) -> float:
        start = time.perf_counter()
        self.model.zero_grad(set_to_none=True)
        with self.autocast():
            loss = (self.model(self.x, **self.kwargs).float() - self.x).abs().mean()
        loss.backward()
        self._sync()
        return (time.perf_counter() - start) * 1000


def _peak_memory(name: str, args: dict) -> dict:
    """In a fresh child process: peak memory of one forward+backward of one model."""
    import torch

    if args["threads"]:
        torch.set_num_threads(args["threads"])
    runner = _Runner(name, args)
    runner.forward_backward()
    held = sum(p.numel() for p in runner.model.parameters())  # the reference holds copies
    if runner.device.type == "cuda":
        return {
            "params_held": held,
            "peak_memory_mb": round(torch.cuda.max_memory_allocated() / 2**20),
        }
    return {"params_held": held, "peak_rss_mb": _peak_rss_mb()}


def _peak_rss_mb() -> int:
    """This process's peak resident set (VmHWM; ru_maxrss would carry the parent's over exec)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return round(int(line.split()[1]) / 1024)
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)


def _interleaved_timings(names: list[str], args: dict) -> dict[str, dict]:
    """Time every model round-robin in this process, so that load from other processes hits
    them all alike; the minimum over rounds is the least disturbed figure."""
    runners = {name: _Runner(name, args) for name in names}
    runs: dict[str, dict[str, list[float]]] = {
        n: {"forward": [], "forward_backward": []} for n in names
    }
    for runner in runners.values():  # warm-up: allocator, kernels, autotuning
        runner.forward()
        runner.forward_backward()
    for _ in range(args["repeats"]):
        for name, runner in runners.items():
            runs[name]["forward"].append(runner.forward())
            runs[name]["forward_backward"].append(runner.forward_backward())
    out = {}
    for name, by_kind in runs.items():
        out[name] = {}
        for kind, values in by_kind.items():
            out[name][f"{kind}_ms"] = round(statistics.median(values), 1)
            out[name][f"{kind}_min_ms"] = round(min(values), 1)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu", help="cpu, cuda or auto")
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=0, help="intra-op threads (0: default)")
    parser.add_argument("--models", default=",".join(MODELS), help="comma-separated subset")
    args = parser.parse_args()
    names = args.models.split(",")
    unknown = sorted(set(names) - MODELS.keys())
    if unknown:
        parser.error(f"unknown model(s) {', '.join(unknown)}; choose from {', '.join(MODELS)}")
    if args.repeats < 1:
        parser.error("--repeats must be at least 1")
    report = Report("model", args)

    import torch

    from dynet import complexity, create_model
    from storage.devices import resolve_device

    device = str(resolve_device(args.device))
    settings = {
        "device": device,
        "batch": args.batch,
        "size": args.size,
        "repeats": args.repeats,
        "threads": args.threads,
    }
    results: dict[str, dict] = {}
    dynet, promptir = create_model("dynet"), create_model("promptir")
    figures = {
        "dynet-L": complexity(dynet, size=args.size, variant="L"),
        "dynet-S": complexity(dynet, size=args.size, variant="S"),
        "promptir": complexity(promptir, size=args.size),
    }
    figures["reference-dynet-L"] = figures["dynet-L"]
    if args.threads:
        torch.set_num_threads(args.threads)
    timings = _interleaved_timings(names, settings)
    if device == "cuda":
        torch.cuda.empty_cache()  # give the children the memory the timings cached
    spawn = mp.get_context("spawn")
    for name in names:
        c = figures[name]
        with spawn.Pool(1) as pool:
            memory = pool.apply(_peak_memory, (name, settings))
        results[name] = {
            "params_official_layout": c.params_official_layout,
            "params_used": c.params_used,
            "macs_per_image_g": round(c.total_macs / 1e9, 3),
            "conv_macs_per_image_g": round(c.conv_macs / 1e9, 3),
            "attention_macs_per_image_g": round(c.attention_macs / 1e9, 3),
            **timings[name],
            **memory,
        }

    summary = {}
    if {"dynet-L", "dynet-S"} <= results.keys():
        mac_ratio = figures["dynet-S"].total_macs / figures["dynet-L"].total_macs
        summary["mac_ratio_s_over_l"] = round(mac_ratio, 4)
        for key in ("forward_min_ms", "forward_backward_min_ms"):
            ratio = results["dynet-S"][key] / results["dynet-L"][key]
            summary[f"time_ratio_s_over_l_{key[:-7]}"] = round(ratio, 4)
            summary[f"time_ratio_within_10pct_{key[:-7]}"] = abs(ratio / mac_ratio - 1) <= 0.10
    if {"dynet-L", "reference-dynet-L"} <= results.keys():
        for key in ("forward_min_ms", "forward_backward_min_ms"):
            ratio = results["dynet-L"][key] / results["reference-dynet-L"][key]
            summary[f"dynet_l_over_reference_{key[:-7]}"] = round(ratio, 3)

    report.emit(
        {
            "settings": {**settings, "torch_threads": args.threads or torch.get_num_threads()},
            "models": results,
            "summary": summary,
        }
    )


if __name__ == "__main__":
    main()
