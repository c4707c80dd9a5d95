"""`mird patches ROOT/NAME[/vN]`: cut the patches product from a published version."""

from __future__ import annotations

import typer


def register(app: typer.Typer) -> None:
    @app.command("patches")
    def patches(
        source: str = typer.Argument(..., help="ROOT/NAME (latest version) or ROOT/NAME/vN"),
        size: int = typer.Option(512, help="Patch side in pixels."),
        stride: int = typer.Option(512, help="Grid step (< size overlaps)."),
        max_per_image: int = typer.Option(8, help="At most this many patches per image."),
        fmt: str = typer.Option("png", "--format", help="png (lossless), jpg or webp."),
        name: str = typer.Option(None, help="Target dataset name [default: NAME-patches]."),
    ) -> None:
        """Publish a new version of NAME-patches: fixed-size crops with parent key and box.

        The same as the flow extract-patches; the patch shards feed `mird train
        pretrain`.

        Examples:

            mird patches data/datasets/million-ird
            mird patches data/datasets/million-ird/v2 --size 256 --stride 192
        """
        from curation.patches import PatchConfig, extract_patches
        from flows.cli.console import progress_bars
        from storage.config_errors import validate_config
        from storage.verify import resolve_target

        if fmt not in ("png", "jpg", "webp"):
            raise ValueError(f"--format must be png, jpg or webp, not {fmt!r}")
        dataset, versions = resolve_target(source)
        version = dataset.version(versions[-1])
        options = {"size": size, "stride": stride, "max_per_image": max_per_image}
        config = validate_config(PatchConfig, {**options, "format": fmt}, "command line")
        from storage.versions import Dataset

        target = Dataset(dataset.root, name or f"{dataset.name}-patches")
        with progress_bars(transient=True) as progress:
            task = progress.add_task(f"patches from {version.version}", total=None)
            published = extract_patches(
                version,
                target,
                config,
                progress=lambda done, total: progress.update(task, completed=done, total=total),
            )
        stats = published.stats()
        typer.echo(f"{published.uri}: {stats['samples']} patches from {stats['images']} images")
