"""`mird patches ROOT/NAME[/vN] [KEY=VALUE...]`: cut the patches product from a version."""

from __future__ import annotations

import typer


def register(app: typer.Typer) -> None:
    @app.command("patches")
    def patches(
        source: str = typer.Argument(..., help="ROOT/NAME (latest version) or ROOT/NAME/vN"),
        settings: list[str] = typer.Argument(
            None,
            help="KEY=VALUE settings of the patches config, on top of the options, e.g. "
            "quality=90 max_flat_fraction=0.3.",
            metavar="KEY=VALUE",
        ),
        size: int = typer.Option(512, help="Patch side in pixels."),
        stride: int = typer.Option(512, help="Grid step (< size overlaps)."),
        max_per_image: int = typer.Option(8, help="At most this many patches per image."),
        fmt: str = typer.Option("png", "--format", help="png (lossless), jpg or webp."),
        name: str = typer.Option(None, help="Target dataset name [default: NAME-patches]."),
    ) -> None:
        """Publish a new version of NAME-patches: fixed-size crops with parent key and box.

        The same as the flow extract-patches; the patch shards feed `mird train
        pretrain`. KEY=VALUE settings set any field of the patches config (the
        `patches.*` fields of docs/configuration.md, without the prefix), on top
        of the options.

        Examples:

            mird patches data/datasets/million-ird
            mird patches data/datasets/million-ird/v2 --size 256 --stride 192
            mird patches data/datasets/million-ird --format jpg quality=90
        """
        from curation.patches import PatchConfig, extract_patches
        from flows.cli.console import progress_bars
        from storage.config_errors import validate_config
        from storage.config_overrides import apply_overrides
        from storage.verify import resolve_target

        if fmt not in ("png", "jpg", "webp"):
            raise ValueError(f"--format must be png, jpg or webp, not {fmt!r}")
        dataset, versions = resolve_target(source)
        version = dataset.version(versions[-1])
        options = {"size": size, "stride": stride, "max_per_image": max_per_image, "format": fmt}
        apply_overrides(options, settings or [], example="quality=90")
        config = validate_config(PatchConfig, options, "command line")
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
