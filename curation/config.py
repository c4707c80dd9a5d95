"""Configuration of a build: sources, fetching, probing, content filters, dedupe, publishing,
and :class:`BuildConfig` holding them all (with quality's and patches' own models).

Every default says why it is what it is; the CLI, the flow parameters and the Prefect UI form
all read these models, so this file is the one place a threshold is set.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from curation.copies import DEFAULT_MEMO_ENTRIES
from curation.near_pairs import DEFAULT_DISTANCE
from curation.patches import PatchConfig
from curation.quality import QualityConfig

SourceFormat = Literal["auto", "txt", "csv", "tsv", "jsonl", "parquet", "files"]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")  # a typo in a config key is an error


class SourceConfig(_Model):
    """One input: a URL list (img2dataset's input formats) or a folder / object-store prefix."""

    uri: str = Field(description="URL list file, folder, glob or object-store prefix")
    name: str | None = Field(
        None, description="source name in provenance and partition ids; default: file stem"
    )
    format: SourceFormat = Field(
        "auto", description="auto: from the extension (.txt/.csv/.tsv/.jsonl/.parquet[.gz])"
    )
    url_column: str = Field(
        "url",
        description="URL lists: column (JSON key) holding the image URL; a list without it is "
        "an error (.txt lists are one URL per line)",
    )
    caption_column: str | None = Field(
        "caption",
        description="URL lists: column copied to the manifest's and the shard JSON's caption; "
        "a missing column or None: no captions (not an error)",
    )
    license_column: str | None = Field(
        "license",
        description="URL lists: column copied to each sample's license (manifest and shard "
        "JSON); a missing column or None: no licence recorded",
    )
    keep_columns: list[str] = Field(
        default_factory=list,
        description="csv/tsv/jsonl/parquet lists: other columns kept as provenance "
        "(img2dataset's save_additional_columns), published in each sample's .json member "
        'as "extra": {column: value}; not in the Parquet manifest. A listed column missing '
        "from the list is an error",
    )
    extensions: list[str] = Field(
        default_factory=lambda: ["jpg", "jpeg", "png", "webp", "avif", "tif", "tiff", "bmp"],
        description="file sources: which file names count as candidates",
    )


class FetchConfig(_Model):
    """HTTP fetching. Defaults are tuned for many hosts with mostly small (< 10 MB) images."""

    threads: int = Field(
        32, ge=1, description="concurrent requests; I/O-bound, so well above the core count"
    )
    per_host_limit: int = Field(
        8, ge=1, description="concurrent requests to one host: politeness, and avoids 429 storms"
    )
    per_host_rate: float | None = Field(
        2.0,
        gt=0,
        description="requests per second to one host, across threads (and the partitions of a "
        "build in one process); a longer robots.txt Crawl-delay wins. None: no rate limit",
    )
    rate_limit_allow_listed: bool = Field(
        False,
        description="apply per_host_rate to hosts in allow_hosts too; by default they are "
        "servers you run or vouch for, fetched as fast as per_host_limit allows (robots.txt, "
        "Crawl-delay and Retry-After still apply)",
    )
    max_host_wait_s: float = Field(
        300.0,
        gt=0,
        description="a URL that waits longer for its host's first turn (rate, Crawl-delay, "
        "Retry-After) is rejected as host_rate_limited; the next build tries it again",
    )
    host_failure_limit: int = Field(
        5,
        ge=1,
        description="consecutive timeouts, connection failures, 5xx or 429 after which a host's "
        "remaining URLs in the build are rejected at once as host_unresponsive (transient)",
    )
    connect_timeout_s: float = Field(10.0, gt=0, description="a dead host costs at most this")
    read_timeout_s: float = Field(20.0, gt=0, description="max silence between two body chunks")
    total_timeout_s: float = Field(
        60.0,
        gt=0,
        description="one URL's deadline, from its first request, across all its attempts, "
        "redirects and backoffs; enforced on every socket read, so headers or a body trickled "
        "byte by byte end there too",
    )
    retries: int = Field(
        3, ge=0, description="extra attempts on 429 and 5xx; a timeout is retried once at most"
    )
    backoff_base_s: float = Field(
        0.5,
        ge=0,
        description="attempt k waits uniform(0, base * 2**k): full jitter spreads "
        "retries of many workers",
    )
    backoff_max_s: float = Field(30.0, ge=0, description="cap on one backoff wait")
    max_retry_after_s: float = Field(
        60.0, ge=0, description="a longer Retry-After gives up (a worker should not idle)"
    )
    max_redirects: int = Field(5, ge=0, description="browsers allow ~20; image CDNs need 1-2")
    max_body_bytes: int = Field(
        40 * 1024 * 1024,
        gt=0,
        description="largest body kept; a 100 MP JPEG is ~30 MB, and 32 "
        "threads x 40 MB bounds memory at ~1.3 GB",
    )
    chunk_bytes: int = Field(256 * 1024, gt=0, description="streaming read size")
    user_agent: str = Field(
        "million-ird/0.1 (dataset builder; contact: {contact})",
        pattern=r"^[^\r\n]+$",
        description="identifies the crawler so site owners can reach or block it; {contact} is "
        "replaced by `contact`. Its product token (up to the first /) is the name robots.txt "
        "groups and scoped X-Robots-Tag values are matched against",
    )
    contact: str | None = Field(
        None,
        pattern=r"^[^\r\n]+$",
        description="how a site owner reaches whoever runs the crawl (an e-mail address or a "
        "web page of yours), sent in the User-Agent; None sends <unset>. Set it for any crawl "
        "of hosts you do not run",
    )
    respect_x_robots_tag: bool = Field(
        True, description="honour X-Robots-Tag (unscoped, or scoped to our product token)"
    )
    respect_tdm_reservation: bool = Field(
        True,
        description="refuse images whose TDM rights are reserved (TDM-Rep: the "
        "`tdm-reservation: 1` header, or the origin's /.well-known/tdmrep.json)",
    )
    x_robots_block: list[str] = Field(
        default_factory=lambda: ["noai", "noimageai", "noindex", "noimageindex"],
        description="X-Robots-Tag directives that reject an image",
    )
    respect_robots_txt: bool = Field(
        True,
        description="fetch and honour robots.txt per host (RFC 9309; 4xx: no rules, 5xx or "
        "no answer: everything disallowed for the build; Crawl-delay honoured)",
    )
    robots_cache_size: int = Field(10_000, ge=1, description="hosts whose robots.txt is cached")
    block_private_addresses: bool = Field(
        True,
        description="SSRF guard: refuse loopback, private, link-local, multicast, "
        "reserved addresses (checked on every redirect hop)",
    )
    allow_hosts: list[str] = Field(
        default_factory=list,
        description="exceptions to the SSRF guard: host names, IPs or "
        "CIDR networks (e.g. 127.0.0.1, 10.0.0.0/8, images.internal)",
    )


class ProbeConfig(_Model):
    """Header probe and the single reduced decode."""

    max_pixels: int = Field(
        120_000_000,
        gt=0,
        description="decompression-bomb limit (width x height), set on "
        "Pillow explicitly; above the largest camera sensors (~100 MP), far below a bomb",
    )
    min_side: int = Field(
        1024, ge=1, description="shorter side, after EXIF orientation: LAION-HR's criterion"
    )
    max_aspect: float = Field(
        2.0, ge=1.0, description="long/short side: LSDIR's bound; panoramas and banners out"
    )
    formats: list[str] = Field(
        default_factory=lambda: ["JPEG", "PNG", "WEBP", "AVIF", "TIFF", "BMP", "MPO"],
        description="Pillow format names accepted; GIF is palette-only (256 colours), so out",
    )
    reduced_max_side: int = Field(
        1024, ge=64, description="long side of the one reduced decode every later stage uses"
    )
    full_decode_slots: int = Field(
        2, ge=1, description="concurrent full decodes (non-JPEG); bounds their memory"
    )


class FilterConfig(_Model):
    """Content gates on the reduced image, cheapest first. Luma is 0..255 (BT.601).

    Tuned on real photographs and wallpaper graphics (``python -m bench.curation_accuracy``;
    figures in bench/README.md): they favour keeping a doubtful photograph over keeping a
    graphic only where the evidence is weak (the global quality step removes weak photographs).
    """

    enabled: bool = Field(True, description="False: fetch and header probe only, no decode")
    min_luma_p99: float = Field(
        48.0,
        description="too_dark below: the 99th luma percentile; an underexposed frame has no "
        "highlight at all, a night scene or a dim forest has some",
    )
    max_dark_fraction: float = Field(
        0.7, description="too_dark above: share of crushed-black pixels (luma <= 6)"
    )
    max_luma_p01: float = Field(
        215.0, description="overexposed above: the 1st luma percentile (nothing dark: washed out)"
    )
    max_clipped_fraction: float = Field(
        0.5, description="overexposed above: share of clipped-highlight pixels (luma >= 250)"
    )
    max_document_score: float = Field(
        1.5, description="document above: text lines (ink bands over paper) per 100 rows"
    )
    document_min_paper: float = Field(
        0.45, description="document needs at least this share of paper-bright pixels"
    )
    max_top_colors_fraction: float = Field(
        0.8,
        description="graphic above, on its own: share of pixels in the 8 commonest colours "
        "(6 bits per channel); flat art fills most of the frame with a few colours. A foggy "
        "photograph reaches 0.63, so lower values are only a sign, with no sensor noise",
    )
    max_border_white: float = Field(
        0.7,
        description="white_background above (with min_white_fraction): share of the "
        "image border that is near-white",
    )
    min_white_fraction: float = Field(
        0.25, description="white_background needs at least this share of near-white pixels"
    )
    white_level: int = Field(
        235, description="a pixel is near-white when all channels reach this (and it is grey)"
    )
    min_colorfulness: float = Field(
        4.0, description="grayscale below (Hasler-Suesstrunk M); a colour photo is > 15"
    )
    flat_cell: int = Field(
        32, ge=4, description="cell size in reduced pixels (flat cells and the noise floor)"
    )
    flat_cell_std: float = Field(3.0, description="a cell is flat when its luma std is below")
    max_flat_fraction: float = Field(
        0.9,
        description="flat above: share of flat cells; only a frame with almost nothing in it "
        "(mist, sky and water photographs reach 0.5-0.8 and stay)",
    )
    focus_tile: int = Field(32, ge=8, description="tile side of the focus map, reduced pixels")
    min_focus_sharpness: float = Field(
        0.6,
        description="blurry below: edge sharpness (2nd over 1st difference, ~1 / edge width) "
        "of the sharpest 10 % of tiles, in the blurriest direction; sharp real photographs "
        "measure 0.7-2.7, Gaussian blur of sigma 2 reduced pixels <= 0.4, motion blur of 13 <= 0.6",
    )
    min_laplacian_var: float | None = Field(
        None,
        description="optional global blur gate (LSDIR: 150): variance of the Laplacian of the "
        "whole reduced image; off by default, since it rejects depth of field, skies and water",
    )
    render_max_noise: float = Field(
        0.75,
        description="a render's sign: noise_median below this (luma levels, the median cell): "
        "smooth nearly everywhere; camera photographs carry texture and noise over most of the "
        "frame. Rejects as graphic only with a second sign",
    )
    render_min_exact_flat: float = Field(
        0.3, description="second sign of a render: exact_flat_fraction at least this"
    )
    render_min_saturation: float = Field(
        0.5, description="second sign of a render: mean saturation at least this"
    )
    render_min_top_colors: float = Field(
        0.6, description="second sign of a render: top_colors_fraction at least this"
    )
    max_exact_flat_fraction: float = Field(
        0.5,
        description="graphic above, on its own: share of exactly flat 2x2 blocks (mid-tones); "
        "drawn fills, never a camera's noise",
    )
    vivid_saturation: float = Field(
        0.85, description="graphic at or above (with vivid_max_noise): mean saturation"
    )
    vivid_max_noise: float = Field(
        3.0, description="vivid colour counts as a render only with noise_floor below this"
    )
    max_straight_edges: float = Field(
        0.85,
        description="graphic at or above: how far the five longest pixel-aligned edges span "
        "their row or column (window borders, panels, stripes); real photographs <= 0.8",
    )
    max_noise_floor: float = Field(
        15.0,
        description="noisy above: noise in the smoothest cells (luma levels); real photographs "
        "measure 0-4 on the reduced image, synthetic grain textures 14 and more",
    )
    max_laplacian_var: float | None = Field(
        8000.0, description="noisy above (LSDIR's upper bound); None disables"
    )
    reject_grayscale: bool = Field(
        True, description="a policy, not a judgement: restoration training here is RGB"
    )


class RejectSampleConfig(_Model):
    """Thumbnails of rejected candidates kept in the published version, so a data team can
    audit false rejects (only candidates rejected after a successful decode have pixels)."""

    per_reason: int | None = Field(
        50,
        ge=0,
        description="most thumbnails kept per reject reason in a version (the smallest "
        "candidate ids win, so the choice is deterministic); None keeps all, 0 none",
    )
    max_side: int = Field(256, ge=16, le=1024, description="long side of a thumbnail, pixels")
    quality: int = Field(70, ge=10, le=95, description="JPEG quality of the thumbnails")


class CurationConfig(_Model):
    """Everything the collect-and-filter half of a build needs."""

    sources: list[SourceConfig] = Field(
        default_factory=list,
        description="inputs read in order; at least one is needed to build, and their names "
        "must be unique",
    )
    partition_size: int = Field(
        2000,
        ge=1,
        description="candidates per partition: ~1 min of one worker's time at "
        "typical rates, small enough to redo whole after a crash",
    )
    cpu_slots: int = Field(
        0,
        ge=0,
        description="candidates decoded, filtered, hashed and scored at once per process (0: "
        "its usable cores); fetching stays fetch.threads-wide",
    )
    fetch: FetchConfig = Field(default_factory=FetchConfig)
    probe: ProbeConfig = Field(default_factory=ProbeConfig)
    filters: FilterConfig = Field(default_factory=FilterConfig)
    reject_samples: RejectSampleConfig = Field(default_factory=RejectSampleConfig)


class DedupeConfig(_Model):
    """Global removal of exact (sha256) and near (perceptual hash) duplicates, this build's
    samples against each other and against the parent version's."""

    distance: int = Field(
        DEFAULT_DISTANCE,
        ge=0,
        le=16,
        description="Hamming distance of 64-bit phashes counted as near duplicates; 4 catches "
        "resized, recompressed (q60) and 2 %-cropped copies while distinct photos stay apart",
    )
    keeper_metric: str = Field(
        "niqe", description="IQA metric that picks a cluster's keeper (best score wins)"
    )
    test_sets: list[str] = Field(
        default_factory=list,
        description="test sets to keep out (`mird build --exclude`): folders or object-store "
        "prefixes, searched recursively (the `test/` folder `mird evaluate` reads works as it "
        "is); a candidate within test_set_distance of any of their images is rejected as "
        "test_set_overlap, naming the test image",
    )
    test_set_distance: int = Field(
        DEFAULT_DISTANCE,
        ge=0,
        le=16,
        description="Hamming distance of 64-bit phashes to a test image counted as a copy of it",
    )
    copies_memo_entries: int = Field(
        DEFAULT_MEMO_ENTRIES,
        ge=0,
        description="byte-identical copies remembered per worker process within a build, so "
        "that a copy is neither hashed nor scored again (about 1 KB each; the oldest are "
        "dropped, and a copy seen after that is scored again and still removed by the global "
        "dedupe); 0 remembers none",
    )


class PublishConfig(_Model):
    """How a build's kept samples become a published version."""

    max_shard_bytes: int = Field(
        1_000_000_000,
        ge=1,
        description="most image bytes in one final shard (~1 GB); the fewest shards that "
        "respect both limits are cut, balanced in bytes",
    )
    max_shard_count: int = Field(
        100_000, ge=1, description="most samples in one final shard (the other shard limit)"
    )
    license: str = Field("other", description="dataset card licence (sources keep their own)")
    keep_build_area: bool = Field(
        False, description="keep staging shards after publishing (for debugging, dashboards)"
    )
    allow_empty: bool = Field(
        False,
        description="publish even when the build keeps no sample (an empty first version, or "
        "a version that only records new rejects); by default such a build publishes nothing "
        "and fails, keeping its rejects in the build area",
    )


class BuildConfig(_Model):
    """Everything one build needs: the one model the CLI, the flow and the Prefect UI share."""

    root: str = Field(description="storage root URI (local path, file://, s3://, gs://...)")
    name: str = Field("million-ird", description="dataset name under the root")
    curation: CurationConfig = Field(default_factory=CurationConfig)
    quality: QualityConfig = Field(default_factory=QualityConfig)
    dedupe: DedupeConfig = Field(default_factory=DedupeConfig)
    publish: PublishConfig = Field(default_factory=PublishConfig)
    patches: PatchConfig = Field(default_factory=PatchConfig)
    incremental: bool = Field(
        True, description="build on the latest version: keep its shards, add only new samples"
    )
    partition_resources: dict[str, float] = Field(
        default_factory=dict,
        description="Dask worker resources each partition task needs, e.g. {GPU: 1} with "
        "quality.device cuda: partitions (and so their batched IQA) then run only on workers "
        "started with --resources GPU=1 (a --dask-local cluster offers them on every worker); "
        "the build refuses to start when no worker offers them; ignored without Dask",
    )
