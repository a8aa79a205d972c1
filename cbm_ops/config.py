"""AOI configuration: one YAML file per AOI in ``include/aois/<name>.yaml``.

Files are parsed with PyYAML and validated with pydantic (unknown keys are errors, so a
typo never silently falls back to a default). Relative paths are resolved against the
project directory (the parent of ``include/``). See the README's configuration reference
for every key; ``include/aois/demo_flanders.yaml`` is a complete example.
"""

from __future__ import annotations

import datetime as dt
import os
import re
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from .errors import ConfigError


def _project_dir() -> Path:
    """The project directory (``include/aois``, ``include/sample``, relative AOI paths).

    ``CBM_PROJECT_DIR``; else the source checkout this package lives in (``pip install -e``
    or ``PYTHONPATH``); else the current directory (a wheel installed in site-packages).
    """
    if os.environ.get("CBM_PROJECT_DIR"):
        return Path(os.environ["CBM_PROJECT_DIR"]).resolve()
    src = Path(__file__).resolve().parent.parent
    if (src / "include" / "sql").is_dir():
        return src
    return Path.cwd()



PROJECT_DIR = _project_dir()
AOI_DIR = PROJECT_DIR / "include" / "aois"

# Stage -> (card, kind). kind "hist" writes hists (SCL), "stats" writes sigs.
STAGES: dict[str, tuple[str, str]] = {
    "scl": ("s2", "hist"),
    "s2_10m": ("s2", "stats"),
    "s2_20m": ("s2", "stats"),
    "bs": ("bs", "stats"),
    "c6": ("c6", "stats"),
}
CARD_STAGES: dict[str, tuple[str, ...]] = {
    "s2": ("scl", "s2_10m", "s2_20m"),
    "bs": ("bs",),
    "c6": ("c6",),
}
# Band code suffix stored in sigs.band for Sentinel-1 (reference: VVb, VHb, VVc, VHc).
S1_SUFFIX = {"bs": "b", "c6": "c"}
S2_NATIVE_RES = {"B01": 60, "B02": 10, "B03": 10, "B04": 10, "B05": 20, "B06": 20, "B07": 20,
                 "B08": 10, "B8A": 20, "B09": 60, "B11": 20, "B12": 20, "SCL": 20}
_IDENT = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


# Tables of an AOI schema that a parcel table must not replace.
RESERVED_TABLES = frozenset({
    "dias_catalogue", "aois", "sigs", "hists", "scene_stages", "parcel_grids", "parcel_grid_chunks",
    "grid_sightings", "result_partitions", "cbm_schema", "sigs_legacy", "hists_legacy",
    "harvest_log", "card_orders", "card_order_items", "parcel_observations"})


class ParcelsConfig(_Strict):
    table: str = "parcels"
    source: str | None = None          # file to import (GeoPackage, Shapefile, GeoJSON)
    layer: str | None = None           # layer of the source file (default: first)
    crop_column: str | None = None     # attribute shown in summaries (crop name/code); JRC ``cropname``
    crop_code_column: str | None = None  # attribute served as the JRC ``cropcode`` (as text)
    exclude_outliers: bool = True      # drop parcels far away from the rest (coordinates of another CRS)
    outlier_factor: float = Field(default=10.0, gt=1)   # x the 90 % distance from the set's centre
    crs_tolerance_deg: float = Field(default=1.0, ge=0)  # slack around the CRS's area of use
    max_outline_km2: float = Field(default=5e6, gt=0)       # parcel extent above this: refused (EU ~4.2e6)
    max_km2_per_parcel: float = Field(default=5000.0, gt=0)  # parcel extent per parcel above this: refused

    @field_validator("table")
    @classmethod
    def _ident(cls, v: str) -> str:
        if not _IDENT.match(v):
            raise ValueError(f"{v!r} is not a lower-case SQL identifier")
        if v in RESERVED_TABLES or re.match(r"^(sigs|hists)_o\d+$|^_import_", v):
            raise ValueError(f"{v!r} is a table of cbm-airflow itself; give the parcel table another name")
        return v


# Default catalogue URL per source. CDSE switched its resto catalogue off in March 2026;
# its OData and STAC APIs remain (../shared/data/catalogue-responses/APIS.md).
CATALOGUE_URLS = {
    "odata": "https://catalogue.dataspace.copernicus.eu/odata/v1",
    "stac": "https://stac.dataspace.copernicus.eu/v1",
    "resto": "https://datahub.creodias.eu/resto/api/collections/{collection}/search.json",
}
# Page size per source when catalogue.page_size is not set, and the services' maxima:
# OData $top <= 1000 (CDSE OData doc); CDSE STAC v1 limit <= 200 for sentinel-2-l2a (CDSE
# staff on the forum); resto maxRecords <= 2000 (CREODIAS).
PAGE_SIZE = {"odata": 100, "stac": 100, "resto": 500, "offline": 500}
PAGE_MAX = {"odata": 1000, "stac": 10000, "resto": 2000, "offline": 10000}
CDSE_STAC_PAGE_MAX = 200
# Records one query can reach: OData $skip <= 10,000 (CDSE release note 2024-11-12, plus one
# page); CREODIAS resto 2000. Windows whose count is above it are split.
MAX_PER_QUERY = {"odata": 10000, "stac": 10000, "resto": 2000, "offline": 10**9}


class CatalogueConfig(_Strict):
    """Where scene records come from (docs/harvest.md, "Catalogue sources").

    ``odata`` (CDSE OData, the default), ``stac`` (any STAC API through pystac-client: CDSE
    STAC v1, Earth Search, Planetary Computer), ``resto`` (other DIAS), ``offline`` (saved
    responses). ``url``, ``page_size`` and ``max_per_query`` default per source.
    """

    source: Literal["odata", "stac", "resto", "offline"] = "odata"
    url: str | None = None             # default per source: CATALOGUE_URLS
    format: Literal["json", "atom"] = "json"     # resto only
    path: str | None = None            # offline: directory of saved responses / STAC items / OData pages
    page_size: int | None = Field(default=None, ge=1)       # default PAGE_SIZE[source]
    max_per_query: int | None = Field(default=None, ge=1)   # server cap per query (split above)
    max_skip: int = Field(default=10000, ge=1)   # odata: largest $skip the service accepts
    timeout_s: float = 60.0
    retries: int = Field(default=5, ge=0)
    min_window_hours: float = 1.0      # never split a window below this
    s2_product_type: str = "S2MSI2A"   # productType of S2 L2A (OData, CDSE/CREODIAS resto; "L2A" on the old finder)
    # OData/resto productType per S1 CARD (CARD-COH6 in OData is UNCONFIRMED: docs/harvest.md)
    card_product_types: dict[str, str] = Field(default_factory=lambda: {"bs": "CARD-BS", "c6": "CARD-COH6"})
    max_cloud_cover: float | None = Field(default=None, ge=0, le=100)   # S2, percent; server- and client-side
    online_only: bool = False          # odata: add "Online eq true"
    # stac: collection per card; a card without one is not harvested from the source (reported)
    collections: dict[str, str] = Field(default_factory=lambda: {"s2": "sentinel-2-l2a"})
    # stac: how the cloud cover reaches the server: CQL2 filter, the query extension, or not at
    # all; auto = query for Planetary Computer and Earth Search, cql2 otherwise
    cloud_filter: Literal["auto", "cql2", "query", "none"] = "auto"
    # stac: href signer at read time; auto = planetary_computer for planetarycomputer.microsoft.com
    signer: Literal["auto", "none", "planetary_computer"] = "auto"
    # stac (Earth Search sentinel-2-l2a): what earthsearch:boa_offset_applied means
    boa_offset_applied: Literal["trust_flag", "assume_applied", "assume_raw"] = "trust_flag"
    max_pages: int = Field(default=1000, ge=1)   # per window: guard against a server that pages forever

    @model_validator(mode="after")
    def _check(self) -> CatalogueConfig:
        if self.source == "offline" and not self.path:
            raise ValueError("catalogue.source 'offline' needs catalogue.path")
        if self.page_size is not None and self.page_size > PAGE_MAX[self.source]:
            raise ValueError(f"catalogue.page_size {self.page_size} is above the {self.source} "
                             f"maximum {PAGE_MAX[self.source]}")
        if (self.source == "stac" and self.page_size is not None and self.page_size > CDSE_STAC_PAGE_MAX
                and "dataspace.copernicus.eu" in self.api_url):
            raise ValueError(f"catalogue.page_size {self.page_size}: CDSE STAC accepts at most "
                             f"{CDSE_STAC_PAGE_MAX} items per page")
        bad = set(self.collections) - {"s2", "bs", "c6"}
        bad |= set(self.card_product_types) - {"bs", "c6"}
        if bad:
            raise ValueError(f"unknown cards {sorted(bad)} (cards: s2, bs, c6)")
        return self

    @property
    def api_url(self) -> str:
        """The catalogue URL: ``url`` or the source's default (:data:`CATALOGUE_URLS`)."""
        return (self.url or CATALOGUE_URLS.get(self.source, "")).rstrip("/")

    @property
    def page(self) -> int:
        """Records per page requested (``page_size`` or the source's default)."""
        return self.page_size or PAGE_SIZE[self.source]

    @property
    def cap(self) -> int:
        """Records one query can reach (``max_per_query`` or the source's default)."""
        return self.max_per_query or MAX_PER_QUERY[self.source]


class StoreConfig(_Strict):
    """Where band files are read (docs/harvest.md, "Scene access")."""

    kind: Literal["mount", "s3"] = "mount"
    root: str = "/eodata"              # mount: directory that holds Sentinel-1/, Sentinel-2/
    bucket: str = "eodata"             # s3
    conn_id: str = "cbm_s3"            # s3: Airflow connection (aws) or CBM_S3_* environment
    cache_dir: str | None = None       # s3: per-scene download cache (default: system temp)
    # s3: read GeoTIFF/COG bands with HTTP range requests (GDAL /vsis3/) instead of downloading
    # them; auto = .tif range-read, JP2 downloaded (fewer requests per scene on CDSE)
    range_reads: Literal["auto", "always", "never"] = "auto"
    region: str = "us-east-1"          # s3: SigV4 region (CDSE: any; its boto3 example uses "default")
    # s3 free-tier limits per process (CDSE: 4 connections, 2,000 requests/min)
    max_connections: int = Field(default=4, ge=1)
    max_requests_per_minute: int = Field(default=2000, ge=1)


class MaintenanceConfig(_Strict):
    schedule: str | None = "0 5 * * 0"
    delete_cloudy_sigs: bool = False   # opt-in: drop sigs of parcel-dates with SCL 9 only
    vacuum: bool = True
    cluster: bool = True
    backup_dir: str | None = None      # pg_dump target directory; None = no backup
    export_dir: str | None = None      # canonical sigs + parcels export (cbm_ops.analyst.export); None = no export
    lock_timeout_s: float = Field(default=10.0, gt=0)   # VACUUM/CLUSTER give up on a locked table after this


class QualityConfig(_Strict):
    """Thresholds of the quality gate (cbm_ops.extract.quality): a scene stage failing a check is
    stored as ``Quarantined``, its rows are not written."""

    enabled: bool = True
    min_coverage: float = Field(default=0.8, ge=0, le=1)   # covered / expected parcels per band
    coverage_margin_m: float = Field(default=100.0, ge=0)  # footprint shrunk by this (metres)
    min_expected_parcels: int = Field(default=10, ge=1)    # fewer expected parcels: coverage not checked
    max_out_of_range: float = Field(default=0.01, ge=0, le=1)  # fraction of parcels with data
    max_nan_fraction: float = Field(default=0.01, ge=0, le=1)  # fraction of window pixels
    max_constant: float = Field(default=0.5, ge=0, le=1)   # fraction of parcels with zero spread
    s2_max_dn: float = Field(default=20000, gt=0)          # S2 p50 above this DN (before offset): impossible
    bs_max_linear: float = Field(default=100.0, gt=0)      # CARD-BS p50 above this (linear, +20 dB)


# --------------------------------------------------------------------------- harvest checks
# Record tolerance, window widening, completeness and Sentinel-1 CARD ordering (sections
# ``harvest:``, ``completeness:``, ``ordering:``); every key is documented in docs/harvest.md.
class HarvestConfig(_Strict):
    """Per-record checks of the harvest and the widening of scheduled windows."""

    # A catalogue sensing time further than this from the time in the product name is
    # flagged and the name's time is used. Both are the sensing start of the same product
    # (S1: the slice; S2: the datatake, which resto/STAC report unchanged, 0 s apart in the
    # real CREODIAS and earth-search fixtures); one hour is far above any rounding and far
    # below the errors that matter (a default epoch, a wrong field, a day shift).
    date_tolerance_hours: float = Field(default=1.0, gt=0)
    # Scheduled runs start at the end of the last successful harvest of the card (minus
    # lookback_days) when that is earlier than their own window (cbm_ops.harvest.catalogue.widened_window).
    widen: bool = True
    # Cap on how far back a widened window reaches (days before the run's end); None = back
    # to the AOI's start_date.
    max_widen_days: float | None = Field(default=None, gt=0)


class CompletenessConfig(_Strict):
    """Expected acquisitions from the revisit pattern vs harvested vs extracted."""

    enabled: bool = True
    # Fail the completeness check (CLI exit code 3, the DAG task fails) when more than this
    # percentage of the expected acquisitions of the window is missing; None = only warn.
    fail_above_pct: float | None = Field(default=None, ge=0, le=100)
    # Repeat cycle of ONE satellite on one relative orbit (ESA mission guides:
    # Sentinel-2 10 days, Sentinel-1 12 days; two satellites give 5 and 6 days).
    s2_repeat_days: float = Field(default=10.0, gt=0)
    s1_repeat_days: float = Field(default=12.0, gt=0)
    # A product within this time of an expected date is that acquisition.
    match_hours: float = Field(default=12.0, gt=0)
    # Expected acquisitions younger than this are "pending" (not yet published), not missing.
    grace_days: float = Field(default=3.0, ge=0)
    # A satellite whose acquisitions stop (start) this many repeat cycles before (after)
    # another satellite's is out of service after (before) them: S1B after 2021-12-23.
    retired_after_cycles: float = Field(default=2.0, gt=0)


class OrderingConfig(_Strict):
    """Order missing Sentinel-1 CARD products from the CDSE On-Demand Processing (ODP) API
    (off by default). Endpoints, payloads and what is assumed: docs/harvest.md."""

    enabled: bool = False
    conn_id: str = "cbm_order"          # Airflow connection: CDSE login/password (no 2FA); host = ODP base
    url: str = "https://odp.dataspace.copernicus.eu/odata/v1"   # ODP base (without trailing /)
    token_url: str = "https://identity.dataspace.copernicus.eu/auth/realms/CDSE/protocol/openid-connect/token"
    client_id: str = "cdse-public"
    cards: tuple[Literal["bs", "c6"], ...] = ("bs", "c6")
    # ODP workflow per card; a card not listed is looked up in GET /Workflows by its output
    # product type (the CARD-COH6 workflow name is UNCONFIRMED; CARD-BS: card_bs in the CDSE doc)
    workflows: dict[str, str] = Field(default_factory=dict)
    output_product_types: dict[str, str] = Field(default_factory=lambda: {"bs": "CARD-BS", "c6": "CARD-COH6"})
    # productType of the source products searched in the catalogue (OData/CDSE names; the old
    # CREODIAS finder used the groups GRD / SLC)
    source_product_types: dict[str, str] = Field(default_factory=lambda: {"bs": "IW_GRDH_1S", "c6": "IW_SLC__1S"})
    # extra resto query parameters of the source search (catalogue.source resto only)
    source_query: dict[str, str] = Field(default_factory=lambda: {"sensorMode": "IW"})
    priority: int = 1
    order_name: str = "{aoi}_{card}_{reference}"
    # CDSE quotas of the Data Workspace API (CDSE doc "Quotas"): processed products per
    # calendar month (UTC) and items processed at once
    monthly_quota: int = Field(default=25, ge=0)
    max_concurrent: int = Field(default=2, ge=1)
    max_products_per_run: int = Field(default=25, ge=1)   # cost guard per call
    poll_interval_minutes: float = Field(default=15.0, ge=0)
    # scheduled harvests reach back to the sensing time of products ordered within this many
    # days and not harvested yet (CARD products carry their source's sensing time)
    pickup_days: float = Field(default=30.0, ge=0)
    reorder_failed: bool = False        # order again products whose earlier order failed/was cancelled
    timeout_s: float = 60.0
    retries: int = Field(default=5, ge=0)

    @field_validator("workflows", "source_product_types", "output_product_types")
    @classmethod
    def _cards(cls, v: dict[str, str]) -> dict[str, str]:
        bad = set(v) - {"bs", "c6"}
        if bad:
            raise ValueError(f"only cards bs and c6 can be ordered, not {sorted(bad)}")
        return v


# --------------------------------------------------------------------------- JRC API compatibility
_NAME = re.compile(r"^[a-z0-9][a-z0-9_-]{0,39}$")
_TILE_TEMPLATE = re.compile(r"^https?://[^\s\"'<>]+$")


class BackgroundSource(_Strict):
    """One background image source of the JRC routes ``backgroundByLocation``/``ByParcelID``.

    Exactly one of ``url`` (an XYZ tile template such as an agency's orthophoto service,
    ``https://tiles.example/ortho/{z}/{x}/{y}.png``, ``{-y}`` for TMS rows) or ``wms`` (a
    GDAL_WMS service description file, as the JRC's ``config/tms/*.xml``). The API server
    fetches the tiles with GDAL (``docs/analyst-api.md``); nothing is fetched for an AOI
    without sources.
    """

    url: str | None = None
    wms: str | None = None
    max_zoom: int = Field(default=19, ge=0, le=24)
    attribution: str = ""
    timeout_s: float = Field(default=10.0, gt=0, le=120)

    @model_validator(mode="after")
    def _one_source(self) -> BackgroundSource:
        if (self.url is None) == (self.wms is None):
            raise ValueError("give exactly one of url (XYZ tile template) or wms (GDAL_WMS XML file)")
        if self.url is not None and (not _TILE_TEMPLATE.match(self.url)
                                     or not all(k in self.url for k in ("{z}", "{x}"))
                                     or not ("{y}" in self.url or "{-y}" in self.url)):
            raise ValueError(f"url {self.url[:120]!r} is not an http(s) tile template with {{z}}, {{x}} and {{y}}")
        return self


class JrcConfig(_Strict):
    """What the JRC RESTful API routes need beyond the parcels (docs/analyst-api.md)."""

    # JRC ``ptype`` (another parcel table of the same dataset, e.g. g = grazing) -> name of
    # the AOI that holds that parcel set (its own schema and extraction)
    ptypes: dict[str, str] = Field(default_factory=dict)
    # ``tms`` name of the background routes (case-insensitive) -> its source
    backgrounds: dict[str, BackgroundSource] = Field(default_factory=dict)

    @field_validator("ptypes")
    @classmethod
    def _ptypes(cls, v: dict[str, str]) -> dict[str, str]:
        for k, aoi in v.items():
            if not re.fullmatch(r"[a-z0-9]{1,20}", k) or not _IDENT.match(aoi):
                raise ValueError(f"ptype {k!r} -> {aoi!r}: ptypes are a-z/0-9 (at most 20) mapped to AOI names")
        return v

    @field_validator("backgrounds")
    @classmethod
    def _names(cls, v: dict[str, BackgroundSource]) -> dict[str, BackgroundSource]:
        for k in v:
            if not _NAME.match(k):
                raise ValueError(f"background {k!r}: names are lower-case a-z, 0-9, '_' or '-' (at most 40)")
        return v


class DockerMount(_Strict):
    source: str
    target: str
    read_only: bool = True


class DockerConfig(_Strict):
    """Run extraction in a container through DockerOperator (the seed's dias_numba_py
    pattern, for agencies that isolate GDAL). Off by default."""

    enabled: bool = False
    image: str = "cbm-airflow:latest"
    docker_url: str | None = None      # default: DOCKER_HOST or unix://var/run/docker.sock
    network_mode: str | None = None
    mounts: tuple[DockerMount, ...] = ()
    auto_remove: Literal["never", "success", "force"] = "success"


_TILE_TEMPLATE = re.compile(r"^https?://[^\s\"'<>]+$")


class ViewerConfig(_Strict):
    """The parcel viewer (section ``viewer:``, docs/analyst-api.md): a background layer only when
    configured here (nothing is fetched from outside at run time otherwise), and the zoom from which
    parcels are drawn."""

    # XYZ raster tile template of a background layer, e.g. an agency's orthophoto service
    # "https://tiles.example/ortho/{z}/{x}/{y}.png" (or {-y} for TMS rows); none by default
    background_tiles: str | None = None
    background_attribution: str = ""
    background_max_zoom: int = Field(default=19, ge=0, le=24)
    # parcels are drawn from this zoom level on (a zoom-12 tile is about 6 km wide at 50 deg N,
    # ~2,000 parcels of 2 ha); AOIs of at most small_aoi_parcels parcels are drawn at every zoom
    min_zoom: int = Field(default=12, ge=0, le=16)
    small_aoi_parcels: int = Field(default=5000, ge=0)

    @field_validator("background_tiles")
    @classmethod
    def _template(cls, v: str | None) -> str | None:
        if v is None:
            return v
        if not _TILE_TEMPLATE.match(v) or not all(k in v for k in ("{z}", "{x}")) \
                or not ("{y}" in v or "{-y}" in v):
            raise ValueError(f"{v[:120]!r} is not an http(s) tile template with {{z}}, {{x}} and {{y}}")
        return v


class AoiConfig(_Strict):
    """One AOI: its parcels, CARD types and bands, catalogue, store and schedule."""

    name: str
    schema_: str | None = Field(default=None, alias="schema")
    description: str = ""
    parcels: ParcelsConfig = ParcelsConfig()
    aoi_wkt: str | None = None         # given outline (EPSG:4326); default: parcel extent
    cards: tuple[Literal["s2", "bs", "c6"], ...] = ("s2", "bs", "c6")
    bands: dict[str, tuple[str, ...]] = Field(default_factory=lambda: {
        "scl": ("SCL",), "s2_10m": ("B02", "B03", "B04", "B08"), "s2_20m": ("B05", "B11"),
        "bs": ("VV", "VH"), "c6": ("VV", "VH")})
    catalogue: CatalogueConfig = CatalogueConfig()
    store: StoreConfig = StoreConfig()
    db_conn_id: str = "cbm_db"
    start_date: dt.date
    end_date: dt.date | None = None
    schedule: str | None = "0 3 * * *"
    lookback_days: int = Field(default=10, ge=0)
    batch_size: int = Field(default=10, ge=1)       # scenes per mapped task instance
    max_batches: int = Field(default=200, ge=1, le=1000)  # cap on map indexes per stage
    pool: str = "cbm_extract"
    max_active_runs: int = 1
    retries: int = Field(default=2, ge=0)            # Airflow task retries
    retry_delay_minutes: float = Field(default=2, ge=0)
    # Retry delay of the rasterize/extract tasks: after a dead worker (noticed after the
    # scheduler-wide [scheduler] task_instance_heartbeat_timeout) the retry takes over the
    # scenes at once, so it need not wait as long as a harvest retry (network outages).
    extract_retry_delay_minutes: float = Field(default=0.5, ge=0)
    max_attempts: int = Field(default=3, ge=1)
    lease_minutes: float = Field(default=60, gt=0)
    all_touched: bool = False
    pid_indexes: bool = False          # reference sigs_pidx/hists_pidx (slower writes)
    partition_obsids: int = Field(default=500, ge=1)   # scenes (obsids) per partition of sigs/hists
    s2_nodata: int = 0
    s1_nodata: float = 0.0
    maintenance: MaintenanceConfig = MaintenanceConfig()
    quality: QualityConfig = QualityConfig()
    db_retry_minutes: float = Field(default=5.0, ge=0)   # extraction rides out a database outage this long
    threads_per_task: int | None = Field(default=None, ge=1)  # Numba/GDAL threads; None: CPUs / worker slots
    docker: DockerConfig = DockerConfig()
    # --- harvest checks, completeness, S1 CARD ordering (docs/harvest.md)
    harvest: HarvestConfig = HarvestConfig()
    completeness: CompletenessConfig = CompletenessConfig()
    ordering: OrderingConfig = OrderingConfig()
    # --- JRC RESTful API compatibility (docs/analyst-api.md)
    jrc: JrcConfig = JrcConfig()
    # --- parcel viewer: background layer, zoom limit
    viewer: ViewerConfig = ViewerConfig()
    # ---
    tags: tuple[str, ...] = ()

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    @field_validator("name")
    @classmethod
    def _name(cls, v: str) -> str:
        if not _IDENT.match(v):
            raise ValueError(f"{v!r}: AOI names are lower-case identifiers (a-z, 0-9, _)")
        return v

    @model_validator(mode="after")
    def _check(self) -> AoiConfig:
        if self.schema_ is not None and not _IDENT.match(self.schema_):
            raise ValueError(f"schema {self.schema_!r} is not a lower-case SQL identifier")
        for stage, bands in self.bands.items():
            if stage not in STAGES:
                raise ValueError(f"bands: unknown stage {stage!r} (known: {', '.join(STAGES)})")
            for b in bands:
                if stage in ("scl", "s2_10m", "s2_20m"):
                    if b not in S2_NATIVE_RES:
                        raise ValueError(f"bands.{stage}: unknown Sentinel-2 band {b!r}")
                    want = {"scl": 20, "s2_10m": 10, "s2_20m": 20}[stage]
                    if stage == "scl" and b != "SCL":
                        raise ValueError("bands.scl can only hold SCL")
                    if S2_NATIVE_RES[b] != want:
                        raise ValueError(f"bands.{stage}: {b} is a {S2_NATIVE_RES[b]} m band")
                elif b not in ("VV", "VH"):
                    raise ValueError(f"bands.{stage}: Sentinel-1 bands are VV and VH, not {b!r}")
        if self.end_date and self.end_date < self.start_date:
            raise ValueError("end_date is before start_date")
        return self

    # ----------------------------------------------------------------- derived
    @property
    def schema(self) -> str:  # type: ignore[override]  # pydantic's deprecated schema() classmethod
        """Database schema of this AOI (defaults to its name)."""
        return self.schema_ or self.name

    @property
    def stages(self) -> tuple[str, ...]:
        """Stages to run, in pipeline order (SCL before the S2 band stages)."""
        return tuple(s for c in self.cards for s in CARD_STAGES[c] if self.bands.get(s))

    def stored_bands(self, stage: str) -> tuple[str, ...]:
        """Band codes written to sigs/hists for ``stage`` (VV -> VVb for CARD-BS)."""
        card = STAGES[stage][0]
        suffix = S1_SUFFIX.get(card, "")
        return tuple(b + suffix for b in self.bands.get(stage, ()))

    def campaign_years(self, today: dt.date | None = None) -> list[int]:
        """Calendar years of the campaign, ``start_date`` to ``end_date`` (or today when open).

        They are the JRC API's datasets of this AOI (``<aoi>_<year>``).
        """
        last = (self.end_date or today or dt.date.today()).year
        return list(range(self.start_date.year, max(last, self.start_date.year) + 1))

    def resolve(self, path: str | None) -> Path | None:
        """Absolute path for a configured path (relative = relative to the project)."""
        if path is None:
            return None
        p = Path(path)
        return p if p.is_absolute() else PROJECT_DIR / p


def aoi_dir() -> Path:
    """Directory of the AOI files: ``CBM_AOI_DIR`` or ``include/aois``."""
    return Path(os.environ.get("CBM_AOI_DIR") or AOI_DIR)


def load_aoi(path: str | Path) -> AoiConfig:
    """Read and validate one AOI file.

    Raises
    ------
    ConfigError
        With the file name and every invalid key, if the file is unreadable or invalid.
    """
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise ConfigError(f"{path}: {exc}") from exc
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping of settings")
    data.setdefault("name", path.stem)
    try:
        return AoiConfig.model_validate(data)
    except ValidationError as exc:
        errors = "; ".join(f"{'.'.join(str(x) for x in e['loc'])}: {e['msg']}" for e in exc.errors())
        raise ConfigError(f"{path}: {errors}") from None


def load_all(directory: str | Path | None = None) -> dict[str, AoiConfig]:
    """All AOI files of ``directory`` (default :func:`aoi_dir`), by AOI name.

    Raises
    ------
    ConfigError
        If a file is invalid, two files define the same AOI or two AOIs share a schema
        (pids of different parcel sets would collide in one sigs table).
    """
    directory = Path(directory or aoi_dir())
    aois: dict[str, AoiConfig] = {}
    schemas: dict[str, str] = {}
    for f in sorted(directory.glob("*.y*ml")):
        cfg = load_aoi(f)
        if cfg.name in aois:
            raise ConfigError(f"{f}: AOI {cfg.name!r} is defined twice")
        if cfg.schema in schemas:
            raise ConfigError(f"{f}: schema {cfg.schema!r} is already used by AOI "
                              f"{schemas[cfg.schema]!r}; give each AOI its own schema")
        aois[cfg.name] = cfg
        schemas[cfg.schema] = cfg.name
    return aois


def load_valid(directory: str | Path | None = None) -> tuple[dict[str, AoiConfig], dict[str, str]]:
    """The valid AOI files of ``directory``, and an error message per invalid file.

    For the DAG files: one broken AOI file must not take the other AOIs' DAGs down.
    A file that repeats an AOI name or a schema of an earlier (sorted) file is invalid.

    Returns
    -------
    (dict, dict)
        AOIs by name; ``{file path: one-line error}`` of the files left out.
    """
    directory = Path(directory or aoi_dir())
    aois: dict[str, AoiConfig] = {}
    schemas: dict[str, str] = {}
    errors: dict[str, str] = {}
    for f in sorted(directory.glob("*.y*ml")):
        try:
            cfg = load_aoi(f)
        except ConfigError as exc:
            errors[str(f)] = str(exc)
            continue
        if cfg.name in aois:
            errors[str(f)] = f"{f}: AOI {cfg.name!r} is defined twice"
        elif cfg.schema in schemas:
            errors[str(f)] = (f"{f}: schema {cfg.schema!r} is already used by AOI {schemas[cfg.schema]!r}; "
                              "give each AOI its own schema")
        else:
            aois[cfg.name] = cfg
            schemas[cfg.schema] = cfg.name
    return aois, errors


def get_aoi(name_or_path: str) -> AoiConfig:
    """An AOI by name (looked up in ``include/aois``, or ``CBM_AOI_DIR``) or by file path.

    Raises
    ------
    ConfigError
        If no such AOI file exists or it is invalid.
    """
    p = Path(name_or_path)
    if p.suffix in (".yaml", ".yml") and p.exists():
        return load_aoi(p)
    directory = aoi_dir()
    for ext in (".yaml", ".yml"):
        if (directory / f"{name_or_path}{ext}").exists():
            return load_aoi(directory / f"{name_or_path}{ext}")
    raise ConfigError(f"no AOI {name_or_path!r}: expected {directory}/{name_or_path}.yaml")


# --------------------------------------------------------------------------- parcel API process
class ApiSettings(BaseModel):
    """Settings of the parcel API process (not per AOI), from the environment.

    ============================  ==========================================================
    variable                      meaning (default)
    ============================  ==========================================================
    ``CBM_CHIPS_DIR``             chip and background cache (``<temp>/cbm-chips-<uid>``)
    ``CBM_CHIPS_MAX_SIZE_M``      largest chip edge in metres (5120, the JRC's limit)
    ``CBM_CHIPS_MAX_COUNT``       chips per request of the chip routes (24, the JRC's)
    ``CBM_CHIPS_MAX_BATCH``       chips per request of the batch routes (36, the JRC's)
    ``CBM_CHIPS_WORKERS``         chips cut at the same time in the process (2)
    ``CBM_CHIPS_CACHE_MB``        cache size above which the oldest requests are removed (500)
    ``CBM_API_SECRET``            key of the unguessable chip paths (a random key kept in the cache)
    ``CBM_API_PUBLIC_URL``        absolute API URL in background answers (the request's URL)
    ``CBM_API_USERS_FILE``        JRC-format users file of the standalone API (none)
    ============================  ==========================================================
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    chips_dir: Path
    chips_max_size_m: float = Field(default=5120.0, gt=0, le=100_000)
    chips_max_count: int = Field(default=24, ge=1, le=1000)
    chips_max_batch: int = Field(default=36, ge=1, le=1000)
    chips_workers: int = Field(default=2, ge=1, le=64)
    chips_cache_mb: float = Field(default=500.0, gt=0)
    secret: str | None = None
    public_url: str | None = None
    users_file: str | None = None

    @classmethod
    def from_env(cls, env: dict[str, str] | None = None) -> ApiSettings:
        """The settings of ``env`` (default ``os.environ``).

        Raises
        ------
        ConfigError
            A variable that is not a valid value (named).
        """
        import tempfile

        env = dict(os.environ if env is None else env)
        names = {"chips_max_size_m": "CBM_CHIPS_MAX_SIZE_M", "chips_max_count": "CBM_CHIPS_MAX_COUNT",
                 "chips_max_batch": "CBM_CHIPS_MAX_BATCH", "chips_workers": "CBM_CHIPS_WORKERS",
                 "chips_cache_mb": "CBM_CHIPS_CACHE_MB", "secret": "CBM_API_SECRET",  # nosec B105 - a variable's name
                 "public_url": "CBM_API_PUBLIC_URL", "users_file": "CBM_API_USERS_FILE"}
        data: dict[str, object] = {k: env[v] for k, v in names.items() if env.get(v, "").strip()}
        data["chips_dir"] = env.get("CBM_CHIPS_DIR") or Path(tempfile.gettempdir()) / f"cbm-chips-{os.getuid()}"
        try:
            return cls.model_validate(data)
        except ValidationError as exc:
            err = exc.errors()[0]
            var = names.get(str(err["loc"][0]), "CBM_CHIPS_DIR")
            raise ConfigError(f"{var}: {err['msg']}") from None
