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

from fastapi import Depends, Query, Request
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel

from cbm_ops import analyst
from cbm_ops.config import AoiConfig
from cbm_ops.errors import BadRequest, ConfigError, NotFound

AOI_PATTERN = r"^[a-z_][a-z0-9_]{0,62}$"
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
    """The AOIs and database of one app (``app.state.cbm``)."""

    def __init__(self, aois: Callable[[], dict[str, AoiConfig]], db_url: Callable[[AoiConfig], str]):
        self.aois, self.db_url = aois, db_url

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

    def run(self, name: str, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """``fn(conn, cfg, *args, **kwargs)`` in a read-only transaction of AOI ``name``'s database."""
        from cbm_ops.db import transaction

        cfg = self.aoi_cfg(name)
        with transaction(self.db_url(cfg)) as conn:
            analyst.read_only(conn)
            return fn(conn, cfg, *args, **kwargs)


def api_context(request: Request) -> ApiContext:
    return request.app.state.cbm


Api = Annotated[ApiContext, Depends(api_context)]


# ----------------------------------------------------------------- parameters
Aoi = Annotated[str, Query(pattern=AOI_PATTERN, max_length=63, description="AOI name (include/aois/<aoi>.yaml)")]
Year = Annotated[int | None, Query(ge=analyst.YEAR_RANGE[0], le=analyst.YEAR_RANGE[1],
                                   description="calendar year of the sensing time (UTC); default all")]
Pid = Annotated[int, Query(ge=0, le=PID_MAX, description="parcel id (ogc_fid)")]
Fmt = Annotated[Literal["json", "csv"], Query(description="json (column lists) or csv")]
Geom = Annotated[bool, Query(alias="withGeometry", description="add the geometry as a GeoJSON string")]
Crs = Annotated[Literal["parcel", "4326"], Query(
    description="geometry CRS: the parcel table's (with a crs member, as the JRC API) or EPSG:4326")]
Ptype = Annotated[Literal[""] | None, Query(
    description="JRC parcel type; one parcel set per AOI here, so only empty is accepted")]


# ----------------------------------------------------------------- answers
class ErrorBody(BaseModel):
    detail: str
    errors: list[dict[str, Any]] | None = None


ERRORS: dict[int | str, dict[str, Any]] = {
    400: {"model": ErrorBody, "description": "invalid parameter (the detail names it)"},
    404: {"model": ErrorBody, "description": "unknown AOI, parcel or scene"},
    503: {"model": ErrorBody, "description": "database unavailable or query over its time limit"}}
STATUS_ERRORS = {k: v for k, v in ERRORS.items() if k != 400}
COLUMNS = {**ERRORS, 200: {"description": "equal-length column lists (JRC API shape), or CSV",
                           "content": {"application/json": {"schema": COLUMNS_SCHEMA},
                                       "text/csv": {"schema": {"type": "string"}}}}}
AUTH_ERRORS: dict[str, dict[int, str]] = {          # added to every operation by create_app's OpenAPI
    "standalone": {401: "not logged in"}, "airflow": {401: "not logged in", 403: "not allowed"}, "none": {}}


def columns(result: dict[str, list], fmt: str, headers: dict[str, str] | None = None) -> Response:
    """Column lists as JSON, or CSV (``fmt="csv"``)."""
    if fmt == "csv":
        return Response(analyst.to_csv(result), media_type="text/csv", headers=headers)
    return JSONResponse(result, headers=headers)
