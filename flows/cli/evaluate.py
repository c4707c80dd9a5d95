"""`mird evaluate`: PSNR/SSIM with the paper's protocol, beside the published rows."""

from __future__ import annotations

from pathlib import Path

import typer


def register(app: typer.Typer) -> None:
    @app.command("evaluate")
    def evaluate(
        weights: Path = typer.Option(
            ...,
            "--weights",
            help="Project weights (.safetensors) or an official checkpoint (.ckpt/.pth).",
        ),
        data: Path = typer.Option(
            ..., "--data", help="ROOT holding test/{denoise/bsd68, derain/Rain100L, dehaze}."
        ),
        variant: str = typer.Option(
            "all", "--variant", help="L, S, all (L and S), or four repeat counts like 1,1,1,1."
        ),
        arch: str = typer.Option(
            None, "--arch", help="dynet or promptir (project weights name it themselves)."
        ),
        tasks: list[str] = typer.Option(
            None,
            "--tasks",
            help="Tasks (repeat or comma-separate): dehaze, derain, denoise, denoise_15/25/50.",
        ),
        out: str = typer.Option("eval-output", "--out", help="Folder (or URI) for the results."),
        skip_missing: bool = typer.Option(
            False, "--skip-missing", help="Warn about missing tasks/bad files instead of failing."
        ),
        save_images: bool = typer.Option(
            False, "--save-images", help="Save restored images and input|output|target grids."
        ),
        tile: int = typer.Option(
            0, "--tile", help="Force tiled inference with this tile size (0: whole when it fits)."
        ),
        overlap: int = typer.Option(32, "--overlap", help="Tile overlap in pixels."),
        max_whole_mp: float = typer.Option(
            4.0, "--max-whole-mp", help="Tile images above this many megapixels automatically."
        ),
        device: str = typer.Option("auto", "--device", help="auto, cpu, cuda or cuda:N."),
        complexity_size: int = typer.Option(
            224, "--complexity-size", help="Input side for MACs (0 skips the complexity columns)."
        ),
    ) -> None:
        """Evaluate DyNet (or PromptIR) weights on the all-in-one test sets; write the table.

        The paper's protocol: PSNR/SSIM on BSD68 (sigma 15/25/50), Rain100L and SOTS
        outdoor, beside the published rows; results as Markdown, CSV and JSON under
        --out.

        Examples:

            mird evaluate --weights weights.safetensors --data data --variant all
            mird evaluate --weights dynet.ckpt --arch dynet --data data --variant S
            mird evaluate --weights w.safetensors --data data --tasks derain,dehaze
        """
        import warnings

        from rich.console import Console
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

        from dynet.eval_reports import results_markdown
        from dynet.evaluate import InferenceConfig, run_evaluation

        console = Console(stderr=True)

        def show_warning(message, *_args, **_kwargs) -> None:  # noqa: ANN001
            console.print(
                f"mird: warning: {message}", markup=False, highlight=False, soft_wrap=True
            )

        inference = InferenceConfig(
            tile=tile or None, overlap=overlap, max_whole_pixels=int(max_whole_mp * 1e6)
        )
        # The bar starts with the first restored image, so errors about weights or data come
        # out as the CLI's one line, not under a half-drawn progress display.
        progress = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            console=console,
            transient=True,
        )
        bars: dict[tuple[str, str], int] = {}

        def on_image(label: str, task: str, done: int, total: int) -> None:
            if not console.is_terminal:  # logs get one line per finished task, not a bar
                if done == total:
                    console.print(f"{label} {task}: {total} images", highlight=False)
                return
            if not bars:
                progress.start()
            if (label, task) not in bars:
                bars[(label, task)] = progress.add_task(f"{label} {task}", total=total)
            progress.update(bars[(label, task)], completed=done)

        with warnings.catch_warnings():
            warnings.simplefilter("always")
            warnings.showwarning = show_warning
            try:
                results, paths = run_evaluation(
                    weights,
                    data,
                    arch=arch,
                    variant=variant,
                    tasks=tasks,
                    out_dir=out,
                    skip_missing=skip_missing,
                    save_images=save_images,
                    inference=inference,
                    device=device,
                    complexity_size=complexity_size,
                    progress=on_image,
                )
            finally:
                if bars:
                    progress.stop()
        typer.echo(results_markdown(results))
        for kind, path in paths.items():
            typer.echo(f"wrote {kind}: {path}")
