"""What every route of the parcel API shares: the AOI lookup, the database, parameter types,
documented error answers and the column-list responses.

The app keeps an :class:`ApiContext` in ``app.state.cbm``; routes get it through the
:data:`Api` dependency and run their query with :meth:`ApiContext.run` (a pooled,
read-only transaction with a statement timeout).
"""

import threading
import time
from collections.abc import Callable
from typing import Annotated, Any, Literal

import orjson
from fastapi import Depends, Query, Request
from fastapi.responses import Response
from pydantic import AfterValidator, BaseModel

from cbm_ops import analyst
from cbm_ops.config import AoiConfig, ApiSettings
from cbm_ops.errors import BadRequest, ConfigError, Forbidden, NotFound

AOI_PATTERN = r"^[a-z_][a-z0-9_]{0,62}$"
AOI_PARAM_PATTERN = r"^[A-Za-z_][A-Za-z0-9_]{0,62}$"     # the JRC lower-cases aoi; so does Aoi below
ALL_BANDS = ("B01", "B02", "B03", "B04", "B05", "B06", "B07", "B08", "B8A", "B09", "B10", "B11", "B12",
             "VVb", "VHb", "VVc", "VHc")
PID_MAX = 2**31 - 1
COLUMNS_SCHEMA = {"type": "object", "description": "equal-length column lists (JRC API shape)",
                  "additionalProperties": {"type": "array", "items": {}}}
URL_CACHE_S = 300.0


# ----------------------------------------------------------------- configuration lookups
class AoiCache:
    """AOI files, re-read when a file of the directory is added, removed or changed."""

    def __init__(self) -> None:
        self._key: tuple | None = None
        self._aois: dict[str, AoiConfig] = {}
        self._lock = threading.Lock()

    def __call__(self) -> dict[str, AoiConfig]:
        from cbm_ops.config import aoi_dir, load_all

        d = aoi_dir()
        files = sorted(list(d.glob("*.yaml")) + list(d.glob("*.yml")))
        key = (str(d), tuple((f.name, f.stat().st_mtime_ns) for f in files))
        with self._lock:
            if key != self._key:
                self._aois, self._key = load_all(d), key
            return self._aois


def airflow_db_url(cfg: AoiConfig) -> str:
    """Database URL in the api-server: Airflow Connection (secrets backends, env, metadata DB)."""
    from cbm_ops.db import db_url_from_env

    try:
        from airflow.models.connection import Connection

        return Connection.get_connection_from_secrets(cfg.db_conn_id).get_uri()
    except Exception:  # noqa: BLE001 - outside Airflow (tests) fall back to the environment
        return db_url_from_env(cfg.db_conn_id)


def env_db_url(cfg: AoiConfig) -> str:
    """Database URL from ``CBM_DB_URL`` or ``AIRFLOW_CONN_<ID>``."""
    from cbm_ops.db import db_url_from_env

    return db_url_from_env(cfg.db_conn_id)


class UrlCache:
    """Connection lookups cached for 5 minutes (the secrets backend may be remote)."""

    def __init__(self, lookup: Callable[[AoiConfig], str]):
        self._lookup = lookup
        self._urls: dict[str, tuple[float, str]] = {}

    def __call__(self, cfg: AoiConfig) -> str:
        hit = self._urls.get(cfg.db_conn_id)
        if hit and time.monotonic() - hit[0] < URL_CACHE_S:
            return hit[1]
        url = self._lookup(cfg)
        self._urls[cfg.db_conn_id] = (time.monotonic(), url)
        return url


class ApiContext:
    """The AOIs, database, scene stores and chip cutter of one app (``app.state.cbm``)."""

    def __init__(self, aois: Callable[[], dict[str, AoiConfig]], db_url: Callable[[AoiConfig], str],
                 store_for: Callable[[AoiConfig], Any] | None = None, settings: ApiSettings | None = None):
        self.aois, self.db_url = aois, db_url
        self._store_for = store_for
        self._settings = settings
        self._stores: dict[str, tuple[AoiConfig, Any]] = {}
        self._chips: Any = None
        self._lock = threading.Lock()

    def aoi_cfg(self, name: str) -> AoiConfig:
        """The configuration of AOI ``name``.

        Raises
        ------
        BadRequest
            The AOI files are invalid.
        NotFound
            No such AOI.
        """
        try:
            cfgs = self.aois()
        except ConfigError as exc:
            raise BadRequest(f"AOI configuration: {exc}") from None
        if name not in cfgs:
            raise NotFound(f"no AOI {name!r} (configured: {', '.join(sorted(cfgs)) or 'none'})")
        return cfgs[name]

    def dataset(self, aoi: str, ptype: str | None = None, year: int | None = None) -> str:
        """The AOI that serves the JRC dataset ``<aoi>_<year>`` with parcel type ``ptype``.

        ``ptype`` names another parcel set of the AOI (``jrc.ptypes`` of its file: an AOI of
        its own); ``year`` must be a year of that AOI's campaign (:meth:`AoiConfig.campaign_years`).

        Raises
        ------
        NotFound
            Unknown AOI, a ptype the AOI does not configure, a year outside its campaign.
        """
        cfg = self.aoi_cfg(aoi)
        if ptype:
            if ptype not in cfg.jrc.ptypes:
                raise NotFound(f"ptype: {ptype!r} is not a parcel set of AOI {aoi} (configured: "
                               f"{', '.join(sorted(cfg.jrc.ptypes)) or 'none'}; jrc.ptypes of the AOI file)")
            cfg = self.aoi_cfg(cfg.jrc.ptypes[ptype])
        years = cfg.campaign_years()
        if year is not None and year not in years:
            raise NotFound(f"year: no dataset {aoi}_{year}; AOI {cfg.name} covers {years[0]}-{years[-1]} "
                           "(start_date to end_date)")
        return cfg.name

    def run(self, name: str, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """``fn(conn, cfg, *args, **kwargs)`` in a read-only transaction of AOI ``name``'s database."""
        from cbm_ops.db import transaction

        cfg = self.aoi_cfg(name)
        with transaction(self.db_url(cfg)) as conn:
            analyst.read_only(conn)
            return fn(conn, cfg, *args, **kwargs)

    def search(self, name: str, fn: Callable[..., Any], *args: Any, default: Any = None, **kwargs: Any) -> Any:
        """:meth:`run`, or ``default`` when the AOI's tables do not exist yet (an AOI that was never
        set up holds no scenes): for the routes that search every AOI the user may read."""
        import psycopg

        try:
            return self.run(name, fn, *args, **kwargs)
        except (psycopg.errors.UndefinedTable, psycopg.errors.InvalidSchemaName):
            return default

    @property
    def settings(self) -> ApiSettings:
        """The API process settings (``CBM_CHIPS_*``, ``CBM_API_*``), read once."""
        if self._settings is None:
            self._settings = ApiSettings.from_env()
        return self._settings

    def store(self, cfg: AoiConfig) -> Any:
        """The AOI's scene store, made once per configuration (read-only use)."""
        with self._lock:
            hit = self._stores.get(cfg.name)
            if hit is None or hit[0] != cfg:
                hit = (cfg, (self._store_for or default_store)(cfg))
                self._stores[cfg.name] = hit
            return hit[1]

    @property
    def chips(self) -> Any:
        """The process's :class:`cbm_ops.analyst.chips.ChipMaker` (cache, pool), made on first use."""
        with self._lock:
            if self._chips is None:
                from cbm_ops.analyst.chips import ChipMaker

                self._chips = ChipMaker(self.settings, self.store)
            return self._chips

    def readable(self, request: Request) -> list[AoiConfig]:
        """The AOIs the logged-in user may read (all in the Airflow api-server)."""
        allowed = getattr(request.state, "cbm_readable", None)
        try:
            cfgs = self.aois()
        except ConfigError as exc:
            raise BadRequest(f"AOI configuration: {exc}") from None
        return [c for n, c in sorted(cfgs.items()) if allowed is None or n in allowed]

    def check_readable(self, request: Request, aoi: str) -> None:
        """Raise :class:`Forbidden` if the user may not read ``aoi``."""
        allowed = getattr(request.state, "cbm_readable", None)
        if allowed is not None and aoi not in allowed:
            raise Forbidden(f"not allowed to read AOI {aoi!r}")


def default_store(cfg: AoiConfig) -> Any:
    """The AOI's scene store from the environment (S3: ``CBM_S3_ENDPOINT_URL``, boto3's keys)."""
    from cbm_ops.extract.store import make_store

    return make_store(cfg)


def airflow_store(cfg: AoiConfig) -> Any:
    """The AOI's scene store in the api-server: S3 credentials from its Airflow connection."""
    from cbm_ops.extract.store import make_store

    if cfg.store.kind != "s3":
        return make_store(cfg)
    from cbm_hook import CbmHook

    creds, endpoint = CbmHook(db_conn_id=cfg.db_conn_id, s3_conn_id=cfg.store.conn_id).s3_settings()
    return make_store(cfg, s3_credentials=creds, s3_endpoint=endpoint)


def api_context(request: Request) -> ApiContext:
    return request.app.state.cbm


Api = Annotated[ApiContext, Depends(api_context)]


# ----------------------------------------------------------------- parameters
Aoi = Annotated[str, AfterValidator(str.lower), Query(
    pattern=AOI_PARAM_PATTERN, max_length=63,
    description="AOI name (include/aois/<aoi>.yaml); lower-cased, as the JRC's")]
Year = Annotated[int | None, Query(ge=analyst.YEAR_RANGE[0], le=analyst.YEAR_RANGE[1], description=(
    "a year of the AOI's campaign (the JRC dataset <aoi>_<year>; 404 for another): time series and weather "
    "of that calendar year of the sensing time (UTC); default all"))]
Pid = Annotated[int, Query(ge=0, le=PID_MAX, description="parcel id (ogc_fid)")]
Fmt = Annotated[Literal["json", "csv"], Query(description="json (column lists) or csv")]
Geom = Annotated[bool, Query(alias="withGeometry", description="add the geometry as a GeoJSON string")]
Crs = Annotated[Literal["parcel", "4326"], Query(
    description="geometry CRS: the parcel table's (with a crs member, as the JRC API) or EPSG:4326")]
Ptype = Annotated[str | None, Query(pattern=r"^[a-z0-9]{0,20}$", description=(
    "JRC parcel type: another parcel set of the AOI (jrc.ptypes of its file, served by an AOI of its own); "
    "empty: the AOI's parcels"))]
Wgs84 = Annotated[bool, Query(description="JRC switch: the geometry in EPSG:4326 (same as crs=4326)")]


# ----------------------------------------------------------------- answers
class ErrorBody(BaseModel):
    detail: str
    errors: list[dict[str, Any]] | None = None


ERRORS: dict[int | str, dict[str, Any]] = {
    400: {"model": ErrorBody, "description": "invalid parameter (the detail names it)"},
    404: {"model": ErrorBody, "description": "unknown AOI, parcel, scene, ptype or year"},
    503: {"model": ErrorBody, "description": "database unavailable or query over its time limit"}}
STATUS_ERRORS = {k: v for k, v in ERRORS.items() if k != 400}
COLUMNS = {**ERRORS, 200: {"description": "equal-length column lists (JRC API shape), or CSV",
                           "content": {"application/json": {"schema": COLUMNS_SCHEMA},
                                       "text/csv": {"schema": {"type": "string"}}}}}
AUTH_ERRORS: dict[str, dict[int, str]] = {          # added to every operation by create_app's OpenAPI
    "standalone": {401: "not logged in", 403: "the user may not read this AOI"},
    "airflow": {401: "not logged in", 403: "not allowed"}, "none": {}}


def columns(result: dict[str, list], fmt: str, headers: dict[str, str] | None = None) -> Response:
    """Column lists as JSON, or CSV (``fmt="csv"``)."""
    if fmt == "csv":
        return Response(analyst.to_csv(result), media_type="text/csv", headers=headers)
    # orjson: a year's time series is a large answer (500 rows: 0.2 ms instead of json.dumps' 1.5 ms)
    return Response(orjson.dumps(result), media_type="application/json", headers=headers)
