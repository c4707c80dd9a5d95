"""`mird restore`: restore images with DyNet (any variant) or PromptIR, tile by tile.

The inference is :func:`dynet.restore.restore_images`; this module parses the options and
draws the progress bar.
"""

from __future__ import annotations

from pathlib import Path

import typer


def restore_with_progress(
    images: list[Path],
    weights: Path,
    out: Path,
    variant: str | None = None,
    arch: str | None = None,
    tile: int = 256,
    overlap: int = 32,
    device: str = "auto",
    show_progress: bool = True,
    tiles_per_batch: int | None = None,
) -> list[Path]:
    """:func:`dynet.restore.restore_images` under a progress bar counting tiles."""
    from rich.progress import BarColumn, MofNCompleteColumn, TimeRemainingColumn

    from dynet.restore import restore_images
    from flows.cli.console import progress_bars

    with progress_bars(
        "[progress.description]{task.description}",
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
        stderr=False,
        enabled=show_progress,
    ) as bar:
        task = bar.add_task("restoring", total=None)

        def progress(name: str, done: int, total: int) -> None:
            bar.update(task, description=name, completed=done, total=total)

        return restore_images(
            images, weights, out, variant, arch, tile, overlap, device, tiles_per_batch, progress
        )


def register(app: typer.Typer) -> None:
    @app.command("restore")
    def restore(
        images: list[Path] = typer.Argument(..., help="Images to restore (any size)."),
        weights: Path = typer.Option(
            ..., "--weights", "-w", help="Project .safetensors weights or an official checkpoint."
        ),
        out: Path = typer.Option(..., "--out", "-o", help="Directory for the restored PNGs."),
        variant: str | None = typer.Option(
            None, "--variant", "-v", help="DyNet depth: L, S or four repeat counts like 2,3,3,4."
        ),
        arch: str | None = typer.Option(
            None, "--arch", help="Architecture of an official checkpoint: dynet or promptir."
        ),
        tile: int = typer.Option(256, help="Tile size in pixels (a multiple of 8)."),
        overlap: int = typer.Option(32, help="Overlap between tiles in pixels."),
        device: str = typer.Option("auto", help="auto, cpu, cuda or cuda:N."),
        tiles_per_batch: int | None = typer.Option(
            None, help="Tiles per forward pass (default: 8 on CUDA, 1 on CPU)."
        ),
        quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bar."),
    ) -> None:
        """Restore IMAGES with DyNet/PromptIR weights, writing OUT/<name>.png.

        Any image size: images are restored tile by tile. Weights are project
        .safetensors files (from `mird train`) or official DyNet/PromptIR checkpoints
        (give --arch).

        Examples:

            mird restore photo.jpg --weights w.safetensors --variant S --out restored
            mird restore a.png b.png --weights dynet.ckpt --arch dynet --out restored
        """
        written = restore_with_progress(
            images, weights, out, variant, arch, tile, overlap, device, not quiet, tiles_per_batch
        )
        typer.echo(f"restored {len(written)} image(s) into {out}")
