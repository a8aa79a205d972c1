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
    crop_column: str | None = None     # attribute shown in summaries (crop name/code)
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


class CatalogueConfig(_Strict):
    source: Literal["resto", "offline"] = "resto"
    url: str = "https://datahub.creodias.eu/resto/api/collections/{collection}/search.json"
    format: Literal["json", "atom"] = "json"
    path: str | None = None            # offline: directory of saved responses / STAC items
    page_size: int = Field(default=500, ge=1, le=2000)
    max_per_query: int = Field(default=2000, ge=1)  # server cap per query (split above)
    timeout_s: float = 60.0
    retries: int = Field(default=5, ge=0)
    min_window_hours: float = 1.0      # never split a window below this
    s2_product_type: str = "S2MSI2A"   # resto productType of S2 L2A (CDSE, CREODIAS datahub; "L2A" on the old finder)

    @model_validator(mode="after")
    def _offline_needs_path(self) -> CatalogueConfig:
        if self.source == "offline" and not self.path:
            raise ValueError("catalogue.source 'offline' needs catalogue.path")
        return self


class StoreConfig(_Strict):
    kind: Literal["mount", "s3"] = "mount"
    root: str = "/eodata"              # mount: directory that holds Sentinel-1/, Sentinel-2/
    bucket: str = "eodata"             # s3
    conn_id: str = "cbm_s3"            # s3: Airflow connection (aws) or CBM_S3_* environment
    cache_dir: str | None = None       # s3: per-scene download cache (default: system temp)


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
    """Order missing Sentinel-1 CARD products from the DIAS processing service (off by default).

    Endpoints and payloads: see docs/harvest.md (CREODIAS finder order API).
    """

    enabled: bool = False
    conn_id: str = "cbm_order"          # Airflow connection (http): login, password, host = API URL
    url: str = "https://finder.creodias.eu/api/order"   # order API base (without trailing /)
    token_url: str = "https://auth.creodias.eu/auth/realms/DIAS/protocol/openid-connect/token"
    client_id: str = "CLOUDFERRO_PUBLIC"
    cards: tuple[Literal["bs", "c6"], ...] = ("bs", "c6")
    # PaaS processor per card (the seed's settings_historical.json: card_bs, coh)
    processors: dict[str, str] = Field(default_factory=lambda: {"bs": "card_bs", "c6": "coh"})
    # resto productType of the source products (finder: GRD / SLC; CDSE: IW_GRDH_1S / IW_SLC__1S)
    source_product_types: dict[str, str] = Field(default_factory=lambda: {"bs": "GRD", "c6": "SLC"})
    # extra resto query parameters of the source search (the seed: IW sensor mode)
    source_query: dict[str, str] = Field(default_factory=lambda: {"sensorMode": "IW"})
    priority: int = 1
    order_name: str = "{aoi}_{card}_{start:%Y%m%d}_{end:%Y%m%d}"
    max_products_per_order: int = Field(default=500, ge=1)
    max_products_per_run: int = Field(default=2000, ge=1)   # cost guard per call
    poll_interval_minutes: float = Field(default=60.0, ge=0)
    # scheduled harvests reach back to the sensing time of products ordered within this many
    # days and not harvested yet (CARD products carry their source's sensing time)
    pickup_days: float = Field(default=30.0, ge=0)
    reorder_failed: bool = False        # order again products whose earlier order item failed
    timeout_s: float = 60.0
    retries: int = Field(default=5, ge=0)

    @field_validator("processors", "source_product_types")
    @classmethod
    def _cards(cls, v: dict[str, str]) -> dict[str, str]:
        bad = set(v) - {"bs", "c6"}
        if bad:
            raise ValueError(f"only cards bs and c6 can be ordered, not {sorted(bad)}")
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
