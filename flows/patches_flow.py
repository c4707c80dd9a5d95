"""`extract-patches`: cut the patches product from a published version."""

from __future__ import annotations

from prefect import flow, get_run_logger
from prefect.artifacts import (
    create_markdown_artifact,
    create_progress_artifact,
    update_progress_artifact,
)

from curation.patches import PatchConfig, extract_patches
from storage.config_errors import validate_config
from storage.versions import Dataset, VersionRef


@flow(name="extract-patches", validate_parameters=False)  # config is validated below
def extract_patches_flow(
    root: str,
    name: str = "million-ird",
    version: str | None = None,
    patches_name: str | None = None,
    config: PatchConfig | None = None,
) -> VersionRef:
    """Publish a new version of ``<name>-patches`` from ``name``'s version (latest if None)."""
    logger = get_run_logger()
    config = validate_config(PatchConfig, config or {}, "flow parameter config")
    source = Dataset(root, name).version(version)
    target = Dataset(root, patches_name or f"{name}-patches")
    progress_id = create_progress_artifact(0.0, key="extract-patches")
    last = [0.0]

    def progress(done: int, total: int) -> None:
        percent = 100.0 * done / max(total, 1)
        if percent - last[0] >= 1.0 or done == total:  # one update per percent at most
            update_progress_artifact(progress_id, percent)
            last[0] = percent

    published = extract_patches(source, target, config, progress=progress)
    stats = published.stats()
    create_markdown_artifact(
        f"# {target.name} {published.version}\n\n"
        f"- {stats['samples']:,} patches of {config.size}x{config.size} from "
        f"{stats['images']:,} images of `{source.uri}`\n- location: `{published.uri}`",
        key="patches-summary",
    )
    logger.info("published %s", published.uri)
    return published.ref
