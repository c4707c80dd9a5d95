"""`mird demo`: the main job on embedded defaults.

Until the end-to-end build exists this runs the storage round trip: generate photographs,
publish a version, verify it, read it back with webdataset and with tarfile.
"""

from __future__ import annotations

from pathlib import Path

import typer


def register(app: typer.Typer) -> None:
    @app.command("demo")
    def demo(
        out: Path = typer.Option(Path("demo-output"), help="Where the demo dataset goes."),
        images: int = typer.Option(24, min=1, help="How many synthetic photographs."),
    ) -> None:
        """Run the demo: publish a small dataset version, verify it, read it back."""
        import hashlib

        import webdataset as wds

        from storage.demo_data import encode, photo_like
        from storage.shards import Sample
        from storage.verify import verify_version
        from storage.versions import Dataset

        dataset = Dataset(str(out.resolve()), "million-ird-demo")
        typer.echo(f"writing {images} photographs into {dataset.uri}/{dataset.next_version()}")
        with dataset.begin_version(max_shard_count=8) as writer:
            for i in range(images):
                data = encode(photo_like(640, 480, seed=i), "JPEG", quality=92)
                sample = Sample(f"demo-{i:06d}", data, "jpg", {"seed": i})
                row = {
                    "source": "demo",
                    "url": f"demo://{i}",
                    "sha256": hashlib.sha256(data).hexdigest(),
                    "width": 640,
                    "height": 480,
                }
                writer.write_sample(sample, row)
            version = writer.publish(stats={"source": "synthetic demo"}, license="cc0-1.0")
        report = verify_version(version)
        typer.echo(
            f"published {version.uri}: {report.samples_checked} samples in "
            f"{report.shards_checked} shards; verify {'OK' if report.ok else 'FAILED'}"
        )
        streamed = sum(1 for _ in wds.WebDataset(version.shard_uris(), shardshuffle=False))
        by_tarfile = sum(1 for _ in version.iter_samples())
        typer.echo(f"read back: {streamed} samples with webdataset, {by_tarfile} with tarfile")
        if not report.ok or streamed != images or by_tarfile != images:
            raise typer.Exit(1)
