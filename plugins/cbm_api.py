"""cbm-airflow HTTP API: AOI status and the analysts' parcel queries.

One FastAPI app, mounted by the Airflow plugin (``cbm_plugin.py``) at ``/cbm`` in the
api-server behind Airflow's login, or run on its own for a separate frontend host::

    CBM_DB_URL=postgresql://... CBM_API_TOKENS=<token> \\
        uvicorn --app-dir plugins --factory cbm_api:create_standalone_app --host 0.0.0.0 --port 8001

Routes (all GET, documented at ``/docs``, schema at ``/openapi.json``):

* ``/`` a status page (HTML), ``/aois`` and ``/aois/{name}`` scenes per card, stage and status;
* ``/query/parcelById``, ``parcelByLocation``, ``parcelsByPolygon``, ``parcelTimeSeries``,
  ``parcelPeers`` in the shape of the JRC RESTful API (JSON objects of equal-length column
  lists; ``format=csv`` for CSV), ``parcelPlot`` (PNG), ``observation`` (one scene with
  the lineage and quality of its stages).

Bad input answers 400 with ``{"detail": "<parameter>: <what is wrong>"}``, unknown AOIs,
parcels or scenes 404; every query is a file of ``include/sql`` with bound values, run in
a read-only transaction with a statement timeout. The query logic is :mod:`cbm_ops.analyst`.

Authentication (``auth``):

* ``airflow``: Airflow's ``requires_authenticated()`` (UI session cookie or
  ``Authorization: Bearer <JWT>`` from ``POST /auth/token``);
* ``standalone``: ``Authorization: Bearer <token>`` with a token of ``CBM_API_TOKENS`` or
  HTTP basic with a user of ``CBM_API_USERS`` (both comma-separated, ``user:password``
  percent-encoded); without either the app refuses to start unless ``CBM_API_NO_AUTH=1``
  (a local, single-user setup). ``CBM_API_CORS_ORIGINS`` allows browser frontends on
  other origins.
* ``none``: tests only.
"""

# No "from __future__ import annotations": FastAPI reads the annotations of the routes defined
# inside create_app, whose types are local names.

import html
import logging
import os
import secrets
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import unquote

log = logging.getLogger(__name__)

AOI_PATTERN = r"^[a-z_][a-z0-9_]{0,62}$"
ALL_BANDS = ("B01", "B02", "B03", "B04", "B05", "B06", "B07", "B08", "B8A", "B09", "B10", "B11", "B12",
             "VVb", "VHb", "VVc", "VHc")
PID_MAX = 2**31 - 1
COLUMNS_SCHEMA = {"type": "object", "description": "equal-length column lists (JRC API shape)",
                  "additionalProperties": {"type": "array", "items": {}}}
_URL_CACHE_S = 300.0


# ----------------------------------------------------------------- configuration lookups
class _AoiCache:
    """AOI files, re-read when a file of the directory is added, removed or changed."""

    def __init__(self) -> None:
        self._key: tuple | None = None
        self._aois: dict = {}
        self._lock = threading.Lock()

    def __call__(self) -> dict:
        from cbm_ops.config import aoi_dir, load_all

        d = aoi_dir()
        files = sorted(list(d.glob("*.yaml")) + list(d.glob("*.yml")))
        key = (str(d), tuple((f.name, f.stat().st_mtime_ns) for f in files))
        with self._lock:
            if key != self._key:
                self._aois, self._key = load_all(d), key
            return self._aois


def _airflow_db_url(cfg) -> str:
    """Database URL in the api-server: Airflow Connection (secrets backends, env, metadata DB)."""
    from cbm_ops.db import db_url_from_env

    try:
        from airflow.models.connection import Connection

        return Connection.get_connection_from_secrets(cfg.db_conn_id).get_uri()
    except Exception:  # noqa: BLE001 - outside Airflow (tests) fall back to the environment
        return db_url_from_env(cfg.db_conn_id)


def _env_db_url(cfg) -> str:
    from cbm_ops.db import db_url_from_env

    return db_url_from_env(cfg.db_conn_id)


class _UrlCache:
    """Connection lookups cached for 5 minutes (the secrets backend may be remote)."""

    def __init__(self, lookup: Callable[[Any], str]):
        self._lookup = lookup
        self._urls: dict[str, tuple[float, str]] = {}

    def __call__(self, cfg) -> str:
        hit = self._urls.get(cfg.db_conn_id)
        if hit and time.monotonic() - hit[0] < _URL_CACHE_S:
            return hit[1]
        url = self._lookup(cfg)
        self._urls[cfg.db_conn_id] = (time.monotonic(), url)
        return url


def _credentials_from_env() -> tuple[list[str], dict[str, str]]:
    tokens = [t.strip() for t in os.environ.get("CBM_API_TOKENS", "").split(",") if t.strip()]
    users = {}
    for item in os.environ.get("CBM_API_USERS", "").split(","):
        if item.strip():
            user, sep, password = item.strip().partition(":")
            if not sep or not user or not password:
                raise RuntimeError("CBM_API_USERS: expected comma-separated user:password entries")
            users[unquote(user)] = unquote(password)
    return tokens, users


def _standalone_auth(tokens: list[str], users: dict[str, str]):
    """Dependency: a bearer token of ``tokens`` or HTTP basic credentials of ``users``."""
    from fastapi import Depends, HTTPException
    from fastapi.security import HTTPAuthorizationCredentials, HTTPBasic, HTTPBasicCredentials, HTTPBearer

    basic = HTTPBasic(auto_error=False, realm="cbm", description="a user of CBM_API_USERS")
    bearer = HTTPBearer(auto_error=False, description="a token of CBM_API_TOKENS")

    def _eq(a: str, b: str) -> bool:
        return secrets.compare_digest(a.encode(), b.encode())

    def check(token: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
              login: Annotated[HTTPBasicCredentials | None, Depends(basic)]) -> None:
        ok = False
        if token is not None:
            ok = any([_eq(token.credentials, t) for t in tokens])
        elif login is not None and login.username in users:
            ok = _eq(login.password, users[login.username])
        if not ok:
            raise HTTPException(status_code=401, detail="authentication required: a bearer token or HTTP basic login",
                                headers={"WWW-Authenticate": 'Basic realm="cbm", Bearer'})

    return check


# ----------------------------------------------------------------- the app
def create_app(*, auth: Literal["airflow", "standalone", "none"] = "airflow",
               aois: Callable[[], dict] | None = None, db_url: Callable[[Any], str] | None = None,
               tokens: list[str] | None = None, users: dict[str, str] | None = None,
               cors_origins: list[str] | None = None):
    """The FastAPI app: status routes and the parcel query routes.

    Parameters
    ----------
    auth : {"airflow", "standalone", "none"}
        See the module docstring.
    aois : callable, optional
        Returns the AOI configurations by name (default: the AOI files, re-read on change).
    db_url : callable, optional
        AoiConfig -> database URL (default: the Airflow Connection ``db_conn_id`` for
        ``auth="airflow"``, else ``CBM_DB_URL`` / ``AIRFLOW_CONN_<ID>``).
    tokens, users : optional
        Standalone credentials (default: ``CBM_API_TOKENS``, ``CBM_API_USERS``).
    cors_origins : list of str, optional
        Origins allowed by CORS (default ``CBM_API_CORS_ORIGINS``).

    Raises
    ------
    RuntimeError
        ``auth="standalone"`` without any credential configured.
    """
    from fastapi import Depends, FastAPI, Query, Request
    from fastapi import Path as PathParam
    from fastapi.exceptions import RequestValidationError
    from fastapi.responses import HTMLResponse, JSONResponse, Response
    from pydantic import BaseModel

    from cbm_ops import analyst
    from cbm_ops.db import ConfigError, transaction

    aois = aois or _AoiCache()
    db_url = db_url or _UrlCache(_airflow_db_url if auth == "airflow" else _env_db_url)
    deps: list = []
    if auth == "airflow":
        from airflow.api_fastapi.core_api.security import requires_authenticated

        deps = [Depends(requires_authenticated())]
    elif auth == "standalone":
        env_tokens, env_users = _credentials_from_env()
        tokens = env_tokens if tokens is None else tokens
        users = env_users if users is None else users
        if not tokens and not users:
            raise RuntimeError("the standalone API needs credentials: set CBM_API_TOKENS (bearer tokens) and/or "
                               "CBM_API_USERS (user:password), or CBM_API_NO_AUTH=1 for a local single-user setup")
        deps = [Depends(_standalone_auth(tokens, users))]
    elif auth != "none":
        raise ValueError(f"auth: {auth!r} is not airflow, standalone or none")

    class ErrorBody(BaseModel):
        detail: str
        errors: list[dict[str, Any]] | None = None

    errors: dict[int | str, dict[str, Any]] = {
        400: {"model": ErrorBody, "description": "invalid parameter (the detail names it)"},
        404: {"model": ErrorBody, "description": "unknown AOI, parcel or scene"},
        503: {"model": ErrorBody, "description": "database unavailable or query over its time limit"}}
    if auth != "none":
        errors[401] = {"model": ErrorBody, "description": "not logged in"}
    if auth == "airflow":
        errors[403] = {"model": ErrorBody, "description": "not allowed"}
    table = {**errors, 200: {"description": "equal-length column lists (JRC API shape), or CSV",
                             "content": {"application/json": {"schema": COLUMNS_SCHEMA},
                                         "text/csv": {"schema": {"type": "string"}}}}}

    app = FastAPI(
        title="cbm-airflow parcel API",
        description=("Parcel attributes and per-parcel Sentinel time series (signatures and SCL histograms) "
                     "of the CbM backend, in the shape of the JRC RESTful API; AOI processing status. "
                     "See docs/analyst-api.md."),
        version="1", dependencies=deps)
    if cors_origins is None:
        cors_origins = [o.strip() for o in os.environ.get("CBM_API_CORS_ORIGINS", "").split(",") if o.strip()]
    if cors_origins:
        from starlette.middleware.cors import CORSMiddleware

        app.add_middleware(CORSMiddleware, allow_origins=cors_origins, allow_methods=["GET"],
                           allow_headers=["Authorization"])

    # ------------------------------------------------------------- errors
    @app.exception_handler(RequestValidationError)
    def _invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        errs = []
        for e in exc.errors():
            loc = [str(x) for x in e.get("loc", ())]
            name = loc[1] if len(loc) > 1 and loc[0] in ("query", "path") else ".".join(loc) or "request"
            if len(loc) > 2:
                name += "".join(f"[{x}]" for x in loc[2:])
            got = e.get("input")
            errs.append({"parameter": name, "msg": str(e.get("msg", "")), "type": str(e.get("type")),
                         "input": got if isinstance(got, str | int | float) and len(str(got)) <= 100 else None})
        detail = "; ".join(f"{e['parameter']}: {e['msg']}" + (f" (got {e['input']!r})" if e["input"] is not None
                                                             else "") for e in errs) or "invalid request"
        return JSONResponse({"detail": detail, "errors": errs}, status_code=400)

    @app.exception_handler(analyst.BadRequest)
    def _bad(request: Request, exc: analyst.BadRequest) -> JSONResponse:
        return JSONResponse({"detail": str(exc)}, status_code=400)

    @app.exception_handler(analyst.NotFound)
    def _missing(request: Request, exc: analyst.NotFound) -> JSONResponse:
        return JSONResponse({"detail": str(exc)}, status_code=404)

    import psycopg
    from psycopg_pool import PoolTimeout

    @app.exception_handler(psycopg.errors.QueryCanceled)
    def _slow(request: Request, exc: Exception) -> JSONResponse:
        return JSONResponse({"detail": f"the query took longer than {analyst.STATEMENT_TIMEOUT}; narrow it"},
                            status_code=503)

    @app.exception_handler(PoolTimeout)
    @app.exception_handler(psycopg.OperationalError)
    def _down(request: Request, exc: Exception) -> JSONResponse:
        log.warning("database unavailable: %s", type(exc).__name__)
        return JSONResponse({"detail": "the results database is unavailable; retry later"}, status_code=503)

    # ------------------------------------------------------------- helpers
    def aoi_cfg(name: str):
        try:
            cfgs = aois()
        except ConfigError as exc:
            raise analyst.BadRequest(f"AOI configuration: {exc}") from None
        if name not in cfgs:
            raise analyst.NotFound(f"no AOI {name!r} (configured: {', '.join(sorted(cfgs)) or 'none'})")
        return cfgs[name]

    def run(name: str, fn: Callable, *args: Any, **kwargs: Any) -> Any:
        cfg = aoi_cfg(name)
        with transaction(db_url(cfg)) as conn:
            analyst.read_only(conn)
            return fn(conn, cfg, *args, **kwargs)

    def columns(result: dict[str, list], fmt: str, headers: dict[str, str] | None = None) -> Response:
        if fmt == "csv":
            return Response(analyst.to_csv(result), media_type="text/csv", headers=headers)
        return JSONResponse(result, headers=headers)

    Aoi = Annotated[str, Query(pattern=AOI_PATTERN, max_length=63, description="AOI name (include/aois/<aoi>.yaml)")]
    Year = Annotated[int, Query(ge=analyst.YEAR_RANGE[0], le=analyst.YEAR_RANGE[1],
                                       description="calendar year of the sensing time (UTC); default all")]
    Pid = Annotated[int, Query(ge=0, le=PID_MAX, description="parcel id (ogc_fid)")]
    Fmt = Annotated[Literal["json", "csv"], Query(description="json (column lists) or csv")]
    Geom = Annotated[bool, Query(alias="withGeometry", description="add the geometry as a GeoJSON string")]
    Crs = Annotated[Literal["parcel", "4326"], Query(
        description="geometry CRS: the parcel table's (with a crs member, as the JRC API) or EPSG:4326")]
    Ptype = Annotated[Literal[""], Query(
        description="JRC parcel type; one parcel set per AOI here, so only empty is accepted")]

    # ------------------------------------------------------------- status
    def status(cfg) -> dict[str, Any]:
        from cbm_ops.queue import status_counts

        rows = status_counts(db_url(cfg), cfg)
        return {"aoi": cfg.name, "schema": cfg.schema,
                "stages": [{"card": c, "stage": s, "status": st, "scenes": n} for c, s, st, n in rows]}

    status_errors = {k: v for k, v in errors.items() if k != 400}

    @app.get("/aois", summary="Scenes per card, stage and status of every AOI", responses=status_errors)
    def list_aois() -> list[dict[str, Any]]:
        try:
            return [status(cfg) for cfg in aois().values()]
        except ConfigError as exc:
            raise analyst.BadRequest(f"AOI configuration: {exc}") from None

    @app.get("/aois/{name}", summary="Scenes per card, stage and status of one AOI", responses=errors)
    def one_aoi(name: Annotated[str, PathParam(pattern=AOI_PATTERN, max_length=63)]) -> dict[str, Any]:
        return status(aoi_cfg(name))

    @app.get("/", response_class=HTMLResponse, summary="Status page (HTML)", responses=status_errors)
    def index(request: Request) -> HTMLResponse:
        root = request.scope.get("root_path", "").rstrip("/")
        e = html.escape
        parts = [f"<h1>cbm-airflow</h1><p><a href='{e(root)}/docs'>Parcel API documentation</a> · "
                 f"<a href='{e(root)}/aois'>status as JSON</a></p>"]
        try:
            cfgs = aois()
        except ConfigError as exc:
            parts.append(f"<p>AOI configuration error: {e(str(exc))}</p>")
            cfgs = {}
        for cfg in cfgs.values():
            try:
                st = status(cfg)["stages"]
            except Exception as exc:  # noqa: BLE001 - one unreachable AOI must not hide the others
                parts.append(f"<h2>{e(cfg.name)}</h2><p>unavailable: {e(type(exc).__name__)}</p>")
                continue
            body = "".join(f"<tr><td>{e(r['card'])}</td><td>{e(r['stage'])}</td><td>{e(r['status'])}</td>"
                           f"<td style='text-align:right'>{r['scenes']}</td></tr>" for r in st)
            parts.append(f"<h2>{e(cfg.name)}</h2><p>{e(cfg.description)} (schema {e(cfg.schema)})</p>"
                         "<table border=1 cellpadding=3 style='border-collapse:collapse'>"
                         f"<tr><th>card</th><th>stage</th><th>status</th><th>scenes</th></tr>{body}</table>")
        return HTMLResponse("<!doctype html><html><head><meta charset='utf-8'><title>cbm-airflow status</title>"
                            "</head><body style='font-family:sans-serif'>" + "".join(parts) + "</body></html>")

    # ------------------------------------------------------------- parcel queries
    q_errors = {"responses": table}

    @app.get("/query/parcelById", summary="One parcel: attributes, area, centroid, optional geometry", **q_errors)
    def parcel_by_id(aoi: Aoi, pid: Pid, with_geometry: Geom = False, crs: Crs = "parcel",
                     year: Year = None, ptype: Ptype = None, format: Fmt = "json") -> Response:
        """Columns ``ogc_fid``, the parcel table's attributes, ``crop`` (``parcels.crop_column``),
        ``srid``, ``area`` (geodesic m2), ``clon``/``clat`` (centroid, EPSG:4326) and, with
        ``withGeometry=true``, ``geom`` (GeoJSON string). ``year`` is accepted for JRC clients
        (one parcel set per AOI)."""
        return columns(run(aoi, analyst.parcel_by_id, pid, with_geometry, crs), format)

    @app.get("/query/parcelByLocation", summary="Parcels at a point (lon/lat, EPSG:4326)", **q_errors)
    def parcel_by_location(aoi: Aoi, lon: Annotated[float, Query(ge=-180, le=180)],
                           lat: Annotated[float, Query(ge=-90, le=90)], with_geometry: Geom = False,
                           crs: Crs = "parcel", year: Year = None, ptype: Ptype = None,
                           format: Fmt = "json") -> Response:
        """The parcels that contain the point, columns as ``parcelById`` (empty lists if none)."""
        return columns(run(aoi, analyst.parcel_by_location, lon, lat, with_geometry, crs), format)

    @app.get("/query/parcelsByPolygon", summary="Parcels intersecting a polygon (WKT or GeoJSON, EPSG:4326)",
             **q_errors)
    def parcels_by_polygon(aoi: Aoi, polygon: Annotated[str, Query(min_length=1, max_length=200_000, description=(
                               "Polygon or MultiPolygon in lon/lat as WKT or GeoJSON, at most "
                               f"{analyst.MAX_POLYGON_KM2:.0f} km2"))],
                           max: Annotated[int, Query(ge=1, le=analyst.MAX_POLYGON_PARCELS,
                                                     description="cap on the parcels returned")] = 100,
                           with_geometry: Geom = False, crs: Crs = "parcel", year: Year = None,
                           ptype: Ptype = None, format: Fmt = "json") -> Response:
        """Columns as ``parcelById``, by pid; header ``X-CBM-Truncated: true`` when more parcels
        intersect than ``max``."""
        result, truncated = run(aoi, analyst.parcels_by_polygon, polygon, with_geometry, crs, max)
        return columns(result, format, {"X-CBM-Truncated": "true" if truncated else "false"})

    @app.get("/query/parcelTimeSeries", summary="Time series of one parcel (signatures or SCL histograms)",
             **q_errors)
    def parcel_time_series(
            aoi: Aoi, pid: Pid,
            tstype: Annotated[Literal["s2", "bs", "c6", "scl"], Query(
                description="s2: Sentinel-2 bands; bs: CARD-BS backscatter; c6: CARD-COH6 coherence; "
                            "scl: SCL histograms")] = "s2",
            band: Annotated[list[Literal[ALL_BANDS]], Query(  # type: ignore[valid-type]
                description="band filter (repeat the parameter for several), default all of the tstype")] = None,
            year: Year = None,
            raw: Annotated[bool, Query(description="every granule's rows with a canonical flag")] = False,
            scl: Annotated[bool, Query(description="s2: add the per-date cloudfree flag (SCL)")] = True,
            ref: Annotated[bool, Query(description="add the product name (reference)")] = False,
            lineage: Annotated[bool, Query(description="add the lineage of the stage that wrote each row")] = False,
            ptype: Ptype = None, format: Fmt = "json") -> Response:
        """One row per observation and band, by sensing time: ``date_part`` (epoch s), ``obstime``,
        ``obsid``, ``datatake``, ``band``, ``count``, ``mean``, ``std``, ``min``, ``max``, ``p25``,
        ``p50``, ``p75``; s2 adds ``tile``, ``epsg``, ``ndvi`` and ``cloudfree``; bs/c6 add
        ``relative_orbit`` and ``orbit_direction``; scl gives ``scl_pixels``, ``cloudfree``, ``hist``.
        Canonical observations (one per parcel and datatake) unless ``raw=true``. Values as
        stored: S2 DN (reflectance = value / 10000), S1 linear gamma0, coherence 0-1."""
        return columns(run(aoi, analyst.parcel_time_series, pid, tstype, band, raw, year, scl=scl, ref=ref,
                           lineage=lineage), format)

    @app.get("/query/parcelPeers", summary="Parcels of the same crop nearby", **q_errors)
    def parcel_peers(aoi: Aoi, pid: Pid,
                     distance: Annotated[float, Query(gt=0, le=analyst.MAX_PEER_DISTANCE_M,
                                                      description="metres (geodesic, between geometries)")] = 1000.0,
                     max: Annotated[int, Query(ge=1, le=analyst.MAX_PEERS)] = 10,
                     year: Year = None, ptype: Ptype = None, format: Fmt = "json") -> Response:
        """Columns ``pids`` and ``distance`` (m), nearest first."""
        return columns(run(aoi, analyst.parcel_peers, pid, distance, max), format)

    @app.get("/query/parcelPlot", summary="PNG: NDVI (cloudy dates marked) and S1 VV/VH in dB",
             response_class=Response,
             responses={**errors, 200: {"content": {"image/png": {"schema": {"type": "string", "format": "binary"}}},
                                        "description": "PNG image"}})
    def parcel_plot(aoi: Aoi,
                    pid: Annotated[list[Annotated[int, Query(ge=0, le=PID_MAX)]], Query(
                        min_length=1, max_length=analyst.MAX_PLOT_PARCELS,
                        description=f"parcel id(s), 1 to {analyst.MAX_PLOT_PARCELS} (one panel each)")],
                    year: Year = None) -> Response:
        """Canonical observations: NDVI from the B04/B08 means (filled: cloud-free by SCL, hollow:
        cloudy, x: no SCL histogram) and CARD-BS VV/VH 10 log10(gamma0)."""
        png = run(aoi, analyst.parcel_plot, pid, year)
        return Response(png, media_type="image/png")

    @app.get("/query/observation", summary="One scene: catalogue record, stages, lineage and quality",
             responses={**errors, 200: {"description": "the scene", "content": {"application/json": {
                 "schema": {"type": "object"}}}}})
    def one_observation(aoi: Aoi, obsid: Annotated[int, Query(ge=0, le=PID_MAX, description="dias_catalogue.id")]
                        ) -> Response:
        """The dias_catalogue record (footprint as GeoJSON) and per stage its status, rows,
        ``lineage`` (package version, git commit, bands, nodata, all_touched, boa_add_offset ...;
        null for rows written before lineage was recorded) and ``quality``."""
        return JSONResponse(run(aoi, analyst.observation, obsid))

    # ------------------------------------------------------------- OpenAPI: 400, not 422
    def openapi() -> dict[str, Any]:
        if app.openapi_schema:
            return app.openapi_schema
        from fastapi.openapi.utils import get_openapi

        schema = get_openapi(title=app.title, version=app.version, description=app.description, routes=app.routes)
        for path in schema.get("paths", {}).values():
            for op in path.values():
                op.get("responses", {}).pop("422", None)
        comps = schema.get("components", {}).get("schemas", {})
        comps.pop("HTTPValidationError", None)
        comps.pop("ValidationError", None)
        app.openapi_schema = schema
        return schema

    app.openapi = openapi  # type: ignore[method-assign]
    return app


def create_standalone_app():
    """The API for ``uvicorn --factory`` (own authentication from the environment, pooled connections).

    Raises
    ------
    RuntimeError
        Without ``CBM_API_TOKENS``/``CBM_API_USERS`` unless ``CBM_API_NO_AUTH=1``.
    """
    no_auth = os.environ.get("CBM_API_NO_AUTH", "").lower() in ("1", "true", "yes")
    if no_auth:
        log.warning("CBM_API_NO_AUTH is set: the parcel API answers anyone who can reach it")
    return create_app(auth="none" if no_auth else "standalone")


def main(argv: list[str] | None = None) -> int:
    """``python plugins/cbm_api.py [--host H] [--port P]``: the standalone API with uvicorn."""
    import argparse
    import sys

    import uvicorn

    ap = argparse.ArgumentParser(description="cbm-airflow parcel API (standalone)")
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=8001)
    args = ap.parse_args(argv)
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    uvicorn.run("cbm_api:create_standalone_app", factory=True, host=args.host, port=args.port)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
