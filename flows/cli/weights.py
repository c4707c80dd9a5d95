"""`mird weights fetch NAME...`: download pyiqa metrics' weights into the local caches.

The pipeline never downloads; run this once on a machine with internet, then scoring works
offline (copy the torch hub cache, ``$TORCH_HOME`` or ``~/.cache/torch/hub``, and the
Hugging Face cache to machines without internet).
"""

from __future__ import annotations

import typer


class WeightsFetchError(RuntimeError):
    """A metric's weights could not be downloaded (no internet, unknown file...)."""


def _check_hub_reachable(timeout_s: float = 10.0) -> None:
    """Fail in seconds, not after minutes of retries, when the weights host is unreachable."""
    import httpx
    from huggingface_hub import constants

    try:
        httpx.head(constants.ENDPOINT, timeout=timeout_s, follow_redirects=True)
    except httpx.HTTPError as exc:
        raise WeightsFetchError(
            f"cannot reach {constants.ENDPOINT} ({exc}): `mird weights fetch` needs internet; "
            "run it on a machine that has it, then copy the torch hub and Hugging Face caches"
        ) from exc


def fetch_weights(names: list[str]) -> list[str]:
    """Build each metric with downloads allowed; return one line of outcome per metric."""
    from curation.quality import OFFLINE_METRICS, build_metric, metric_info

    for name in names:
        metric_info(name)  # unknown or full-reference names fail before any download
    if any(name not in OFFLINE_METRICS for name in names):
        _check_hub_reachable()
    lines = []
    for name in names:
        if name in OFFLINE_METRICS:
            lines.append(f"{name}: nothing to fetch (parameters ship with million-ird)")
            continue
        try:
            build_metric(name, device="cpu", allow_download=True)
        except Exception as exc:  # noqa: BLE001 - one line naming the metric and the cause
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise WeightsFetchError(f"could not fetch weights for {name!r}: {first}") from exc
        lines.append(f"{name}: weights cached")
    return lines


def register(app: typer.Typer) -> None:
    weights = typer.Typer(
        help="Manage IQA model weights (downloads happen only here, never at run time).\n\n"
        "Example:\n\n    mird weights fetch nima",
        no_args_is_help=True,
    )

    @weights.command("fetch")
    def fetch(
        names: list[str] = typer.Argument(
            ..., help="pyiqa metric names, e.g. nima musiq topiq_nr clipiqa"
        ),
    ) -> None:
        """Download the weights of pyiqa metrics into the torch hub / Hugging Face caches.

        Needs internet. niqe, brisque and piqe need nothing (their parameters ship
        with the package); other metrics score offline once their weights are cached.

        Examples:

            mird weights fetch nima
            mird weights fetch musiq topiq_nr clipiqa
        """
        for line in fetch_weights(names):
            typer.echo(line)

    app.add_typer(weights, name="weights")
